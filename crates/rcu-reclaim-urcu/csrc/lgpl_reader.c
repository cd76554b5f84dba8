/*
 * What a program built against liburcu's headers with _LGPL_SOURCE reaches
 * into directly: its inlined rcu_read_lock()/rcu_read_unlock() of the memb
 * flavor read and write these three symbols, with liburcu 0.13's layout
 * and sizes (urcu/static/urcu-common.h, urcu-memb.h), which programs
 * compiled against liburcu copy at load time. Defined in C because Rust
 * cannot define an exported thread-local. The library's Rust side reaches
 * them only through the hidden functions below.
 */
#include <pthread.h>
#include <stdint.h>

/* liburcu's CAA_CACHE_LINE_SIZE for the architecture. */
#if defined(__x86_64__) || defined(__i386__) || defined(__s390__) || defined(__s390x__)
#define RCU_RECLAIM_LINE 128
#elif defined(__powerpc__) || defined(__powerpc64__) || defined(__sparc__)
#define RCU_RECLAIM_LINE 256
#else
#define RCU_RECLAIM_LINE 64
#endif

#define HIDDEN __attribute__((visibility("hidden")))

struct rcu_reclaim_list_head {
	struct rcu_reclaim_list_head *next, *prev;
};

/* liburcu's struct urcu_gp: ctr holds URCU_GP_COUNT (1) in its low half
 * and, here, a grace-period epoch in its high half, written by the Rust
 * side as grace periods start; futex is -1 while a grace period is parked
 * on it (an outermost unlock that sees -1 wakes it), as in liburcu. */
struct urcu_gp {
	unsigned long ctr;
	int32_t futex;
} __attribute__((aligned(RCU_RECLAIM_LINE)));

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
