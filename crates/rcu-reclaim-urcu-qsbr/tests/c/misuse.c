/* Misuse of the QSBR read side, one mode a process:
 *   sync_in_offline_lock  built with -DDEBUG_RCU (so rcu_read_lock is a
 *                call): rcu_read_lock on an offline thread, then
 *                synchronize_rcu. liburcu-qsbr gives that section no
 *                protection and returns; ours aborted (the section it
 *                protects would have waited for itself). It now ends the
 *                section for the wait, saying so, and returns. Same output
 *                on both libraries.
 *   barrier_in_offline_lock  the same with call_rcu then rcu_barrier:
 *                liburcu-qsbr waits for the callback; ours printed an
 *                error and returned before it ran. It now waits, the
 *                section ended meanwhile, saying so. Same output on both.
 *   register_twice   liburcu asserts. Ours only: puts the thread online,
 *                saying so.
 *   unregister_unregistered  liburcu asserts. Ours only: ignored, saying
 *                so. */
#include "common.h"
#include <string.h>

static volatile int callback_ran;

static void mark_ran(struct rcu_head *head)
{
	(void)head;
	callback_ran = 1;
}

static void *sync_thread(void *arg)
{
	(void)arg;
	synchronize_rcu();
	return NULL;
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	const char *m = argv[1];
	setvbuf(stdout, NULL, _IONBF, 0);
	if (!strcmp(m, "sync_in_offline_lock")) {
		rcu_register_thread();
		rcu_thread_offline();
		rcu_read_lock();
		synchronize_rcu();
		/* Another thread's grace period ends too. */
		pthread_t t;
		CHECK(pthread_create(&t, NULL, sync_thread, NULL) == 0);
		rcu_read_unlock();
		CHECK(pthread_join(t, NULL) == 0);
		rcu_thread_online();
		rcu_unregister_thread();
		printf("synchronize_rcu returned\n");
	} else if (!strcmp(m, "barrier_in_offline_lock")) {
		static struct rcu_head head;
		rcu_register_thread();
		rcu_thread_offline();
		rcu_read_lock();
		call_rcu(&head, mark_ran);
		rcu_barrier();
		CHECK(callback_ran);
		rcu_read_unlock();
		rcu_thread_online();
		rcu_unregister_thread();
		printf("rcu_barrier waited\n");
	} else if (!strcmp(m, "register_twice")) {
		rcu_register_thread();
		rcu_register_thread();
		synchronize_rcu();
		rcu_unregister_thread();
		printf("registered twice\n");
	} else if (!strcmp(m, "unregister_unregistered")) {
		rcu_unregister_thread();
		synchronize_rcu();
		printf("unregistered without registering\n");
	} else {
		CHECK(!"unknown mode");
	}
	return 0;
}
