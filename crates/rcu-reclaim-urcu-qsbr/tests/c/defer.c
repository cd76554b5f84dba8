/* defer_rcu from registered QSBR threads, more than a queue holds (4,096:
 * a full queue waits for a grace period on the deferring thread),
 * rcu_defer_barrier_thread, rcu_defer_unregister_thread, then
 * rcu_defer_barrier. Every deferred call runs exactly once, and only after
 * the objects were unpublished (an online reader checks a magic word).
 *
 * The defer calls are made offline, going online now and then to read:
 * liburcu-qsbr's defer calls take its defer mutex, which the thread that
 * flushes holds across synchronize_rcu, so an online thread blocked on it
 * holds up the grace period the holder waits for (a deadlock in liburcu;
 * the drop-in puts the thread offline while it waits for the lock, which
 * its unit tests check). */
#include "common.h"
#include <stdatomic.h>

#define THREADS 3
#define PER_THREAD 10000
#define MAGIC 0x5eed5eedL

struct obj {
	long magic;
	atomic_int ran;
};

static struct obj *shared;
static atomic_long twice, bad;
static atomic_int stop;

static void release(void *p)
{
	struct obj *o = p;
	o->magic = 0;
	if (atomic_fetch_add(&o->ran, 1))
		atomic_fetch_add(&twice, 1);
}

static void *reader(void *arg)
{
	(void)arg;
	rcu_register_thread();
	while (!atomic_load(&stop)) {
		rcu_read_lock();
		struct obj *p = rcu_dereference(shared);
		if (p && p->magic != MAGIC)
			atomic_fetch_add(&bad, 1);
		rcu_read_unlock();
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
	return NULL;
}

static struct obj *objs[THREADS];

static void *deferrer(void *arg)
{
	long id = (long)arg;
	rcu_register_thread();
	rcu_thread_offline();
	CHECK(rcu_defer_register_thread() == 0);
	for (int i = 0; i < PER_THREAD; i++) {
		struct obj *o = &objs[id][i];
		o->magic = MAGIC;
		struct obj *old = rcu_xchg_pointer(&shared, o);
		if (old)
			defer_rcu(release, old);
		if (i % 64 == 0) {
			rcu_thread_online();
			rcu_read_lock();
			struct obj *p = rcu_dereference(shared);
			if (p && p->magic != MAGIC)
				atomic_fetch_add(&bad, 1);
			rcu_read_unlock();
			rcu_quiescent_state();
			rcu_thread_offline();
		}
		if (i == PER_THREAD / 2)
			rcu_defer_barrier_thread();
	}
	rcu_defer_unregister_thread();
	rcu_thread_online();
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	pthread_t r, t[THREADS];
	rcu_register_thread();
	for (int i = 0; i < THREADS; i++) {
		objs[i] = calloc(PER_THREAD, sizeof(struct obj));
		CHECK(objs[i]);
	}
	CHECK(pthread_create(&r, NULL, reader, NULL) == 0);
	for (long i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, deferrer, (void *)i) == 0);
	rcu_thread_offline(); /* blocking in pthread_join */
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	atomic_store(&stop, 1);
	pthread_join(r, NULL);
	/* Retire the last one from here. */
	CHECK(rcu_defer_register_thread() == 0);
	defer_rcu(release, rcu_xchg_pointer(&shared, NULL));
	rcu_defer_barrier();
	rcu_defer_unregister_thread();
	rcu_thread_online();
	long ran = 0, missing = 0;
	for (int i = 0; i < THREADS; i++)
		for (int j = 0; j < PER_THREAD; j++) {
			ran += atomic_load(&objs[i][j].ran);
			missing += atomic_load(&objs[i][j].ran) != 1;
		}
	printf("deferred %d, ran %ld, twice %ld, not exactly once %ld, bad reads %ld\n",
	       THREADS * PER_THREAD, ran, atomic_load(&twice), missing,
	       atomic_load(&bad));
	rcu_unregister_thread();
	for (int i = 0; i < THREADS; i++)
		free(objs[i]);
	return missing == 0 && atomic_load(&bad) == 0 ? 0 : 1;
}
