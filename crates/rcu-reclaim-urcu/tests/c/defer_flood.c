/* defer_rcu's per-thread queues: a flood from several threads (each far
 * past the 4,096 entries a queue holds, so full queues are flushed on the
 * deferring thread) where readers never see a deferred object run early and
 * every callback runs exactly once; rcu_defer_unregister_thread runs what
 * its thread still queued; rcu_defer_barrier runs what every thread
 * queued, including threads that wait, registered, with entries queued. */
#include "common.h"
#include <poll.h>
#include <stdatomic.h>

#define UPDATERS 4
#define PER_THREAD (3 * 4096 + 123)
#define PARKED 1000

enum { ALIVE = 1, DEAD = 2 };

struct obj {
	atomic_int state;
	atomic_int runs;
};

static struct obj objs[UPDATERS * PER_THREAD + 1];
static struct obj parked[UPDATERS * PARKED];
static struct obj *_Atomic shared;
static atomic_int stop, ready;
static atomic_long early;

static void kill_obj(void *p)
{
	struct obj *o = p;
	atomic_store(&o->state, DEAD);
	atomic_fetch_add(&o->runs, 1);
}

static void *reader(void *arg)
{
	(void)arg;
	rcu_register_thread();
	while (!atomic_load(&stop)) {
		rcu_read_lock();
		struct obj *o = rcu_dereference(shared);
		for (int i = 0; i < 50; i++)
			if (atomic_load(&o->state) != ALIVE)
				atomic_fetch_add(&early, 1);
		rcu_read_unlock();
	}
	rcu_unregister_thread();
	return NULL;
}

static void *updater(void *arg)
{
	long k = (long)arg;
	rcu_register_thread();
	CHECK(rcu_defer_register_thread() == 0);
	for (long i = 0; i < PER_THREAD; i++) {
		struct obj *o = &objs[1 + k * PER_THREAD + i];
		atomic_store(&o->state, ALIVE);
		struct obj *old = rcu_xchg_pointer(&shared, o);
		defer_rcu(kill_obj, old);
	}
	/* What is still queued runs here, before it returns. */
	rcu_defer_unregister_thread();
	rcu_unregister_thread();
	return NULL;
}

static void *parker(void *arg)
{
	long k = (long)arg;
	rcu_register_thread();
	CHECK(rcu_defer_register_thread() == 0);
	for (long i = 0; i < PARKED; i++)
		defer_rcu(kill_obj, &parked[k * PARKED + i]);
	atomic_fetch_add(&ready, 1);
	while (atomic_load(&stop) != 2)
		poll(NULL, 0, 1);
	rcu_defer_unregister_thread();
	rcu_unregister_thread();
	return NULL;
}

static long ran_once(struct obj *o, long n, long *twice)
{
	long once = 0;
	for (long i = 0; i < n; i++) {
		int r = atomic_load(&o[i].runs);
		once += r == 1;
		*twice += r > 1;
	}
	return once;
}

int main(void)
{
	pthread_t u[UPDATERS], r;
	long twice = 0;
	rcu_register_thread();
	atomic_store(&objs[0].state, ALIVE);
	atomic_store(&shared, &objs[0]);
	CHECK(pthread_create(&r, NULL, reader, NULL) == 0);
	for (long k = 0; k < UPDATERS; k++)
		CHECK(pthread_create(&u[k], NULL, updater, (void *)k) == 0);
	for (int k = 0; k < UPDATERS; k++)
		pthread_join(u[k], NULL);
	atomic_store(&stop, 1);
	pthread_join(r, NULL);
	/* Every object but the one still published was retired and has run,
	 * by the time its updater unregistered. */
	long n = UPDATERS * PER_THREAD;
	long once = ran_once(objs, n + 1, &twice);
	printf("flood: %d threads x %d defer_rcu, ran once %ld of %ld, twice %ld, early %ld\n",
	       UPDATERS, PER_THREAD, once, n, twice, atomic_load(&early));
	CHECK(once == n && twice == 0 && atomic_load(&early) == 0);

	/* Threads that stay registered with entries queued: the barrier runs
	 * them all, on the caller. */
	atomic_store(&stop, 0);
	for (long k = 0; k < UPDATERS; k++)
		CHECK(pthread_create(&u[k], NULL, parker, (void *)k) == 0);
	while (atomic_load(&ready) != UPDATERS)
		poll(NULL, 0, 1);
	rcu_defer_barrier();
	once = ran_once(parked, UPDATERS * PARKED, &twice);
	printf("barrier: ran once %ld of %d, twice %ld\n", once, UPDATERS * PARKED, twice);
	CHECK(once == UPDATERS * PARKED && twice == 0);
	atomic_store(&stop, 2);
	for (int k = 0; k < UPDATERS; k++)
		pthread_join(u[k], NULL);

	/* This thread: defer inside a read-side section (allowed while the
	 * queue has room), then its own barrier runs it. */
	CHECK(rcu_defer_register_thread() == 0);
	static struct obj mine[100];
	rcu_read_lock();
	for (int i = 0; i < 100; i++)
		defer_rcu(kill_obj, &mine[i]);
	rcu_read_unlock();
	rcu_defer_barrier_thread();
	once = ran_once(mine, 100, &twice);
	printf("own queue: ran once %ld of 100, twice %ld\n", once, twice);
	CHECK(once == 100 && twice == 0);
	/* Nothing queued: both barriers return at once. */
	rcu_defer_barrier();
	rcu_defer_barrier_thread();
	rcu_defer_unregister_thread();
	rcu_unregister_thread();
	return 0;
}
