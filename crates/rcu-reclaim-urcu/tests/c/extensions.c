/* rcu-reclaim-urcu only: liburcu 0.14's polled grace periods (declared
 * here: Debian's 0.13 headers lack them) and our rcu_reclaim.h extensions.
 * Linked directly against librcu_reclaim_urcu.so. */
#include "common.h"
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <dlfcn.h>
#include <rcu_reclaim.h>

struct urcu_gp_poll_state {
	unsigned long grace_period_id;
};
struct urcu_gp_poll_state urcu_memb_start_poll_synchronize_rcu(void);
bool urcu_memb_poll_state_synchronize_rcu(struct urcu_gp_poll_state state);

/* 0.14's flavor table: 0.13's fourteen entries, then the polled pair. */
struct flavor14 {
	void (*fns13[14])(void);
	struct urcu_gp_poll_state (*update_start_poll_synchronize_rcu)(void);
	bool (*update_poll_state_synchronize_rcu)(struct urcu_gp_poll_state);
};

struct obj {
	char payload[1000];
	struct rcu_head rcu;
};

static void free_obj(struct rcu_head *head)
{
	free(caa_container_of(head, struct obj, rcu));
}

static int cb_started, cb_go, cb_done;

/* A call_rcu callback that waits for a grace period itself. */
static void sync_in_callback(struct rcu_head *head)
{
	(void)head;
	__atomic_store_n(&cb_started, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&cb_go, __ATOMIC_SEQ_CST))
		poll(NULL, 0, 1);
	synchronize_rcu();
	__atomic_store_n(&cb_done, 1, __ATOMIC_SEQ_CST);
}

static int reader_in, reader_out;

/* Holds a read-side section until told: no grace period completes
 * meanwhile, so callbacks queued then stay pending however slowly this
 * program runs (a loaded machine once took longer than the lazy pace,
 * and a grace period ran some of them before they were counted). */
static void *hold_section(void *arg)
{
	(void)arg;
	rcu_register_thread();
	rcu_read_lock();
	__atomic_store_n(&reader_in, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&reader_out, __ATOMIC_SEQ_CST))
		poll(NULL, 0, 1);
	rcu_read_unlock();
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	rcu_register_thread();

	/* Polled grace periods: complete after a grace period, and on their
	 * own (the grace-period thread runs one) without anyone waiting. */
	struct urcu_gp_poll_state s = urcu_memb_start_poll_synchronize_rcu();
	synchronize_rcu();
	CHECK(urcu_memb_poll_state_synchronize_rcu(s));
	s = urcu_memb_start_poll_synchronize_rcu();
	int spins = 0;
	while (!urcu_memb_poll_state_synchronize_rcu(s) && spins++ < 10000)
		poll(NULL, 0, 1);
	CHECK(urcu_memb_poll_state_synchronize_rcu(s));
	/* Inside a section nothing can complete: a snapshot stays pending. */
	rcu_read_lock();
	s = urcu_memb_start_poll_synchronize_rcu();
	poll(NULL, 0, 20);
	CHECK(!urcu_memb_poll_state_synchronize_rcu(s));
	rcu_read_unlock();

	/* The backlog in callbacks and bytes, then run_callbacks drains it. */
	rcu_barrier();
	CHECK(rcu_reclaim_pending() == 0);
	CHECK(rcu_reclaim_pending_bytes() == 0);
	pthread_t holder;
	CHECK(pthread_create(&holder, NULL, hold_section, NULL) == 0);
	while (!__atomic_load_n(&reader_in, __ATOMIC_SEQ_CST))
		poll(NULL, 0, 1);
	for (int i = 0; i < 10; i++) {
		struct obj *o = malloc(sizeof(*o));
		rcu_reclaim_call_rcu_sized(&o->rcu, free_obj, sizeof(*o));
	}
	CHECK(rcu_reclaim_pending() == 10);
	CHECK(rcu_reclaim_pending_bytes() == 10 * sizeof(struct obj));
	__atomic_store_n(&reader_out, 1, __ATOMIC_SEQ_CST);
	CHECK(pthread_join(holder, NULL) == 0);
	CHECK(rcu_reclaim_run_callbacks(-1, 13) == -EINVAL);
	CHECK(rcu_reclaim_run_callbacks(100000, 0) == -EINVAL);
	/* At priority 0 it is a barrier: nothing is left when it returns
	 * (a worker may have released some callbacks meanwhile, which then
	 * do not count in its result). */
	long ran = rcu_reclaim_run_callbacks(-1, 0);
	CHECK(ran >= 0 && ran <= 10);
	CHECK(rcu_reclaim_pending() == 0);
	CHECK(rcu_reclaim_pending_bytes() == 0);
	/* The call_rcu callbacks it runs on this thread count in its result
	 * (before, they did not: 0 for 100 run here). The call_rcu thread may
	 * take a round's heads first (it gathers for 5 ms once woken): many
	 * rounds, one of which must count them (5 rounds were all taken in
	 * one run of the test suite on a loaded 2-CPU machine). */
	long most = 0;
	for (int round = 0; round < 500 && most == 0; round++) {
		for (int i = 0; i < 10; i++) {
			struct obj *o = malloc(sizeof(*o));
			rcu_reclaim_call_rcu_sized(&o->rcu, free_obj, sizeof(*o));
		}
		ran = rcu_reclaim_run_callbacks(-1, 0);
		CHECK(ran >= 0 && ran <= 10);
		CHECK(rcu_reclaim_pending() == 0);
		most = ran;
	}
	CHECK(most > 0);

	/* Pressure signals nest and must be paired; memory is short while
	 * one is held. */
	int before = rcu_reclaim_memory_state();
	CHECK(before >= 0 && before <= 2);
	CHECK(rcu_reclaim_pressure_start(-1) == 0);
	CHECK(rcu_reclaim_memory_state() >= 1);
	CHECK(rcu_reclaim_pressure_start(0) == 0);
	CHECK(rcu_reclaim_pressure_start(100000) == -EINVAL);
	char *json = rcu_reclaim_stats_json();
	CHECK(json != NULL);
	CHECK(strstr(json, "\"flavor\"") != NULL);
	CHECK(strstr(json, "\"pressure\":2") != NULL);
	rcu_reclaim_free_string(json);
	rcu_reclaim_free_string(NULL);
	CHECK(rcu_reclaim_pressure_end(0) == 0);
	CHECK(rcu_reclaim_pressure_end(-1) == 0);
	CHECK(rcu_reclaim_pressure_end(-1) == -EINVAL);

	/* run_callbacks inside a section never waits for the call_rcu
	 * threads: one of them may be waiting for this very section (a
	 * callback in synchronize_rcu). */
	static struct rcu_head sync_head;
	call_rcu(&sync_head, sync_in_callback);
	spins = 0;
	while (!__atomic_load_n(&cb_started, __ATOMIC_SEQ_CST) && spins++ < 20000)
		poll(NULL, 0, 1);
	CHECK(__atomic_load_n(&cb_started, __ATOMIC_SEQ_CST));
	rcu_read_lock();
	__atomic_store_n(&cb_go, 1, __ATOMIC_SEQ_CST);
	poll(NULL, 0, 20);
	CHECK(rcu_reclaim_run_callbacks(-1, 0) >= 0);
	CHECK(!__atomic_load_n(&cb_done, __ATOMIC_SEQ_CST));
	rcu_read_unlock();
	spins = 0;
	while (!__atomic_load_n(&cb_done, __ATOMIC_SEQ_CST) && spins++ < 20000)
		poll(NULL, 0, 1);
	CHECK(__atomic_load_n(&cb_done, __ATOMIC_SEQ_CST));

	/* Registration is harmless to repeat, and unregistering inside a
	 * section is refused. */
	rcu_register_thread();
	rcu_read_lock();
	rcu_unregister_thread();
	CHECK(rcu_read_ongoing());
	rcu_read_unlock();
	rcu_unregister_thread();
	rcu_read_lock(); /* registers again on use */
	rcu_read_unlock();

	/* The flavor table points at the same functions. */
	CHECK(rcu_flavor.read_lock == urcu_memb_read_lock);
	CHECK(rcu_flavor.update_synchronize_rcu == urcu_memb_synchronize_rcu);
	rcu_flavor.read_lock();
	CHECK(rcu_read_ongoing());
	rcu_flavor.read_unlock();
	/* The table's ELF size is 0.13's (this program's copy of it, made at
	 * load, has 14 entries, and the loader did not warn); the library's
	 * own table, as a library built against 0.14's headers reads it, has
	 * the polled pair after them. */
	void *lib = dlopen("librcu_reclaim_urcu.so", RTLD_NOW | RTLD_NOLOAD);
	CHECK(lib != NULL);
	const struct flavor14 *f14 = dlsym(lib, "urcu_memb_flavor");
	CHECK(f14 != NULL);
	CHECK(f14->fns13[0] == (void (*)(void))urcu_memb_read_lock);
	CHECK(f14->update_start_poll_synchronize_rcu == urcu_memb_start_poll_synchronize_rcu);
	CHECK(f14->update_poll_state_synchronize_rcu == urcu_memb_poll_state_synchronize_rcu);
	s = f14->update_start_poll_synchronize_rcu();
	synchronize_rcu();
	CHECK(f14->update_poll_state_synchronize_rcu(s));
	printf("extensions ok\n");
	return 0;
}
