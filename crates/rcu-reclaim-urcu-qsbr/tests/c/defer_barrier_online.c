/* A defer barrier, thread barrier or unregistration with nothing queued
 * is no quiescent state: liburcu skips the grace period when no defer_rcu
 * entry waits, so an online QSBR reader that makes one of these calls
 * inside its section, with a reference read there, still holds up a
 * writer's synchronize_rcu (held_reference.h). (Before: the drop-in went
 * offline for each, a quiescent state, and the reader read the poison.) */
#include "held_reference.h"

static void ran(void *p)
{
	(void)p;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	rcu_register_thread();
	rcu_defer_register_thread();
	/* What was deferred has run: the queues are empty again. */
	defer_rcu(ran, NULL);
	rcu_thread_offline();
	rcu_defer_barrier();
	rcu_thread_online();
	printf("rcu_defer_barrier, nothing queued: %s\n", round_intact(rcu_defer_barrier));
	printf("rcu_defer_barrier_thread, nothing queued: %s\n",
	       round_intact(rcu_defer_barrier_thread));
	printf("rcu_defer_unregister_thread, nothing queued: %s\n",
	       round_intact(rcu_defer_unregister_thread));
	rcu_unregister_thread();
	return 0;
}
