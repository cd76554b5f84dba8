/* call_rcu from signal handlers during a flood of heavy objects, in a
 * memory cgroup (run by c_abi.rs in a 100 MiB one): 4 threads each
 * allocate PER_THREAD objects of SIZE bytes and queue them, while another
 * thread signals them every 100 us; each handler queues a head of a
 * static pool (half of them inside rcu_read_lock). The handler often
 * interrupts malloc, so a call_rcu that allocates there (the drop-in's
 * look at the cgroup's memory.stat did) hangs for good.
 *   call_rcu_signal_in_cgroup PER_THREAD SIZE */
#include "common.h"
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define THREADS 4
#define POOL 1000000

struct obj {
	struct rcu_head head;
	char data[];
};

static long per_thread;
static size_t size;
static atomic_long queued, done;
static atomic_int finished;
static struct rcu_head pool[POOL];
static atomic_long pool_next;
static pthread_t flooders[THREADS];

static void free_obj(struct rcu_head *h)
{
	free(caa_container_of(h, struct obj, head));
	atomic_fetch_add(&done, 1);
}

static void count(struct rcu_head *h)
{
	(void)h;
	atomic_fetch_add(&done, 1);
}

static void handler(int sig)
{
	(void)sig;
	long i = atomic_fetch_add(&pool_next, 1);
	if (i >= POOL)
		return;
	atomic_fetch_add(&queued, 1);
	if (i % 2) {
		rcu_read_lock();
		call_rcu(&pool[i], count);
		rcu_read_unlock();
	} else {
		call_rcu(&pool[i], count);
	}
}

static void *flooder(void *arg)
{
	(void)arg;
	rcu_register_thread();
	for (long n = 0; n < per_thread; n++) {
		struct obj *o = malloc(sizeof(*o) + size);
		CHECK(o);
		memset(o->data, (int)n, size);
		call_rcu(&o->head, free_obj);
	}
	atomic_fetch_add(&queued, per_thread);
	atomic_fetch_add(&finished, 1);
	rcu_unregister_thread();
	return NULL;
}

int main(int argc, char **argv)
{
	CHECK(argc == 3);
	per_thread = atol(argv[1]);
	size = (size_t)atol(argv[2]);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	/* The default call_rcu_data before any handler runs: the first
	 * call_rcu creates it, which allocates (on both libraries), and a
	 * handler that interrupted malloc must not be that first call. */
	(void)get_default_call_rcu_data();
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&flooders[i], NULL, flooder, NULL) == 0);
	/* Signals the flooders until the first finishes (one signalled
	 * after it exits would be gone). */
	while (atomic_load(&finished) == 0) {
		for (int i = 0; i < THREADS; i++)
			pthread_kill(flooders[i], SIGUSR1);
		usleep(100);
	}
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(flooders[i], NULL) == 0);
	rcu_barrier();
	long q = atomic_load(&queued), d = atomic_load(&done);
	printf("callbacks run: %s\n", q == d ? "all" : "NOT ALL");
	return q != d;
}
