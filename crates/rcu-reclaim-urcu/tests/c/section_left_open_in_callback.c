/* A call_rcu callback that takes rcu_read_lock() and returns without its
 * rcu_read_unlock(): every later grace period waits for the call_rcu
 * thread for ever (liburcu hangs without a word). The drop-in aborts,
 * naming the mistake, once the callback's batch has run. */
#include "common.h"

static struct rcu_head head;

static void leaves_section_open(struct rcu_head *h)
{
	(void)h;
	rcu_read_lock();
}

int main(void)
{
	rcu_register_thread();
	call_rcu(&head, leaves_section_open);
	printf("queued\n");
	fflush(stdout);
	rcu_barrier();
	synchronize_rcu();
	printf("not reached\n");
	rcu_unregister_thread();
	return 0;
}
