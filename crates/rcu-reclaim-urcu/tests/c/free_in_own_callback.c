/* Misuse that liburcu turns into a silent deadlock: a callback frees its
 * own call_rcu_data (call_rcu_data_free waits for the thread to stop: for
 * itself). Before, ours hung the same way. Run against rcu-reclaim-urcu
 * only: the free returns, saying so; the rest of the batch and what was
 * queued after it still run, and rcu_barrier waits for them. */
#include "common.h"
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static struct rcu_head heads[4];
static atomic_int ran, freed;
/* 0 (argv[1] "keep"): the callback frees it as its thread has it, without
 * set_thread_call_rcu_data(NULL) first. */
static int uninstall = 1;

static void count(struct rcu_head *head)
{
	(void)head;
	atomic_fetch_add(&ran, 1);
}

static void free_own(struct rcu_head *head)
{
	(void)head;
	/* On a call_rcu thread, the thread's call_rcu_data is its own. */
	struct call_rcu_data *me = get_thread_call_rcu_data();
	if (uninstall)
		set_thread_call_rcu_data(NULL);
	call_rcu_data_free(me);
	atomic_fetch_add(&ran, 1);
	atomic_store(&freed, 1);
}

int main(int argc, char **argv)
{
	uninstall = !(argc > 1 && !strcmp(argv[1], "keep"));
	rcu_register_thread();
	struct call_rcu_data *crdp = create_call_rcu_data(0, -1);
	CHECK(crdp != NULL);
	set_thread_call_rcu_data(crdp);
	call_rcu(&heads[0], count);
	call_rcu(&heads[1], free_own);
	call_rcu(&heads[2], count);
	set_thread_call_rcu_data(NULL);
	while (!atomic_load(&freed))
		usleep(1000);
	call_rcu(&heads[3], count); /* on the default call_rcu_data */
	rcu_barrier();
	printf("free returned; callbacks run: %d\n", atomic_load(&ran));
	rcu_unregister_thread();
	return 0;
}
