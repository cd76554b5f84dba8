/*
 * What a program built against liburcu's headers with _LGPL_SOURCE reaches
 * into directly: its inlined rcu_quiescent_state(), rcu_thread_offline()/
 * _online() and rcu_read_ongoing() of the QSBR flavor read urcu_qsbr_gp.ctr
 * and write the calling thread's urcu_qsbr_reader.ctr, with liburcu
 * 0.13's layout and sizes (urcu/static/urcu-qsbr.h), which programs
 * compiled against liburcu copy at load time. Defined in C because Rust
 * cannot define an exported thread-local. The library's Rust side reaches
 * them only through the hidden functions below.
 */
#include "urcu_layout.h"

/* liburcu's struct urcu_qsbr_reader: the inlined code uses ctr, and
 * waiting (raised by a parked grace period: the next quiescent state then
 * wakes it). */
struct urcu_qsbr_reader {
	unsigned long ctr;
	struct rcu_reclaim_list_head node __attribute__((aligned(RCU_RECLAIM_LINE)));
	int waiting;
	pthread_t tid;
	unsigned int registered:1;
};

struct urcu_gp urcu_qsbr_gp = { .ctr = 1, .futex = 0 };

__thread struct urcu_qsbr_reader urcu_qsbr_reader;

HIDDEN unsigned long *rcu_reclaim_qsbr_reader_ctr(void)
{
	return &urcu_qsbr_reader.ctr;
}

HIDDEN void rcu_reclaim_qsbr_reader_mark(int registered)
{
	urcu_qsbr_reader.registered = registered ? 1 : 0;
	urcu_qsbr_reader.tid = registered ? pthread_self() : 0;
}

HIDDEN unsigned long *rcu_reclaim_qsbr_gp_ctr(void)
{
	return &urcu_qsbr_gp.ctr;
}

HIDDEN int32_t *rcu_reclaim_qsbr_gp_futex(void)
{
	return &urcu_qsbr_gp.futex;
}

HIDDEN int *rcu_reclaim_qsbr_reader_waiting(void)
{
	return &urcu_qsbr_reader.waiting;
}

/* liburcu's futex fallbacks, which the inlined code names. */
#include "compat_futex.h"

/* urcu_qsbr_flavor. */
#include "flavor_table.h"
void urcu_qsbr_quiescent_state(void);
void urcu_qsbr_thread_offline(void);
void urcu_qsbr_thread_online(void);
RCU_RECLAIM_FLAVOR_TABLE(qsbr, rcu_reclaim_qsbr_flavor, urcu_qsbr_quiescent_state,
		urcu_qsbr_thread_offline, urcu_qsbr_thread_online);
