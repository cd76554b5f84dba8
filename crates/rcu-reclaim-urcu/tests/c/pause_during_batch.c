/* call_rcu_before_fork() asked while the call_rcu thread runs a batch,
 * again and again (call_rcu, then the fork hooks, with no fork):
 * the thread must answer the pause after its batch, not sleep through
 * it. liburcu's test_urcu_fork hung in call_rcu_before_fork() after the
 * thread learned to look at a stop request only after a batch: a pause
 * asked during the batch notified no waiter, and the thread then slept
 * with the pause pending. SIGALRM ends a hang as a failure. */
#include "common.h"
#include <stdatomic.h>
#include <unistd.h>

#define ROUNDS 300

static atomic_long ran;

/* Slow, so that the batch holding it is still running when the pause
 * is asked. */
static void count_and_free(struct rcu_head *head)
{
	usleep(1000);
	atomic_fetch_add(&ran, 1);
	free(head);
}

int main(void)
{
	alarm(20);
	rcu_register_thread();
	for (int i = 0; i < ROUNDS; i++) {
		struct rcu_head *head = malloc(sizeof(*head));
		CHECK(head != NULL);
		call_rcu(head, count_and_free);
		/* Let the thread take it into a batch (ours gathers 5 ms after
		 * a wake-up, liburcu polls every 10 ms): asked at 4 to 11.5
		 * ms, the pause often lands while the batch runs. */
		usleep(4000 + (i % 16) * 500);
		call_rcu_before_fork();
		call_rcu_after_fork_parent();
	}
	rcu_barrier();
	CHECK(atomic_load(&ran) == ROUNDS);
	printf("%d pauses beside call_rcu batches: every callback ran\n", ROUNDS);
	rcu_unregister_thread();
	return 0;
}
