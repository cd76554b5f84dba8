/*
 * liburcu 0.13's layout of what programs built with _LGPL_SOURCE reach
 * into directly, shared by both drop-ins' csrc/lgpl_reader.c: the
 * architecture's cache line (liburcu's CAA_CACHE_LINE_SIZE, which sets
 * the structures' sizes, and programs copy them at load time by those
 * sizes), its list head, and struct urcu_gp.
 */
#ifndef RCU_RECLAIM_URCU_LAYOUT_H
#define RCU_RECLAIM_URCU_LAYOUT_H

#include <pthread.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__) || defined(__s390__) || defined(__s390x__)
#define RCU_RECLAIM_LINE 128
#elif defined(__powerpc__) || defined(__powerpc64__) || defined(__sparc__)
#define RCU_RECLAIM_LINE 256
#else
#define RCU_RECLAIM_LINE 64
#endif

/* The drop-in's own accessors: not exported. */
#define HIDDEN __attribute__((visibility("hidden")))

struct rcu_reclaim_list_head {
	struct rcu_reclaim_list_head *next, *prev;
};

/* liburcu's struct urcu_gp: ctr is the grace-period word the inlined read
 * side copies (each flavor's file says how it encodes an epoch), written
 * by the Rust side as grace periods start; futex is -1 while a grace
 * period is parked on it, as in liburcu. */
struct urcu_gp {
	unsigned long ctr;
	int32_t futex;
} __attribute__((aligned(RCU_RECLAIM_LINE)));

#endif
