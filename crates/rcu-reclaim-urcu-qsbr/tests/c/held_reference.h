/* One round of "is this call a quiescent state?": an online QSBR reader
 * holds a reference read in its section while a writer swaps the object,
 * waits for a grace period and poisons the old version as soon as
 * synchronize_rcu returns; the reader makes the call under test, then
 * looks at its reference. A call that is no quiescent state (as in
 * liburcu) holds the writer up: the reference stays intact. */
#ifndef HELD_REFERENCE_H
#define HELD_REFERENCE_H

#include "common.h"
#include <stdatomic.h>
#include <unistd.h>

struct obj {
	int value;
};

static struct obj *gp;
static atomic_int writing;

static void *writer(void *arg)
{
	(void)arg;
	rcu_register_thread();
	rcu_thread_offline();
	struct obj *next = malloc(sizeof(*next));
	next->value = 2;
	atomic_store(&writing, 1);
	struct obj *old = rcu_xchg_pointer(&gp, next);
	synchronize_rcu();
	old->value = -1; /* poison */
	rcu_unregister_thread();
	return NULL;
}

/* One round: the reader makes call `what` with the writer waiting for it;
 * "intact" or "POISONED". */
static const char *round_intact(void (*what)(void))
{
	struct obj *first = malloc(sizeof(*first));
	first->value = 1;
	rcu_assign_pointer(gp, first);
	atomic_store(&writing, 0);
	rcu_quiescent_state();
	rcu_read_lock();
	struct obj *p = rcu_dereference(gp);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, writer, NULL) == 0);
	while (!atomic_load(&writing))
		;
	usleep(20000); /* the writer now waits for this reader */
	what();
	usleep(50000);
	int intact = p->value == 1;
	rcu_read_unlock();
	rcu_thread_offline();
	CHECK(pthread_join(t, NULL) == 0);
	rcu_thread_online();
	free(first);
	free(rcu_dereference(gp));
	return intact ? "intact" : "POISONED";
}

#endif
