/* QSBR readers hold what they read across a sched_yield() before their
 * next quiescent state, while a writer replaces it, waits with
 * synchronize_rcu and poisons the old object: a grace period that ended
 * before a reader's quiescent state shows as poison. Built with and
 * without _LGPL_SOURCE (then the quiescent states are inlined, and write
 * the reader block directly). Poisoned objects are freed only at the end. */
#include "common.h"
#include <sched.h>
#include <stdatomic.h>

#define READERS 3
#define UPDATES 500
#define MAGIC 0x600dcafeL
#define POISON 0xdeaddeadL

struct obj {
	long magic;
	struct obj *grave;
};

static struct obj *shared;
static atomic_int stop, ready;
static atomic_long bad;

static void *reader(void *arg)
{
	(void)arg;
	rcu_register_thread();
	atomic_fetch_add(&ready, 1);
	while (!atomic_load(&stop)) {
		struct obj *p = rcu_dereference(shared);
		long before = p->magic;
		sched_yield();
		long after = p->magic;
		if (before != MAGIC || after != MAGIC)
			atomic_fetch_add(&bad, 1);
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	pthread_t t[READERS];
	struct obj *grave = NULL;

	rcu_register_thread();
	struct obj *first = calloc(1, sizeof(*first));
	first->magic = MAGIC;
	rcu_assign_pointer(shared, first);
	for (int i = 0; i < READERS; i++)
		CHECK(pthread_create(&t[i], NULL, reader, NULL) == 0);
	while (atomic_load(&ready) < READERS)
		sched_yield();
	rcu_thread_offline();
	for (int u = 0; u < UPDATES; u++) {
		struct obj *n = calloc(1, sizeof(*n));
		n->magic = MAGIC;
		struct obj *old = rcu_xchg_pointer(&shared, n);
		synchronize_rcu();
		old->magic = POISON;
		old->grave = grave;
		grave = old;
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < READERS; i++)
		pthread_join(t[i], NULL);
	rcu_thread_online();
	while (grave) {
		struct obj *next = grave->grave;
		free(grave);
		grave = next;
	}
	free(shared);
	rcu_unregister_thread();
	printf("updates %d, poisoned reads %ld\n", UPDATES, atomic_load(&bad));
	return atomic_load(&bad) == 0 ? 0 : 1;
}
