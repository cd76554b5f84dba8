/*
 * What a program built against liburcu's headers with _LGPL_SOURCE reaches
 * into directly: its inlined rcu_read_lock()/rcu_read_unlock() of the memb
 * flavor read and write these three symbols, with liburcu 0.13's layout
 * and sizes (urcu/static/urcu-common.h, urcu-memb.h), which programs
 * compiled against liburcu copy at load time. Defined in C because Rust
 * cannot define an exported thread-local. The library's Rust side reaches
 * them only through the hidden functions below.
 */
#include "urcu_layout.h"

/* liburcu's struct urcu_reader: the inlined read side uses ctr alone. */
struct urcu_reader {
	unsigned long ctr;
	char need_mb;
	struct rcu_reclaim_list_head node __attribute__((aligned(RCU_RECLAIM_LINE)));
	pthread_t tid;
	unsigned int registered:1;
};

struct urcu_gp urcu_memb_gp = { .ctr = 1, .futex = 0 };

/* 1 once the library knows its grace periods issue membarrier(): the
 * inlined read side then uses compiler barriers; until then (and for the
 * mb flavor) it issues full fences, which are right either way. */
int urcu_memb_has_sys_membarrier;

__thread struct urcu_reader urcu_memb_reader;

HIDDEN unsigned long *rcu_reclaim_memb_reader_ctr(void)
{
	return &urcu_memb_reader.ctr;
}

HIDDEN void rcu_reclaim_memb_reader_mark(int registered)
{
	urcu_memb_reader.registered = registered ? 1 : 0;
	urcu_memb_reader.tid = registered ? pthread_self() : 0;
}

HIDDEN unsigned long *rcu_reclaim_memb_gp_ctr(void)
{
	return &urcu_memb_gp.ctr;
}

HIDDEN int32_t *rcu_reclaim_memb_gp_futex(void)
{
	return &urcu_memb_gp.futex;
}

HIDDEN void rcu_reclaim_memb_set_has_sys_membarrier(int has)
{
	__atomic_store_n(&urcu_memb_has_sys_membarrier, has, __ATOMIC_SEQ_CST);
}

/* liburcu's futex fallbacks, which the inlined read side names. */
#include "compat_futex.h"

/* urcu_memb_flavor: the memb flavor has no quiescent states to report. */
#include "flavor_table.h"
static void rcu_reclaim_memb_noop(void)
{
}
RCU_RECLAIM_FLAVOR_TABLE(memb, rcu_reclaim_memb_flavor, rcu_reclaim_memb_noop,
		rcu_reclaim_memb_noop, rcu_reclaim_memb_noop);
