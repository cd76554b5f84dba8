/* Misuse that liburcu turns into a deadlock: rcu_barrier() from a call_rcu
 * callback, which would wait for its own call_rcu thread (busy running the
 * callback). Run against rcu-reclaim-urcu only: the barrier cannot wait for
 * what was queued on its own thread before it, so it must say so rather
 * than return as if every earlier callback had run. */
#include "common.h"
#include <stdatomic.h>
#include <unistd.h>

static struct rcu_head outer_head, inner_head;
static atomic_int inner_ran, outer_done;

static void inner(struct rcu_head *head)
{
	(void)head;
	atomic_store(&inner_ran, 1);
}

static void outer(struct rcu_head *head)
{
	(void)head;
	call_rcu(&inner_head, inner); /* on this callback's own thread */
	rcu_barrier();
	printf("barrier returned; earlier callback ran: %s\n",
	       atomic_load(&inner_ran) ? "yes" : "no");
	fflush(stdout);
	atomic_store(&outer_done, 1);
}

int main(void)
{
	rcu_register_thread();
	call_rcu(&outer_head, outer);
	while (!atomic_load(&outer_done))
		usleep(1000);
	rcu_barrier();
	CHECK(atomic_load(&inner_ran));
	rcu_unregister_thread();
	return 0;
}
