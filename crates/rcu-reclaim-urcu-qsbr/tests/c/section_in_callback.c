/* A call_rcu callback that reads RCU-protected data: liburcu-qsbr's
 * call_rcu thread is registered and online while it invokes callbacks, so
 * a writer's synchronize_rcu waits for the callback to return even though
 * its rcu_read_lock is empty (or, with _LGPL_SOURCE, inlined). The callback
 * dereferences the shared pointer, then, once the writer has replaced it
 * (and is in synchronize_rcu, after which it poisons the old version),
 * holds it 100 ms and reads it. The drop-in's call_rcu threads were no
 * QSBR readers (before: the callback saw the poison, but with -DDEBUG_RCU,
 * where rcu_read_lock is a call that took a real section). */
#include "common.h"
#include <stdatomic.h>
#include <unistd.h>

struct obj {
	int value;
};

static struct obj *gp;
static atomic_int dereferenced, replaced, seen;
static struct rcu_head head;

static void reader_cb(struct rcu_head *h)
{
	(void)h;
	rcu_read_lock();
	struct obj *p = rcu_dereference(gp);
	atomic_store(&dereferenced, 1);
	while (!atomic_load(&replaced))
		usleep(1000);
	usleep(100000); /* the writer poisons now if it did not wait */
	atomic_store(&seen, p->value);
	rcu_read_unlock();
}

static void *writer(void *arg)
{
	(void)arg;
	rcu_register_thread();
	/* Offline while it waits: the callback's grace period needs it. */
	rcu_thread_offline();
	while (!atomic_load(&dereferenced))
		usleep(1000);
	rcu_thread_online();
	struct obj *n = malloc(sizeof(*n));
	CHECK(n != NULL);
	n->value = 2;
	struct obj *old = rcu_xchg_pointer(&gp, n);
	atomic_store(&replaced, 1);
	synchronize_rcu();
	old->value = -1; /* poison */
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	rcu_register_thread();
	gp = malloc(sizeof(*gp));
	CHECK(gp != NULL);
	gp->value = 1;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, writer, NULL) == 0);
	call_rcu(&head, reader_cb);
	rcu_thread_offline();
	CHECK(pthread_join(t, NULL) == 0);
	rcu_barrier();
	printf("the callback's section read %d\n", atomic_load(&seen));
	CHECK(atomic_load(&seen) == 1);
	rcu_thread_online();
	rcu_unregister_thread();
	return 0;
}
