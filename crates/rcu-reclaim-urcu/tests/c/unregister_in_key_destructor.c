/* A library's lazy registration: a thread registers on first use and sets
 * a pthread key whose destructor, at the thread's exit, ends its use
 * (a last section, a call_rcu) and calls rcu_unregister_thread(), as
 * liburcu's users do. liburcu keeps the thread registered until then; we
 * unregister a thread at its exit before the pthread key destructors run,
 * and the destructor's rcu_unregister_thread() printed "[error] ... not
 * registered" for every thread. Prints the counts. */
#include "common.h"
#include <stdatomic.h>

#define THREADS 8
static pthread_key_t key;
static atomic_int unregistered, ran;
static struct rcu_head heads[THREADS];
static int *gp;

static void count(struct rcu_head *h) { (void)h; atomic_fetch_add(&ran, 1); }

static void last_use(void *arg)
{
	long i = (long)arg - 1;
	rcu_read_lock();
	CHECK(*rcu_dereference(gp) == 42);
	rcu_read_unlock();
	call_rcu(&heads[i], count);
	rcu_unregister_thread();
	atomic_fetch_add(&unregistered, 1);
}

static void *thread(void *arg)
{
	rcu_register_thread();
	CHECK(pthread_setspecific(key, arg) == 0);
	rcu_read_lock();
	CHECK(*rcu_dereference(gp) == 42);
	rcu_read_unlock();
	return NULL;
}

int main(void)
{
	static int v = 42;
	gp = &v;
	CHECK(pthread_key_create(&key, last_use) == 0);
	for (long i = 1; i <= THREADS; i++) {
		pthread_t t;
		CHECK(pthread_create(&t, NULL, thread, (void *)i) == 0);
		CHECK(pthread_join(t, NULL) == 0);
	}
	synchronize_rcu();
	rcu_barrier();
	printf("unregistered in key destructors: %d, callbacks run: %d\n",
	       atomic_load(&unregistered), atomic_load(&ran));
	return 0;
}
