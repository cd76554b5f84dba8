/* A call_rcu flood made from inside read-side sections: 4 threads queue
 * 2,000,000 callbacks each (64-byte nodes freed by the callback), each
 * call inside rcu_read_lock. The calling threads can never wait for a
 * grace period there, so only the call_rcu threads free; the program
 * prints every callback's run after rcu_barrier, and its peak resident
 * memory (VmHWM, kB) on stderr for the harness to bound. */
#include "common.h"
#include <stdatomic.h>
#include <string.h>

#define THREADS 4
#define PER_THREAD 2000000

struct node {
	long pad[4];
	struct rcu_head rcu;
};

static atomic_long invoked;

static void free_node(struct rcu_head *head)
{
	free(caa_container_of(head, struct node, rcu));
	atomic_fetch_add_explicit(&invoked, 1, memory_order_relaxed);
}

static void *flooder(void *arg)
{
	(void)arg;
	rcu_register_thread();
	for (long i = 0; i < PER_THREAD; i++) {
		struct node *n = malloc(sizeof(*n));
		CHECK(n != NULL);
		n->pad[0] = i;
		rcu_read_lock();
		call_rcu(&n->rcu, free_node);
		rcu_read_unlock();
	}
	rcu_unregister_thread();
	return NULL;
}

static long vm_hwm_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	CHECK(f != NULL);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			kb = atol(line + 6);
	fclose(f);
	return kb;
}

int main(void)
{
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, flooder, NULL) == 0);
	for (int i = 0; i < THREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	rcu_barrier();
	printf("callbacks run: %ld of %ld\n", atomic_load(&invoked), (long)THREADS * PER_THREAD);
	fprintf(stderr, "VmHWM %ld kB\n", vm_hwm_kb());
	return 0;
}
