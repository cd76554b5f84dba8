/* QSBR readers check a magic word in what they read between quiescent
 * states, while writers publish new objects (rcu_xchg_pointer, and
 * rcu_assign_pointer under a lock), wait with synchronize_rcu (online: it
 * puts them offline for the wait) and then poison the old object. A reader
 * that saw a poisoned object read it after its grace period ended. Poisoned
 * objects are kept until the end, so the poison stays visible. */
#include "common.h"
#include <sched.h>
#include <stdatomic.h>

#define READERS 3
#define WRITERS 2
#define UPDATES 300
#define MAGIC 0x600dcafeL
#define POISON 0xdeaddeadL

struct obj {
	long magic;
	long value;
	struct obj *grave; /* the writer's list of retired objects */
};

static struct obj *shared;
static pthread_mutex_t assign_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int stop, ready;
static atomic_long bad, reads;

static void *reader(void *arg)
{
	(void)arg;
	long n = 0, b = 0;
	rcu_register_thread();
	CHECK(rcu_read_ongoing());
	atomic_fetch_add(&ready, 1);
	while (!atomic_load(&stop)) {
		for (int k = 0; k < 64; k++) {
			rcu_read_lock();
			struct obj *p = rcu_dereference(shared);
			if (p && p->magic != MAGIC)
				b++;
			rcu_read_unlock();
			n++;
		}
		rcu_quiescent_state();
		if (n % 4096 == 0) {
			/* A while offline, as before blocking. */
			rcu_thread_offline();
			CHECK(!rcu_read_ongoing());
			rcu_thread_online();
		}
	}
	rcu_unregister_thread();
	atomic_fetch_add(&bad, b);
	atomic_fetch_add(&reads, n);
	return NULL;
}

static void *writer(void *arg)
{
	long id = (long)arg;
	struct obj *grave = NULL;
	rcu_register_thread();
	for (int i = 0; i < UPDATES; i++) {
		struct obj *n = malloc(sizeof(*n));
		CHECK(n);
		n->magic = MAGIC;
		n->value = i;
		n->grave = NULL;
		struct obj *old;
		if ((i + id) % 2) {
			/* Under the lock too: an xchg between the other
			 * writer's load and store retired the same object
			 * twice (and lost this one); the test's bug, seen as a
			 * double free at the end. */
			pthread_mutex_lock(&assign_lock);
			old = rcu_xchg_pointer(&shared, n);
			pthread_mutex_unlock(&assign_lock);
		} else {
			pthread_mutex_lock(&assign_lock);
			old = shared;
			rcu_assign_pointer(shared, n);
			pthread_mutex_unlock(&assign_lock);
		}
		synchronize_rcu();
		CHECK(rcu_read_ongoing()); /* back online */
		if (old) {
			old->magic = POISON;
			old->grave = grave;
			grave = old;
		}
	}
	/* Nothing read before this quiescent state is kept. */
	rcu_quiescent_state();
	rcu_thread_offline();
	synchronize_rcu();
	while (grave) {
		struct obj *next = grave->grave;
		free(grave);
		grave = next;
	}
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	pthread_t r[READERS], w[WRITERS];
	for (long i = 0; i < READERS; i++)
		CHECK(pthread_create(&r[i], NULL, reader, NULL) == 0);
	while (atomic_load(&ready) < READERS)
		sched_yield();
	for (long i = 0; i < WRITERS; i++)
		CHECK(pthread_create(&w[i], NULL, writer, (void *)i) == 0);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < READERS; i++)
		pthread_join(r[i], NULL);
	CHECK(atomic_load(&reads) > 0);
	struct obj *last = shared;
	synchronize_rcu(); /* unregistered caller */
	free(last);
	printf("readers %d, writers %d, updates %d, poisoned reads %ld\n",
	       READERS, WRITERS, WRITERS * UPDATES, atomic_load(&bad));
	return atomic_load(&bad) == 0 ? 0 : 1;
}
