/* call_rcu is no quiescent state: liburcu allows it inside read-side
 * sections, and an online QSBR thread is in one from one quiescent state
 * to the next. A reader that holds a reference and calls call_rcu (the
 * process's first call, which creates the default call_rcu_data, then a
 * flood past the push-back mark while the call_rcu thread's batch waits
 * for this very reader) must still hold up a writer's synchronize_rcu
 * until its next quiescent state; the writer poisons the old version as
 * soon as synchronize_rcu returns. */
#include "common.h"
#include <stdatomic.h>
#include <unistd.h>

#define FLOOD 120000

struct obj {
	int value;
};

static struct obj *gp;
static atomic_int phase, writer_done;

static void cb(struct rcu_head *head)
{
	(void)head;
}

static void *writer(void *arg)
{
	(void)arg;
	for (int round = 1; round <= 2; round++) {
		while (atomic_load(&phase) != round)
			usleep(100);
		struct obj *new = malloc(sizeof(*new));
		CHECK(new);
		new->value = 1;
		struct obj *old = rcu_xchg_pointer(&gp, new);
		synchronize_rcu(); /* unregistered: waits for the reader */
		old->value = -1;    /* poison: the reader must be done */
		atomic_store(&writer_done, round);
		free(old);
	}
	return NULL;
}

static struct rcu_head heads[FLOOD + 1];

static void read_and_call(int round, int calls, struct rcu_head *h)
{
	struct obj *p;

	rcu_read_lock();
	p = rcu_dereference(gp);
	atomic_store(&phase, round);
	usleep(100 * 1000); /* the writer is in synchronize_rcu by now */
	for (int i = 0; i < calls; i++)
		call_rcu(&h[i], cb);
	usleep(300 * 1000);
	printf("round %d: synchronize_rcu returned while the reader held its "
	       "reference: %s; value %s\n",
	       round, atomic_load(&writer_done) >= round ? "yes" : "no",
	       p->value == 1 ? "intact" : "POISONED");
	rcu_read_unlock();
	rcu_quiescent_state();
	while (atomic_load(&writer_done) < round) {
		rcu_quiescent_state();
		usleep(1000);
	}
}

int main(void)
{
	pthread_t w;

	gp = malloc(sizeof(*gp));
	CHECK(gp);
	gp->value = 1;
	rcu_register_thread();
	CHECK(pthread_create(&w, NULL, writer, NULL) == 0);
	/* The first call_rcu of the process. */
	read_and_call(1, 1, &heads[0]);
	/* A flood past the push-back mark. */
	read_and_call(2, FLOOD, &heads[1]);
	rcu_thread_offline();
	pthread_join(w, NULL);
	rcu_thread_online();
	rcu_barrier();
	rcu_unregister_thread();
	free(gp);
	printf("done\n");
	return 0;
}
