/* Built WITH _LGPL_SOURCE: rcu_quiescent_state, rcu_thread_offline/online
 * and rcu_read_ongoing are inlined and use urcu_qsbr_gp and
 * urcu_qsbr_reader directly, which the drop-in defines as liburcu does. */
#define _LGPL_SOURCE
#include "common.h"

int main(void)
{
	rcu_register_thread();
	rcu_read_lock();
	rcu_read_unlock();
	rcu_quiescent_state();
	rcu_thread_offline();
	synchronize_rcu();
	rcu_thread_online();
	rcu_unregister_thread();
	printf("lgpl ok\n");
	return 0;
}
