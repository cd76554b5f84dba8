/* rcu-reclaim-urcu only (it reads rcu_reclaim.h's statistics): threads
 * that never called the library before their exit, whose pthread key
 * destructor (the key made once the library is set up, so the destructor
 * runs after the thread's thread-locals and after std's own thread-exit
 * hook) takes a read-side section. Each such section registers the thread
 * afresh; its slot must go back at the thread's exit. Before, every one
 * stayed claimed for good: the registry grew by one slot per thread, and
 * every later grace period scanned them all (20,000 such threads made
 * synchronize_rcu 4,000 times slower). Prints how many slots the exited
 * threads kept. */
#include "common.h"
#include <string.h>
#include <rcu_reclaim.h>

#define THREADS 200

static pthread_key_t key;

static void cleanup(void *p)
{
	(void)p;
	rcu_read_lock();
	rcu_read_unlock();
}

static void *thread(void *arg)
{
	(void)arg;
	CHECK(pthread_setspecific(key, (void *)1) == 0);
	return NULL;
}

static void noop(struct rcu_head *head)
{
	free(head);
}

/* The domain's registered readers (claimed slots), from its statistics. */
static long registered_readers(void)
{
	char *json = rcu_reclaim_stats_json();
	CHECK(json != NULL);
	const char *field = strstr(json, "\"registered_readers\":");
	CHECK(field != NULL);
	long n = strtol(field + strlen("\"registered_readers\":"), NULL, 10);
	rcu_reclaim_free_string(json);
	return n;
}

int main(void)
{
	rcu_register_thread();
	call_rcu(malloc(sizeof(struct rcu_head)), noop);
	rcu_barrier();
	CHECK(pthread_key_create(&key, cleanup) == 0);
	long before = registered_readers();
	for (int i = 0; i < THREADS; i++) {
		pthread_t t;
		CHECK(pthread_create(&t, NULL, thread, NULL) == 0);
		CHECK(pthread_join(t, NULL) == 0);
	}
	synchronize_rcu();
	printf("slots kept by %d exited threads: %ld\n", THREADS, registered_readers() - before);
	rcu_unregister_thread();
	return 0;
}
