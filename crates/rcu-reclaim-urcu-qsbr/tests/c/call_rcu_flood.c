/* A call_rcu flood from online QSBR threads that report quiescent states
 * as they go, some through a call_rcu_data of their own; then rcu_barrier
 * from an online thread (it waits offline). Every callback runs exactly
 * once, and none before the barrier returns is missing. */
#include "common.h"
#include <stdatomic.h>

#define THREADS 4
#define PER_THREAD 50000

struct obj {
	struct rcu_head rcu;
	int ran;
};

static atomic_long invoked, twice;

static void cb(struct rcu_head *head)
{
	struct obj *o = caa_container_of(head, struct obj, rcu);
	if (o->ran++)
		atomic_fetch_add(&twice, 1);
	atomic_fetch_add(&invoked, 1);
}

static struct obj *objs[THREADS];

static void *flood(void *arg)
{
	long id = (long)arg;
	struct call_rcu_data *own = NULL;
	rcu_register_thread();
	if (id % 2) {
		own = create_call_rcu_data(0, -1);
		CHECK(own);
		set_thread_call_rcu_data(own);
		CHECK(get_thread_call_rcu_data() == own);
	}
	for (int i = 0; i < PER_THREAD; i++) {
		call_rcu(&objs[id][i].rcu, cb);
		if (i % 100 == 0)
			rcu_quiescent_state();
	}
	rcu_barrier(); /* online */
	CHECK(rcu_read_ongoing());
	if (own) {
		set_thread_call_rcu_data(NULL);
		synchronize_rcu();
		/* Offline: it waits for the crdp's thread, which may be
		 * waiting for a grace period. */
		rcu_thread_offline();
		call_rcu_data_free(own);
		rcu_thread_online();
	}
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	pthread_t t[THREADS];
	rcu_register_thread();
	for (long i = 0; i < THREADS; i++) {
		objs[i] = calloc(PER_THREAD, sizeof(struct obj));
		CHECK(objs[i]);
	}
	for (long i = 0; i < THREADS; i++)
		CHECK(pthread_create(&t[i], NULL, flood, (void *)i) == 0);
	rcu_thread_offline(); /* blocking in pthread_join */
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	rcu_thread_online();
	rcu_barrier();
	long missing = 0;
	for (int i = 0; i < THREADS; i++)
		for (int j = 0; j < PER_THREAD; j++)
			missing += objs[i][j].ran != 1;
	printf("queued %d, invoked %ld, twice %ld, not exactly once %ld\n",
	       THREADS * PER_THREAD, atomic_load(&invoked), atomic_load(&twice),
	       missing);
	CHECK(get_default_call_rcu_data() != NULL);
	rcu_unregister_thread();
	for (int i = 0; i < THREADS; i++)
		free(objs[i]);
	return missing == 0 ? 0 : 1;
}
