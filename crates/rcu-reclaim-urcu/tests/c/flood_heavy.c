/* A call_rcu flood of heavy objects for SECONDS: THREADS threads each
 * allocate an object of SIZE bytes, write it, and queue its rcu_head
 * with a callback that frees it. Prints the rate, every callback's run
 * after rcu_barrier, and the peak resident memory (sampled every 100 ms).
 * The test a_call_rcu_flood_of_heavy_objects_keeps_to_the_cgroup_limit
 * and bench/flood_cgroup.sh run it in a memory cgroup.
 *   flood_heavy THREADS SECONDS SIZE
 * Built with QSBR defined (the QSBR drop-in's tests/c/flood_heavy.c), the
 * threads are QSBR threads, online throughout, reporting a quiescent state
 * every EVERY calls (64 if not given):
 *   flood_heavy THREADS SECONDS SIZE [EVERY]
 * Built with DEFER defined (memb), the objects are freed through
 * defer_rcu instead, and rcu_defer_barrier waits for them. */
#define _GNU_SOURCE
#ifdef QSBR
#include <urcu-qsbr.h>
#define QUIESCENT() rcu_quiescent_state()
#define MAX_ARGS 5
#elif defined(DEFER)
#define RCU_MEMBARRIER /* the memb flavor, with the rcu_* names mapped */
#include <urcu.h>
#define QUIESCENT() ((void)0)
#define MAX_ARGS 4
#else
#include <urcu/urcu-memb.h>
#define rcu_register_thread urcu_memb_register_thread
#define rcu_unregister_thread urcu_memb_unregister_thread
#define call_rcu urcu_memb_call_rcu
#define rcu_barrier urcu_memb_barrier
#define QUIESCENT() ((void)0)
#define MAX_ARGS 4
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct obj {
	struct rcu_head head;
	char data[];
};

static size_t size;
static atomic_long done, calls;
static atomic_int stop;
static long every = 64;

#ifndef DEFER
static void free_obj(struct rcu_head *h)
{
	free(caa_container_of(h, struct obj, head));
	atomic_fetch_add_explicit(&done, 1, memory_order_relaxed);
}
#else
static void free_deferred(void *p)
{
	free(p);
	atomic_fetch_add_explicit(&done, 1, memory_order_relaxed);
}
#endif

static void *flooder(void *arg)
{
	(void)arg;
	rcu_register_thread();
#ifdef DEFER
	if (rcu_defer_register_thread())
		abort();
#endif
	long n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct obj *o = malloc(sizeof(*o) + size);
		if (!o)
			abort();
		memset(o->data, (int)n, size);
#ifdef DEFER
		defer_rcu(free_deferred, o);
#else
		call_rcu(&o->head, free_obj);
#endif
		if (++n % every == 0)
			QUIESCENT();
	}
	atomic_fetch_add(&calls, n);
#ifdef DEFER
	rcu_defer_unregister_thread();
#endif
	rcu_unregister_thread();
	return NULL;
}

static long rss_kb(void)
{
	char line[256];
	long kb = 0;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = atol(line + 6);
	fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > MAX_ARGS) {
		fprintf(stderr, "usage: %s THREADS SECONDS SIZE%s\n", argv[0],
			MAX_ARGS == 5 ? " [EVERY]" : "");
		return 2;
	}
	int threads = atoi(argv[1]), secs = atoi(argv[2]);
	size = (size_t)atol(argv[3]);
	if (argc == 5)
		every = atol(argv[4]);
	if (threads < 1 || threads > 64 || secs < 1 || every < 1) {
		fprintf(stderr, "THREADS: 1 to 64, SECONDS and EVERY: at least 1\n");
		return 2;
	}
	pthread_t t[64];
	for (int i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, flooder, NULL))
			abort();
	long peak = 0;
	for (int i = 0; i < secs * 10; i++) {
		usleep(100000);
		long r = rss_kb();
		if (r > peak)
			peak = r;
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	rcu_barrier();
#ifdef DEFER
	rcu_defer_barrier();
#endif
	printf("%.2f M calls/s, %ld of %ld callbacks run, peak rss %ld MB\n",
	       atomic_load(&calls) / (double)secs / 1e6, atomic_load(&done),
	       atomic_load(&calls), peak / 1024);
	return 0;
}
