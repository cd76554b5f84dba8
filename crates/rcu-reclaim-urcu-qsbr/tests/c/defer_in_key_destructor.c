/* A program's pthread key destructor that frees its thread's object with
 * defer_rcu and then unregisters (per-thread cleanup of a C library),
 * the key made once the library is set up (its call_rcu thread started):
 * the destructor then runs after every thread-local of the library's and
 * after std's own thread-exit hook. Ours aborted there ("use of
 * std::thread::current() is not possible after the thread's local data
 * has been destroyed"): the defer_rcu, its queue gone, went to the
 * domain's engine, which named the thread through std's handle. Every
 * deferred call must run once, as on liburcu-qsbr. */
#include "common.h"
#include <stdatomic.h>

#define THREADS 8

static pthread_key_t key;
static atomic_int ran;

static void count(void *p)
{
	free(p);
	atomic_fetch_add(&ran, 1);
}

static void cleanup(void *p)
{
	defer_rcu(count, p);
	rcu_defer_unregister_thread();
	rcu_unregister_thread();
}

static void *thread(void *arg)
{
	(void)arg;
	rcu_register_thread();
	CHECK(rcu_defer_register_thread() == 0);
	defer_rcu(count, malloc(16));
	CHECK(pthread_setspecific(key, malloc(16)) == 0);
	return NULL;
}

static void noop(struct rcu_head *head)
{
	free(head);
}

int main(void)
{
	rcu_register_thread();
	call_rcu(malloc(sizeof(struct rcu_head)), noop);
	rcu_thread_offline();
	rcu_barrier();
	CHECK(pthread_key_create(&key, cleanup) == 0);
	for (int i = 0; i < THREADS; i++) {
		pthread_t t;
		CHECK(pthread_create(&t, NULL, thread, NULL) == 0);
		CHECK(pthread_join(t, NULL) == 0);
	}
	CHECK(rcu_defer_register_thread() == 0);
	rcu_defer_barrier();
	rcu_defer_unregister_thread();
	rcu_barrier();
	rcu_thread_online();
	rcu_unregister_thread();
	printf("deferred calls run: %d of %d\n", atomic_load(&ran), 2 * THREADS);
	return 0;
}
