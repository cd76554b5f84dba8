/* Misuse in call_rcu callbacks that liburcu-qsbr turns into silent
 * deadlocks, and ours did too before: "free", a callback frees its own
 * call_rcu_data (the free waited for the thread to stop: for itself);
 * "barriers", a callback on each of two call_rcu threads calls
 * rcu_barrier() (each waited for the other). Run against
 * rcu-reclaim-urcu-qsbr only: each returns, saying so. The main thread
 * waits offline. */
#include "common.h"
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static struct rcu_head heads[4];
static atomic_int ran, in_callback, returned;

static void count(struct rcu_head *head)
{
	(void)head;
	atomic_fetch_add(&ran, 1);
}

static void free_own(struct rcu_head *head)
{
	(void)head;
	struct call_rcu_data *me = get_thread_call_rcu_data();
	set_thread_call_rcu_data(NULL);
	call_rcu_data_free(me);
	atomic_fetch_add(&ran, 1);
	atomic_fetch_add(&returned, 1);
}

static void barrier_from_callback(struct rcu_head *head)
{
	(void)head;
	atomic_fetch_add(&in_callback, 1);
	/* Offline while it waits for the other callback, whose batch waits
	 * for a grace period: a call_rcu thread is online in its callbacks. */
	rcu_thread_offline();
	while (atomic_load(&in_callback) < 2)
		usleep(1000);
	rcu_thread_online();
	rcu_barrier();
	atomic_fetch_add(&returned, 1);
}

static void wait_offline(int n)
{
	rcu_thread_offline();
	while (atomic_load(&returned) < n)
		usleep(1000);
	rcu_thread_online();
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	rcu_register_thread();
	struct call_rcu_data *a = create_call_rcu_data(0, -1);
	CHECK(a != NULL);
	if (!strcmp(argv[1], "free")) {
		set_thread_call_rcu_data(a);
		call_rcu(&heads[0], count);
		call_rcu(&heads[1], free_own);
		call_rcu(&heads[2], count);
		set_thread_call_rcu_data(NULL);
		wait_offline(1);
		call_rcu(&heads[3], count);
		rcu_barrier();
		printf("free returned; callbacks run: %d\n", atomic_load(&ran));
	} else {
		struct call_rcu_data *b = create_call_rcu_data(0, -1);
		CHECK(b != NULL);
		set_thread_call_rcu_data(a);
		call_rcu(&heads[0], barrier_from_callback);
		set_thread_call_rcu_data(b);
		call_rcu(&heads[1], barrier_from_callback);
		set_thread_call_rcu_data(NULL);
		wait_offline(2);
		rcu_barrier();
		call_rcu_data_free(a);
		call_rcu_data_free(b);
		printf("both barriers returned\n");
	}
	rcu_unregister_thread();
	return 0;
}
