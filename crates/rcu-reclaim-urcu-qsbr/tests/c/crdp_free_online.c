/* call_rcu_data_free is no quiescent state: an online QSBR reader that
 * frees an idle call_rcu_data (a fresh one, one whose callbacks all ran,
 * a real-time one) while it holds a reference read in its section must
 * still hold up a writer's synchronize_rcu until its next quiescent
 * state (held_reference.h). liburcu's call_rcu_data_free only waits for
 * the idle thread to stop. (Before: the drop-in went offline for the free,
 * a quiescent state, and the reader read the poison: every run.) */
#include "held_reference.h"

static struct call_rcu_data *to_free;

static void free_it(void)
{
	call_rcu_data_free(to_free);
}

static void noop(struct rcu_head *head)
{
	(void)head;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	rcu_register_thread();
	to_free = create_call_rcu_data(0, -1);
	printf("fresh call_rcu_data: %s\n", round_intact(free_it));

	struct call_rcu_data *used = create_call_rcu_data(0, -1);
	struct rcu_head head;
	set_thread_call_rcu_data(used);
	call_rcu(&head, noop);
	rcu_barrier();
	set_thread_call_rcu_data(NULL);
	synchronize_rcu();
	to_free = used;
	printf("call_rcu_data whose callbacks ran: %s\n", round_intact(free_it));

	to_free = create_call_rcu_data(URCU_CALL_RCU_RT, -1);
	printf("real-time call_rcu_data: %s\n", round_intact(free_it));
	rcu_unregister_thread();
	return 0;
}
