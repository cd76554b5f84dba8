/* A call_rcu flood of heavy objects from online QSBR threads for SECONDS:
 * THREADS registered threads, online throughout, each allocate an object
 * of SIZE bytes, write it, and queue its rcu_head with a callback that
 * frees it, reporting a quiescent state every EVERY calls (64 if not
 * given). Prints the rate, every callback's run after rcu_barrier, and
 * the peak resident memory (sampled every 100 ms).
 * The test online_threads_flooding_call_rcu_with_heavy_objects_keep_to_the_cgroup_limit
 * runs it in a memory cgroup.
 *   flood_heavy THREADS SECONDS SIZE [EVERY] */
#include "common.h"
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

struct obj {
	struct rcu_head head;
	char data[];
};

static size_t size;
static long every = 64;
static atomic_long done, calls;
static atomic_int stop;

static void free_obj(struct rcu_head *h)
{
	free(caa_container_of(h, struct obj, head));
	atomic_fetch_add_explicit(&done, 1, memory_order_relaxed);
}

static void *flooder(void *arg)
{
	(void)arg;
	rcu_register_thread();
	long n = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct obj *o = malloc(sizeof(*o) + size);
		CHECK(o);
		memset(o->data, (int)n, size);
		call_rcu(&o->head, free_obj);
		if (++n % every == 0)
			rcu_quiescent_state();
	}
	atomic_fetch_add(&calls, n);
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
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: %s THREADS SECONDS SIZE [EVERY]\n", argv[0]);
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
		CHECK(!pthread_create(&t[i], NULL, flooder, NULL));
	long peak = 0;
	for (int i = 0; i < secs * 10; i++) {
		usleep(100000);
		long r = rss_kb();
		if (r > peak)
			peak = r;
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < threads; i++)
		CHECK(!pthread_join(t[i], NULL));
	rcu_barrier();
	printf("%.2f M calls/s, %ld of %ld callbacks run, peak rss %ld MB\n",
	       atomic_load(&calls) / (double)secs / 1e6, atomic_load(&done),
	       atomic_load(&calls), peak / 1024);
	return 0;
}
