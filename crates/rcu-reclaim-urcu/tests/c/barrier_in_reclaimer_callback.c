/* rcu_barrier() from a call_rcu callback that rcu_reclaim_run_callbacks()
 * runs on the caller's thread (the reclaimer takes the queued batch, waits
 * for its grace period and invokes it there). On a call_rcu thread such a
 * barrier says it cannot wait for its own thread's callbacks and waits for
 * the others; on the reclaimer's thread it waited for the batch it was
 * called from, which cannot end before it returns: a hang. Run against
 * rcu-reclaim-urcu only (an extension). Rounds go on until a callback ran
 * on the reclaimer's thread (the call_rcu thread may take a round's head
 * first). */
#include "common.h"
#include <stdatomic.h>
#include <rcu_reclaim.h>

#define ROUNDS 1000

static pthread_t main_thread;
static struct rcu_head head, later;
static atomic_int here, ran, later_ran;

static void cb(struct rcu_head *h)
{
	(void)h;
	rcu_barrier();
	if (pthread_equal(pthread_self(), main_thread))
		atomic_store(&here, 1);
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
		call_rcu(&head, cb);
		CHECK(rcu_reclaim_run_callbacks(-1, 0) >= 0);
		rounds++;
		/* At priority 0 every callback queued before has run. */
		CHECK(atomic_load(&ran) == rounds);
	}
	CHECK(atomic_load(&here));
	/* The queue and the barrier still work. */
	call_rcu(&later, count_later);
	rcu_barrier();
	CHECK(atomic_load(&later_ran));
	printf("a barrier in a callback the reclaimer ran returned\n");
	rcu_unregister_thread();
	return 0;
}
