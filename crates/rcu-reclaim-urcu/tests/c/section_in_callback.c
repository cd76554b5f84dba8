/* A call_rcu callback that reads under rcu_read_lock: liburcu's call_rcu
 * thread is a registered reader, so a writer's synchronize_rcu waits for
 * the callback's section. The callback dereferences the shared pointer,
 * then, once the writer has replaced it (and is in synchronize_rcu, after
 * which it poisons the old version), holds it 100 ms and reads it. Built
 * with _LGPL_SOURCE (lgpl_section_in_callback.c) the section is inlined
 * into the thread's urcu_memb_reader, which grace periods did not wait
 * for on the drop-in's call_rcu threads (before: the callback saw the
 * poison). */
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
	while (!atomic_load(&dereferenced))
		usleep(1000);
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

#ifdef REGISTER_IN_CALLBACK_FIRST
/* A callback that registers the call_rcu thread again (liburcu asserts;
 * the drop-in ignores it) and then unregisters: the unregister must be
 * ignored too, or it unregistered the call_rcu thread itself, whose
 * inlined sections grace periods then did not wait for. */
static struct rcu_head first;

static void registers_again(struct rcu_head *h)
{
	(void)h;
	rcu_register_thread();
	rcu_unregister_thread();
}
#endif

int main(void)
{
	rcu_register_thread();
#ifdef REGISTER_IN_CALLBACK_FIRST
	call_rcu(&first, registers_again);
	rcu_barrier();
#endif
	gp = malloc(sizeof(*gp));
	CHECK(gp != NULL);
	gp->value = 1;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, writer, NULL) == 0);
	call_rcu(&head, reader_cb);
	CHECK(pthread_join(t, NULL) == 0);
	rcu_barrier();
	printf("the callback's section read %d\n", atomic_load(&seen));
	CHECK(atomic_load(&seen) == 1);
	rcu_unregister_thread();
	return 0;
}
