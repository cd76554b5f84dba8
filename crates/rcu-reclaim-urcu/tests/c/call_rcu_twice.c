/* Misuse: an rcu_head passed to call_rcu() again before its callback ran.
 * liburcu's queue is then corrupted (it drops heads silently); ours hung
 * (a head linked to itself ran for ever) or freed twice. Run against
 * rcu-reclaim-urcu only. The call_rcu thread is held inside a first
 * callback while the heads are queued, so that all of them wait in one
 * queue (no batch taken between the two calls).
 *
 * argv[1]: how many other heads are queued between the two calls (0: the
 * head is on top of the queue, and the second call is refused; more: the
 * queue runs into a cycle, which is cut). Prints how many callbacks ran
 * (the blocker left out) and the most any head ran; then queues more and
 * waits for them with rcu_barrier again. */
#include "common.h"
#include <stdatomic.h>
#include <unistd.h>

#define HEADS 16

static struct rcu_head blocker, heads[HEADS], later[4];
static atomic_int started, go, runs[HEADS], later_ran;

static void hold(struct rcu_head *head)
{
	(void)head;
	atomic_store(&started, 1);
	while (!atomic_load(&go))
		usleep(1000);
}

static void count(struct rcu_head *head)
{
	atomic_fetch_add(&runs[head - heads], 1);
}

static void count_later(struct rcu_head *head)
{
	(void)head;
	atomic_fetch_add(&later_ran, 1);
}

int main(int argc, char **argv)
{
	int gap = argc > 1 ? atoi(argv[1]) : 0;
	CHECK(gap >= 0 && gap + 4 <= HEADS);
	rcu_register_thread();
	struct call_rcu_data *crdp = create_call_rcu_data(0, -1);
	CHECK(crdp != NULL);
	set_thread_call_rcu_data(crdp);
	call_rcu(&blocker, hold);
	while (!atomic_load(&started))
		usleep(1000);
	/* Queued before the head: */
	call_rcu(&heads[0], count);
	/* The head, then `gap` others, then the head again, then one more. */
	call_rcu(&heads[1], count);
	for (int i = 0; i < gap; i++)
		call_rcu(&heads[2 + i], count);
	call_rcu(&heads[1], count);
	call_rcu(&heads[2 + gap], count);
	atomic_store(&go, 1);
	rcu_barrier();
	int ran = 0, most = 0;
	for (int i = 0; i < HEADS; i++) {
		ran += atomic_load(&runs[i]);
		if (atomic_load(&runs[i]) > most)
			most = atomic_load(&runs[i]);
	}
	printf("ran %d, at most %d each\n", ran, most);
	/* The queue still works, and so does a barrier. */
	for (int i = 0; i < 4; i++)
		call_rcu(&later[i], count_later);
	rcu_barrier();
	printf("later: %d\n", atomic_load(&later_ran));
	set_thread_call_rcu_data(NULL);
	call_rcu_data_free(crdp);
	rcu_unregister_thread();
	return 0;
}
