/* call_rcu_data_free() of a call_rcu_data from one of its callbacks that
 * rcu_reclaim_run_callbacks() runs on the caller's thread (the reclaimer
 * holds that call_rcu_data's batch while it invokes it). Stopping its
 * thread there waited for that thread, which waited for the batch the
 * reclaimer held: a hang. As from a callback on the call_rcu_data's own
 * thread, it is now freed once the callback returns, saying so. Run
 * against rcu-reclaim-urcu only (an extension). Rounds go on until a
 * callback ran on the reclaimer's thread (the call_rcu thread may take a
 * round's head first). */
#include "common.h"
#include <stdatomic.h>
#include <rcu_reclaim.h>

#define ROUNDS 1000

static pthread_t main_thread;
static struct call_rcu_data *own;
static struct rcu_head head, later;
static atomic_int here, ran, later_ran;

static void cb(struct rcu_head *h)
{
	(void)h;
	struct call_rcu_data *crdp = own;
	if (pthread_equal(pthread_self(), main_thread)) {
		set_thread_call_rcu_data(NULL);
		atomic_store(&here, 1);
	}
	call_rcu_data_free(crdp);
	atomic_fetch_add(&ran, 1);
}

static void count_later(struct rcu_head *h)
{
	(void)h;
	atomic_store(&later_ran, 1);
}

int main(void)
{
	main_thread = pthread_self();
	rcu_register_thread();
	int rounds = 0;
	while (!atomic_load(&here) && rounds < ROUNDS) {
		own = create_call_rcu_data(0, -1);
		CHECK(own);
		set_thread_call_rcu_data(own);
		call_rcu(&head, cb);
		CHECK(rcu_reclaim_run_callbacks(-1, 0) >= 0);
		rounds++;
		/* At priority 0 every callback queued before has run. */
		CHECK(atomic_load(&ran) == rounds);
		set_thread_call_rcu_data(NULL);
	}
	CHECK(atomic_load(&here));
	/* The queues and the barrier still work. */
	call_rcu(&later, count_later);
	rcu_barrier();
	CHECK(atomic_load(&later_ran));
	printf("a call_rcu_data freed in a callback the reclaimer ran\n");
	rcu_unregister_thread();
	return 0;
}
