/* call_rcu_data_free is no quiescent state: an online QSBR reader that
 * frees an idle call_rcu_data (a fresh one, one whose callbacks all ran,
 * a real-time one) while it holds a reference read in its section must
 * still hold up a writer's synchronize_rcu until its next quiescent
 * state; the writer poisons the old version as soon as synchronize_rcu
 * returns. liburcu's call_rcu_data_free only waits for the idle thread to
 * stop. (Before: the drop-in went offline for the free, a quiescent state,
 * and the reader read the poison: every run.) */
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

static void noop(struct rcu_head *head)
{
	(void)head;
}

/* One round: the reader frees `crdp` with the writer waiting for it. */
static int round_intact(struct call_rcu_data *crdp)
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
	call_rcu_data_free(crdp);
	usleep(50000);
	int intact = p->value == 1;
	rcu_read_unlock();
	rcu_thread_offline();
	CHECK(pthread_join(t, NULL) == 0);
	rcu_thread_online();
	free(first);
	free(rcu_dereference(gp));
	return intact;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	rcu_register_thread();
	printf("fresh call_rcu_data: %s\n",
	       round_intact(create_call_rcu_data(0, -1)) ? "intact" : "POISONED");

	struct call_rcu_data *used = create_call_rcu_data(0, -1);
	struct rcu_head head;
	set_thread_call_rcu_data(used);
	call_rcu(&head, noop);
	rcu_barrier();
	set_thread_call_rcu_data(NULL);
	synchronize_rcu();
	printf("call_rcu_data whose callbacks ran: %s\n",
	       round_intact(used) ? "intact" : "POISONED");

	printf("real-time call_rcu_data: %s\n",
	       round_intact(create_call_rcu_data(URCU_CALL_RCU_RT, -1)) ? "intact" : "POISONED");
	rcu_unregister_thread();
	return 0;
}
