/* A call_rcu flood of heavy objects: 4 threads queue PER_THREAD callbacks
 * each (argv[1]), each head in an object of SIZE bytes (argv[2]) that the
 * program writes and the callback frees. Run in a memory cgroup whose
 * limit is a fraction of what the flood allocates, as a container would
 * run it: the program prints every callback's run after rcu_barrier, and
 * the harness checks that it was not OOM-killed. */
#include "common.h"
#include <stdatomic.h>
#include <string.h>

#define THREADS 4

struct obj {
	struct rcu_head rcu;
	char data[];
};

static long per_thread;
static size_t size;
static atomic_long invoked;

static void free_obj(struct rcu_head *head)
{
	free(caa_container_of(head, struct obj, rcu));
	atomic_fetch_add_explicit(&invoked, 1, memory_order_relaxed);
}

static void *flooder(void *arg)
{
	(void)arg;
	rcu_register_thread();
	for (long i = 0; i < per_thread; i++) {
		struct obj *o = malloc(sizeof(*o) + size);
		CHECK(o != NULL);
		memset(o->data, (int)i, size);
		call_rcu(&o->rcu, free_obj);
	}
	rcu_unregister_thread();
	return NULL;
}

int main(int argc, char **argv)
{
	CHECK(argc == 3);
	per_thread = atol(argv[1]);
	size = (size_t)atol(argv[2]);
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, flooder, NULL) == 0);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	rcu_barrier();
	printf("callbacks run: %ld of %ld\n", atomic_load(&invoked), THREADS * per_thread);
	return 0;
}
