/* Readers dereference a shared pointer inside read-side sections while a
 * writer replaces it with rcu_xchg_pointer, waits with synchronize_rcu and
 * poisons the old version. A reader that ever sees poison inside its
 * section caught a grace period ending too early. Poisoned versions sit in
 * a quarantine ring before free(), so a premature grace period shows as
 * poison, not as a use after free. */
#include "common.h"
#include <stdatomic.h>
#include <sched.h>

#define READERS 4
#define UPDATES 2000
#define QUARANTINE 64
#define MAGIC_LIVE 0x5a5a5a5aUL
#define MAGIC_POISON 0xdeaddeadUL

struct node {
	unsigned long magic;
	unsigned long value;
};

static struct node *shared;
static atomic_int stop;
static atomic_long errors, reads;

static void *reader(void *arg)
{
	(void)arg;
	rcu_register_thread();
	while (!atomic_load(&stop)) {
		rcu_read_lock();
		CHECK(rcu_read_ongoing());
		rcu_read_lock(); /* nesting */
		struct node *p = rcu_dereference(shared);
		unsigned long before = p->magic;
		for (int i = 0; i < 50; i++)
			__asm__ __volatile__("" ::: "memory");
		sched_yield();
		unsigned long after = p->magic;
		rcu_read_unlock();
		CHECK(rcu_read_ongoing());
		if (before != MAGIC_LIVE || after != MAGIC_LIVE)
			atomic_fetch_add(&errors, 1);
		rcu_read_unlock();
		atomic_fetch_add(&reads, 1);
	}
	CHECK(!rcu_read_ongoing());
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	pthread_t t[READERS];
	struct node *ring[QUARANTINE] = { 0 };

	rcu_init();
	/* rcu_read_ongoing gives the nesting depth, unregistered or not. */
	rcu_read_lock();
	rcu_read_lock();
	printf("nested, unregistered: ongoing %d\n", rcu_read_ongoing());
	rcu_read_unlock();
	rcu_read_unlock();
	rcu_register_thread();
	rcu_read_lock();
	rcu_read_lock();
	rcu_read_lock();
	printf("nested, registered: ongoing %d\n", rcu_read_ongoing());
	rcu_read_unlock();
	rcu_read_unlock();
	rcu_read_unlock();
	printf("outside: ongoing %d\n", rcu_read_ongoing());
	struct node *first = malloc(sizeof(*first));
	first->magic = MAGIC_LIVE;
	first->value = 0;
	rcu_set_pointer(&shared, first);
	for (int i = 0; i < READERS; i++)
		CHECK(pthread_create(&t[i], NULL, reader, NULL) == 0);
	/* Updates start once readers run: on a loaded machine the updates
	 * could otherwise all finish before any reader is scheduled. */
	while (atomic_load(&reads) == 0)
		sched_yield();

	unsigned long sum = 0;
	for (unsigned long u = 1; u <= UPDATES; u++) {
		struct node *n = malloc(sizeof(*n));
		n->magic = MAGIC_LIVE;
		n->value = u;
		struct node *old = rcu_xchg_pointer(&shared, n);
		CHECK(old->value == u - 1);
		synchronize_rcu();
		old->magic = MAGIC_POISON;
		sum += old->value;
		free(ring[u % QUARANTINE]);
		ring[u % QUARANTINE] = old;
	}
	/* rcu_cmpxchg_pointer: a failing and a succeeding exchange. */
	struct node *cur = rcu_dereference(shared);
	struct node *other = malloc(sizeof(*other));
	other->magic = MAGIC_LIVE;
	other->value = 7;
	CHECK(rcu_cmpxchg_pointer(&shared, other, other) == cur);
	CHECK(rcu_cmpxchg_pointer(&shared, cur, other) == cur);
	CHECK(rcu_dereference(shared) == other);

	atomic_store(&stop, 1);
	for (int i = 0; i < READERS; i++)
		pthread_join(t[i], NULL);
	synchronize_rcu();
	free(cur);
	free(other);
	for (int i = 0; i < QUARANTINE; i++)
		free(ring[i]);
	CHECK(atomic_load(&reads) > 0);
	printf("updates %d, sum of retired values %lu, poisoned reads %ld\n",
	       UPDATES, sum, atomic_load(&errors));
	rcu_unregister_thread();
	return atomic_load(&errors) == 0 ? 0 : 1;
}
