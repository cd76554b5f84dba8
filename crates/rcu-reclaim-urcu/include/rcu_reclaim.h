/*
 * rcu_reclaim.h: extensions of rcu-reclaim-urcu, the liburcu memb-flavor
 * drop-in backed by rcu-reclaim. Include it after liburcu's own header
 * (<urcu.h> for the rcu_* names, <urcu/urcu-memb.h> for the urcu_memb_*
 * ones) and link with the library (librcu_reclaim_urcu.so, or the drop-in built
 * as liburcu-memb.so.8). Programs that only use liburcu's API need nothing
 * from here.
 */
#ifndef RCU_RECLAIM_H
#define RCU_RECLAIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rcu_head;

/*
 * Signal memory pressure on NUMA node `node` (-1: every node) until the
 * matching rcu_reclaim_pressure_end(node). While any signal is held the
 * callback engine runs in fast mode: no lazy batching, and grace periods are
 * expedited while enough bytes wait. Returns 0, or -EINVAL for a node out
 * of range (or, for _end, with no signal active on it).
 */
int rcu_reclaim_pressure_start(int node);
int rcu_reclaim_pressure_end(int node);

/* Callbacks queued with call_rcu()/defer_rcu() and not yet invoked. */
size_t rcu_reclaim_pending(void);

/* Bytes those callbacks will free, as declared with
 * rcu_reclaim_call_rcu_sized() (plain call_rcu() declares 0). */
size_t rcu_reclaim_pending_bytes(void);

/*
 * How short memory is: 0 plenty; 1 short (a pressure signal is held, or
 * the usage of the process's memory cgroup is over three quarters of 85 %
 * of its limit); 2 over that 85 % mark. call_rcu() holds its callers back
 * sooner from 1 on; a program's own queues can do the same.
 */
int rcu_reclaim_memory_state(void);

/* call_rcu(), declaring that func will free `bytes` bytes. */
void rcu_reclaim_call_rcu_sized(struct rcu_head *head,
				void (*func)(struct rcu_head *head),
				size_t bytes);

/*
 * For a memory reclaimer (a cache shrinker, an allocator's slow path):
 * free what RCU can on `node` (-1: every node) at `priority` 12 (gentle:
 * run what is already past its grace period) down to 0 (desperate: wait
 * for a grace period and run everything queued), on the calling thread;
 * what the call_rcu threads and every thread's defer_rcu queue hold is
 * waited for (one grace period) and run here too, at any priority.
 * Returns the number of callbacks run, or -EINVAL for a node or priority
 * out of range. Not from inside a read-side critical section or a callback.
 * Not beside a fork() through the call_rcu fork hooks: a batch this call
 * has taken from a call_rcu thread's queue and not yet run when another
 * thread forks does not run in the child (it runs in the parent).
 */
long rcu_reclaim_run_callbacks(int node, int priority);

/*
 * The domain's statistics (grace periods, callbacks, backlog per CPU,
 * pressure) as a JSON object. The caller frees the string with
 * rcu_reclaim_free_string(). NULL on failure.
 */
char *rcu_reclaim_stats_json(void);
void rcu_reclaim_free_string(char *s);

#ifdef __cplusplus
}
#endif

#endif /* RCU_RECLAIM_H */
