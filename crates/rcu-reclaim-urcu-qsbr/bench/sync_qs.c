/*
 * synchronize_rcu while every reader thread reports a quiescent state about
 * every 10 us (issue 20's target), against liburcu-qsbr.so.8 or the
 * rcu-reclaim drop-in through LD_LIBRARY_PATH: the same binary for both.
 *
 *   gcc -O2 -o sync_qs sync_qs.c -lurcu-qsbr -lpthread
 *   ./sync_qs READERS SYNCS        (prints mean and p99 us per synchronize)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <urcu-qsbr.h>

static volatile int stop;
static int registered;
static unsigned long *shared;

static unsigned long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void *reader(void *arg)
{
	unsigned long sum = 0;
	(void)arg;
	rcu_register_thread();
	__atomic_add_fetch(&registered, 1, __ATOMIC_SEQ_CST);
	while (!stop) {
		unsigned long long until = now_ns() + 10000; /* ~10 us of reading */
		while (now_ns() < until) {
			rcu_read_lock();
			unsigned long *p = rcu_dereference(shared);
			sum += p ? *p : 0;
			rcu_read_unlock();
		}
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
	return (void *)sum;
}

static int cmp(const void *a, const void *b)
{
	unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int readers = argc > 1 ? atoi(argv[1]) : 2;
	int syncs = argc > 2 ? atoi(argv[2]) : 2000;
	pthread_t t[64];
	unsigned long long *lat = calloc(syncs, sizeof(*lat)), total = 0;
	static unsigned long one = 1;

	if (readers < 1 || readers > 64 || syncs < 1 || !lat) {
		fprintf(stderr, "usage: %s READERS(1-64) SYNCS(>0)\n", argv[0]);
		return 2;
	}
	rcu_assign_pointer(shared, &one);
	for (int i = 0; i < readers; i++)
		pthread_create(&t[i], NULL, reader, NULL);
	while (__atomic_load_n(&registered, __ATOMIC_SEQ_CST) < readers)
		; /* every reader registered before the first grace period */
	for (int i = 0; i < syncs; i++) {
		unsigned long long s = now_ns();
		synchronize_rcu(); /* this thread is not registered */
		lat[i] = now_ns() - s;
		total += lat[i];
	}
	stop = 1;
	for (int i = 0; i < readers; i++)
		pthread_join(t[i], NULL);
	qsort(lat, syncs, sizeof(*lat), cmp);
	printf("readers %d: synchronize_rcu mean %.1f us, p50 %.1f us, p99 %.1f us\n", readers,
	       total / 1000.0 / syncs, lat[syncs / 2] / 1000.0, lat[syncs * 99 / 100] / 1000.0);
	free(lat);
	return 0;
}
