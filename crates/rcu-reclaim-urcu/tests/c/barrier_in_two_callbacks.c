/* Misuse that liburcu turns into a deadlock, on two call_rcu threads at
 * once: a callback on each calls rcu_barrier(). Each barrier skips its own
 * thread (busy running the callback); before, each then waited for the
 * other thread's callbacks, whose thread waited for its own in turn: both
 * hung, silently past the first message. Run against rcu-reclaim-urcu
 * only: both barriers must return, saying what they could not wait for. */
#include "common.h"
#include <stdatomic.h>
#include <unistd.h>

static struct rcu_head head_a, head_b;
static atomic_int in_callback, returned;

static void barrier_from_callback(struct rcu_head *head)
{
	(void)head;
	/* Both callbacks are running before either calls rcu_barrier(). */
	atomic_fetch_add(&in_callback, 1);
	while (atomic_load(&in_callback) < 2)
		usleep(1000);
	rcu_barrier();
	atomic_fetch_add(&returned, 1);
}

int main(void)
{
	rcu_register_thread();
	struct call_rcu_data *a = create_call_rcu_data(0, -1);
	struct call_rcu_data *b = create_call_rcu_data(0, -1);
	CHECK(a != NULL && b != NULL);
	set_thread_call_rcu_data(a);
	call_rcu(&head_a, barrier_from_callback);
	set_thread_call_rcu_data(b);
	call_rcu(&head_b, barrier_from_callback);
	set_thread_call_rcu_data(NULL);
	while (atomic_load(&returned) < 2)
		usleep(1000);
	printf("both barriers returned\n");
	/* Both threads work on: a barrier from here waits for both. */
	rcu_barrier();
	call_rcu_data_free(a);
	call_rcu_data_free(b);
	rcu_unregister_thread();
	return 0;
}
