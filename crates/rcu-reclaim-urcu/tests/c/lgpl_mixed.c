/* Built with _LGPL_SOURCE, and calling the library's own read side too (as
 * a program does whose files are built some with _LGPL_SOURCE and some
 * without): on liburcu both write the thread's urcu_memb_reader.ctr, so an
 * inlined lock pairs with an exported unlock and back, and each sees the
 * other's section. Then readers alternate mixed pairs and hold what they
 * read across a yield while a writer replaces it, waits with
 * synchronize_rcu and poisons the old object. */
#define _LGPL_SOURCE
#include "common.h"
#include <sched.h>
#include <stdatomic.h>

/* The library's exported functions, by their symbol names (the header maps
 * the names to the inlined versions under _LGPL_SOURCE). */
void ext_lock(void) __asm__("urcu_memb_read_lock");
void ext_unlock(void) __asm__("urcu_memb_read_unlock");
int ext_ongoing(void) __asm__("urcu_memb_read_ongoing");

#define READERS 3
#define UPDATES 1000
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
	long i = (long)arg;
	rcu_register_thread();
	atomic_fetch_add(&ready, 1);
	while (!atomic_load(&stop)) {
		if (i++ % 2)
			rcu_read_lock();
		else
			ext_lock();
		struct obj *p = rcu_dereference(shared);
		long before = p->magic;
		sched_yield();
		long after = p->magic;
		if (before != MAGIC || after != MAGIC)
			atomic_fetch_add(&bad, 1);
		if (i % 3)
			ext_unlock();
		else
			rcu_read_unlock();
	}
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	pthread_t t[READERS];
	struct obj *grave = NULL;

	rcu_register_thread();
	/* Inlined lock, exported unlock, and back. */
	rcu_read_lock();
	ext_unlock();
	ext_lock();
	rcu_read_unlock();
	/* Exported outer section, inlined inner one, each seen by the other. */
	ext_lock();
	rcu_read_lock();
	CHECK(rcu_read_ongoing());
	rcu_read_unlock();
	printf("inlined ongoing in an exported section: %d\n", rcu_read_ongoing() != 0);
	ext_unlock();
	rcu_read_lock();
	printf("exported ongoing in an inlined section: %d\n", ext_ongoing() != 0);
	rcu_read_unlock();
	printf("ongoing after: %d %d\n", rcu_read_ongoing() != 0, ext_ongoing() != 0);
	synchronize_rcu();

	struct obj *first = calloc(1, sizeof(*first));
	first->magic = MAGIC;
	rcu_assign_pointer(shared, first);
	for (long i = 0; i < READERS; i++)
		CHECK(pthread_create(&t[i], NULL, reader, (void *)i) == 0);
	while (atomic_load(&ready) < READERS)
		sched_yield();
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
