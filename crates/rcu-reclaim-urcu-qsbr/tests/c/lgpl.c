/* Built WITH _LGPL_SOURCE: rcu_quiescent_state, rcu_thread_offline/online
 * and rcu_read_ongoing are inlined and use liburcu's urcu_qsbr_gp and
 * urcu_qsbr_reader directly. It runs against liburcu-qsbr.so.8; the
 * drop-in does not export those symbols, so the loader refuses to start it
 * (the test checks that it fails to load, rather than run unprotected). */
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
