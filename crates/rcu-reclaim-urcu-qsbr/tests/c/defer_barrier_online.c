/* A defer barrier, thread barrier or unregistration with nothing queued
 * is no quiescent state: liburcu skips the grace period when no defer_rcu
 * entry waits, so an online QSBR reader that makes one of these calls
 * inside its section, with a reference read there, still holds up a
 * writer's synchronize_rcu; the writer poisons the old version as soon as
 * synchronize_rcu returns. (Before: the drop-in went offline for each,
 * a quiescent state, and the reader read the poison.) */
#include "common.h"
#include <stdatomic.h>
#include <unistd.h>

struct obj {
	int value;
};

static struct obj *gp;
static atomic_int writing;

static void *writer(void *arg)
{
	(void)arg;
	rcu_register_thread();
	rcu_thread_offline();
	struct obj *next = malloc(sizeof(*next));
	next->value = 2;
	atomic_store(&writing, 1);
	struct obj *old = rcu_xchg_pointer(&gp, next);
	synchronize_rcu();
	old->value = -1; /* poison */
	rcu_unregister_thread();
	return NULL;
}


/* One round: the reader makes call `what` with the writer waiting for it. */
static int round_intact(void (*what)(void))
{
	struct obj *first = malloc(sizeof(*first));
	first->value = 1;
	rcu_assign_pointer(gp, first);
	atomic_store(&writing, 0);
	rcu_quiescent_state();
	rcu_read_lock();
	struct obj *p = rcu_dereference(gp);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, writer, NULL) == 0);
	while (!atomic_load(&writing))
		;
	usleep(20000); /* the writer now waits for this reader */
	what();
	usleep(50000);
	int intact = p->value == 1;
	rcu_read_unlock();
	rcu_thread_offline();
	CHECK(pthread_join(t, NULL) == 0);
	rcu_thread_online();
	free(first);
	free(rcu_dereference(gp));
	return intact;
}

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
	printf("rcu_defer_barrier, nothing queued: %s\n",
	       round_intact(rcu_defer_barrier) ? "intact" : "POISONED");
	printf("rcu_defer_barrier_thread, nothing queued: %s\n",
	       round_intact(rcu_defer_barrier_thread) ? "intact" : "POISONED");
	printf("rcu_defer_unregister_thread, nothing queued: %s\n",
	       round_intact(rcu_defer_unregister_thread) ? "intact" : "POISONED");
	rcu_unregister_thread();
	return 0;
}
