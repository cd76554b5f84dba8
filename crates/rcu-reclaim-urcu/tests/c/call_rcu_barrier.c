/* call_rcu from several threads, then rcu_barrier: every callback has run,
 * exactly once, on the default call_rcu thread; defer_rcu with
 * rcu_defer_barrier likewise. */
#include "common.h"
#include <stdatomic.h>
#include <stddef.h>

#define THREADS 4
#define PER_THREAD 5000

struct obj {
	long value;
	struct rcu_head rcu;
};

static atomic_long invoked, value_sum, wrong_thread, deferred;
static pthread_t default_thread;

static void free_obj(struct rcu_head *head)
{
	struct obj *o = caa_container_of(head, struct obj, rcu);
	atomic_fetch_add(&invoked, 1);
	atomic_fetch_add(&value_sum, o->value);
	if (!pthread_equal(pthread_self(), default_thread))
		atomic_fetch_add(&wrong_thread, 1);
	free(o);
}

static void *queuer(void *arg)
{
	long base = (long)arg;
	rcu_register_thread();
	for (long i = 0; i < PER_THREAD; i++) {
		struct obj *o = malloc(sizeof(*o));
		o->value = base + i;
		call_rcu(&o->rcu, free_obj);
	}
	rcu_unregister_thread();
	return NULL;
}

static void count_deferred(void *p)
{
	atomic_fetch_add(&deferred, 1);
	free(p);
}

int main(void)
{
	pthread_t t[THREADS];
	CHECK(sizeof(struct rcu_head) == 16);
	CHECK(offsetof(struct rcu_head, func) == 8);
	rcu_register_thread();
	struct call_rcu_data *def = get_default_call_rcu_data();
	CHECK(def != NULL);
	CHECK(get_default_call_rcu_data() == def);
	CHECK(get_call_rcu_data() == def);
	CHECK(get_thread_call_rcu_data() == NULL);
	default_thread = get_call_rcu_thread(def);

	long expected_sum = 0;
	for (long k = 0; k < THREADS; k++) {
		CHECK(pthread_create(&t[k], NULL, queuer, (void *)(k * 100000)) == 0);
		for (long i = 0; i < PER_THREAD; i++)
			expected_sum += k * 100000 + i;
	}
	for (int k = 0; k < THREADS; k++)
		pthread_join(t[k], NULL);
	rcu_barrier();
	printf("call_rcu: invoked %ld of %d, sum ok %d, off the default thread %ld\n",
	       atomic_load(&invoked), THREADS * PER_THREAD,
	       atomic_load(&value_sum) == expected_sum, atomic_load(&wrong_thread));
	CHECK(atomic_load(&invoked) == THREADS * PER_THREAD);

	/* A barrier with nothing queued returns. */
	rcu_barrier();

	CHECK(rcu_defer_register_thread() == 0);
	for (int i = 0; i < 1000; i++)
		defer_rcu(count_deferred, malloc(16));
	rcu_defer_barrier();
	rcu_defer_unregister_thread();
	printf("defer_rcu: ran %ld of 1000\n", atomic_load(&deferred));
	CHECK(atomic_load(&deferred) == 1000);
	rcu_unregister_thread();
	return 0;
}
