/* The body of call_rcu_data_free.c, shared by both flavors' tests: each
 * flavor's call_rcu_data_free.c includes its own common.h, then this. */
#include <poll.h>

static struct call_rcu_data *freed_crdp;
static int ran, ran_on_freed, ran_on_default, busy_started, busy_release;

static void note(void)
{
	struct call_rcu_data *me = get_thread_call_rcu_data();
	__atomic_add_fetch(&ran, 1, __ATOMIC_SEQ_CST);
	if (me == freed_crdp)
		__atomic_add_fetch(&ran_on_freed, 1, __ATOMIC_SEQ_CST);
	else if (me == get_default_call_rcu_data())
		__atomic_add_fetch(&ran_on_default, 1, __ATOMIC_SEQ_CST);
}

static void cb(struct rcu_head *h)
{
	note();
	free(h);
}

/* Holds its thread in the middle of a batch until told to return. */
static void busy_cb(struct rcu_head *h)
{
	__atomic_store_n(&busy_started, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&busy_release, __ATOMIC_SEQ_CST))
		poll(NULL, 0, 1);
	note();
	free(h);
}

static void reset(struct call_rcu_data *crdp)
{
	freed_crdp = crdp;
	__atomic_store_n(&ran, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&ran_on_freed, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&ran_on_default, 0, __ATOMIC_SEQ_CST);
}

static void queue_on(struct call_rcu_data *crdp, void (*f)(struct rcu_head *))
{
	set_thread_call_rcu_data(crdp);
	call_rcu(malloc(sizeof(struct rcu_head)), f);
	set_thread_call_rcu_data(NULL);
}

static int free_returned;

static void *freer(void *arg)
{
	call_rcu_data_free(arg);
	__atomic_store_n(&free_returned, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void idle(void)
{
	struct call_rcu_data *crdp = create_call_rcu_data(0, -1);
	CHECK(crdp != NULL);
	/* The thread up and idle: it ran a batch, then had nothing. */
	queue_on(crdp, cb);
	rcu_barrier();
	poll(NULL, 0, 50);
	reset(crdp);
	queue_on(crdp, cb);
	call_rcu_data_free(crdp);
	printf("idle: at free's return %d ran, %d on the freed thread\n",
	       __atomic_load_n(&ran, __ATOMIC_SEQ_CST),
	       __atomic_load_n(&ran_on_freed, __ATOMIC_SEQ_CST));
	rcu_barrier();
	printf("idle: after rcu_barrier %d ran, %d on the freed thread, %d on the default\n",
	       ran, ran_on_freed, ran_on_default);
}

static void busy(void)
{
	struct call_rcu_data *crdp = create_call_rcu_data(0, -1);
	pthread_t t;

	CHECK(crdp != NULL);
	reset(crdp);
	queue_on(crdp, busy_cb);
	while (!__atomic_load_n(&busy_started, __ATOMIC_SEQ_CST))
		poll(NULL, 0, 1);
	queue_on(crdp, cb);
	queue_on(crdp, cb);
	CHECK(pthread_create(&t, NULL, freer, crdp) == 0);
	poll(NULL, 0, 300);
	printf("busy: free returned while the batch ran: %s\n",
	       __atomic_load_n(&free_returned, __ATOMIC_SEQ_CST) ? "yes" : "no");
	__atomic_store_n(&busy_release, 1, __ATOMIC_SEQ_CST);
	CHECK(pthread_join(t, NULL) == 0);
	printf("busy: at free's return the batch's callback had %s\n",
	       __atomic_load_n(&ran_on_freed, __ATOMIC_SEQ_CST) == 1 ? "run" : "not run");
	rcu_barrier();
	printf("busy: after rcu_barrier %d ran, %d on the freed thread, %d on the default\n",
	       ran, ran_on_freed, ran_on_default);
}

int main(void)
{
	rcu_register_thread();
#ifdef _URCU_QSBR_H
	rcu_thread_offline();
#endif
	(void)get_default_call_rcu_data();
	idle();
	busy();
#ifdef _URCU_QSBR_H
	rcu_thread_online();
#endif
	rcu_unregister_thread();
	return 0;
}
