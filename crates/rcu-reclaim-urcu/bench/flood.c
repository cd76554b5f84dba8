/* The liburcu drop-in under callback floods: one program, run once against
 * Debian's liburcu-memb.so.8 and once against rcu-reclaim-urcu dropped in
 * through LD_LIBRARY_PATH (bench/flood.sh). Built against liburcu 0.13's
 * headers without _LGPL_SOURCE.
 *
 *   flood call  SECONDS  liburcu-cds's hash table (64K buckets, keys 0..64K):
 *                        4 updaters each look a random key up and remove it
 *                        (call_rcu on the node) or add it; 1 reader looks keys
 *                        up. Prints RSS every second, then updates/s, peak RSS,
 *                        the RSS slope over the second half, and updates per
 *                        CPU-second of the whole process (user + system time,
 *                        all threads: steadier than updates/s where other
 *                        work shares the CPUs).
 *   flood defer SECONDS  the same with defer_rcu per removed node.
 *   flood latency N      one updater: call_rcu, wait for its callback, N times;
 *                        mean and p99 call_rcu -> callback latency.
 *   flood sync N         N synchronize_rcu() with no thread registered: ns each.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <poll.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdatomic.h>
#define RCU_MEMBARRIER
#include <urcu.h>
#include <urcu/rculfhash.h>

#define UPDATERS 4
#define KEYS (1 << 16)

struct node {
	unsigned long key;
	struct cds_lfht_node node;
	char payload[32];
	struct rcu_head rcu;
};

static struct cds_lfht *ht;
static atomic_int stop;
static atomic_long updates;
static int use_defer;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long rss_kb(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int match(struct cds_lfht_node *n, const void *key)
{
	return caa_container_of(n, struct node, node)->key == *(const unsigned long *)key;
}

static unsigned long hash(unsigned long key)
{
	return key * 0x9E3779B97F4A7C15UL;
}

static void free_node(struct rcu_head *head)
{
	free(caa_container_of(head, struct node, rcu));
}

static void free_ptr(void *p)
{
	free(p);
}

static void *updater(void *arg)
{
	unsigned int seed = (unsigned int)(long)arg;
	long n = 0;
	rcu_register_thread();
	if (use_defer)
		rcu_defer_register_thread();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		unsigned long key = rand_r(&seed) % KEYS;
		struct cds_lfht_iter it;
		struct node *old = NULL;
		rcu_read_lock();
		cds_lfht_lookup(ht, hash(key), match, &key, &it);
		struct cds_lfht_node *found = cds_lfht_iter_get_node(&it);
		if (found) {
			if (cds_lfht_del(ht, found) == 0)
				old = caa_container_of(found, struct node, node);
		} else {
			struct node *fresh = malloc(sizeof(*fresh));
			fresh->key = key;
			cds_lfht_node_init(&fresh->node);
			if (cds_lfht_add_unique(ht, hash(key), match, &key, &fresh->node) != &fresh->node)
				free(fresh);
		}
		rcu_read_unlock();
		if (old) {
			if (use_defer)
				defer_rcu(free_ptr, old);
			else
				call_rcu(&old->rcu, free_node);
		}
		n++;
	}
	atomic_fetch_add(&updates, n);
	if (use_defer)
		rcu_defer_unregister_thread();
	rcu_unregister_thread();
	return NULL;
}

static void *reader(void *arg)
{
	(void)arg;
	long sum = 0;
	rcu_register_thread();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		unsigned long key = (unsigned long)sum % KEYS;
		struct cds_lfht_iter it;
		rcu_read_lock();
		cds_lfht_lookup(ht, hash(key), match, &key, &it);
		sum += cds_lfht_iter_get_node(&it) != NULL;
		rcu_read_unlock();
		sum += 7;
	}
	rcu_unregister_thread();
	return (void *)sum;
}

static int flood(int seconds)
{
	pthread_t u[UPDATERS], r;
	long peak = 0, samples[1024];
	int ns = 0;
	ht = cds_lfht_new(KEYS, KEYS, KEYS, 0, NULL);
	rcu_register_thread();
	pthread_create(&r, NULL, reader, NULL);
	for (long i = 0; i < UPDATERS; i++)
		pthread_create(&u[i], NULL, updater, (void *)(i + 1));
	double t0 = now();
	for (int s = 1; s <= seconds && s < 1024; s++) {
		poll(NULL, 0, 1000);
		long kb = rss_kb();
		samples[ns++] = kb;
		if (kb > peak)
			peak = kb;
		printf("t=%2ds rss=%ld MB\n", s, kb / 1024);
		fflush(stdout);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < UPDATERS; i++)
		pthread_join(u[i], NULL);
	pthread_join(r, NULL);
	double t = now() - t0;
	/* Least-squares slope of RSS over the second half, MB/s. */
	int from = ns / 2;
	double sx = 0, sy = 0, sxx = 0, sxy = 0, m = ns - from;
	for (int i = from; i < ns; i++) {
		sx += i;
		sy += samples[i] / 1024.0;
		sxx += (double)i * i;
		sxy += i * (samples[i] / 1024.0);
	}
	double slope = m > 1 ? (m * sxy - sx * sy) / (m * sxx - sx * sx) : 0;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
		     ru.ru_stime.tv_usec * 1e-6;
	printf("%s: %.2f M updates/s, peak rss %ld MB, slope %+.2f MB/s (2nd half), "
	       "%.2f M updates per CPU-s\n",
	       use_defer ? "defer_rcu" : "call_rcu", atomic_load(&updates) / t / 1e6,
	       peak / 1024, slope, atomic_load(&updates) / cpu / 1e6);
	if (use_defer)
		rcu_defer_barrier();
	else
		rcu_barrier();
	rcu_unregister_thread();
	return 0;
}

static atomic_int cb_done;
static double cb_at;

static void record(struct rcu_head *head)
{
	(void)head;
	cb_at = now();
	atomic_store(&cb_done, 1);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int latency(int n)
{
	static struct rcu_head head;
	double *lat = calloc(n, sizeof(double)), sum = 0;
	rcu_register_thread();
	for (int i = 0; i < n; i++) {
		atomic_store(&cb_done, 0);
		double t0 = now();
		call_rcu(&head, record);
		while (!atomic_load(&cb_done))
			poll(NULL, 0, 0);
		lat[i] = (cb_at - t0) * 1e3;
		sum += lat[i];
	}
	qsort(lat, n, sizeof(double), cmp);
	printf("call_rcu -> callback: mean %.2f ms, p50 %.2f ms, p99 %.2f ms (%d callbacks)\n",
	       sum / n, lat[n / 2], lat[(int)(n * 0.99)], n);
	rcu_unregister_thread();
	free(lat);
	return 0;
}

static int sync_noreader(int n)
{
	synchronize_rcu(); /* warm up */
	double t0 = now();
	for (int i = 0; i < n; i++)
		synchronize_rcu();
	printf("synchronize_rcu, no registered reader: %.0f ns each (%d calls)\n",
	       (now() - t0) * 1e9 / n, n);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s call|defer SECONDS | latency N | sync N\n", argv[0]);
		return 2;
	}
	int n = atoi(argv[2]);
	if (!strcmp(argv[1], "call"))
		return flood(n);
	if (!strcmp(argv[1], "defer")) {
		use_defer = 1;
		return flood(n);
	}
	if (!strcmp(argv[1], "latency"))
		return latency(n);
	if (!strcmp(argv[1], "sync"))
		return sync_noreader(n);
	return 2;
}
