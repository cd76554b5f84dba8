/*
 * liburcu's memb flavor for `rcu-reclaim bench` (Debian liburcu-dev 0.13,
 * compiled with _LGPL_SOURCE so the read-side primitives inline into these
 * small wrappers). The Rust side calls each wrapper once per read-side
 * section, so a liburcu section pays two plain function calls that an LGPL
 * C program would not; BENCHMARKS.md gives their cost.
 *
 * Built by build.rs only with `--features liburcu`.
 */
#define _LGPL_SOURCE
#include <urcu/urcu-memb.h>

/* Registers the calling thread as a reader (once per thread). */
void bench_urcu_register_thread(void)
{
	urcu_memb_register_thread();
}

/* Unregisters the calling thread (outside any section). */
void bench_urcu_unregister_thread(void)
{
	urcu_memb_unregister_thread();
}

/* Enters a read-side section. */
void bench_urcu_read_lock(void)
{
	urcu_memb_read_lock();
}

/* Leaves a read-side section. */
void bench_urcu_read_unlock(void)
{
	urcu_memb_read_unlock();
}

/*
 * The generic deferred free: liburcu runs fn(head) on its call_rcu thread
 * after a grace period. `head` lives inside the object being freed (an
 * intrusive rcu_head, as liburcu users embed it), so no allocation here.
 */
void bench_urcu_call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *))
{
	urcu_memb_call_rcu(head, fn);
}

/* Waits until every callback queued before the call has run. */
void bench_urcu_barrier(void)
{
	urcu_memb_barrier();
}

/* Waits for a grace period. */
void bench_urcu_synchronize(void)
{
	urcu_memb_synchronize_rcu();
}

/* The size of struct rcu_head, checked against the Rust layout. */
unsigned long bench_urcu_head_size(void)
{
	return sizeof(struct rcu_head);
}
