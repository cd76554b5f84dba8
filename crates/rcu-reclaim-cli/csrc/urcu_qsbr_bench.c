/*
 * liburcu's QSBR flavor for `rcu-reclaim bench` (Debian liburcu-dev 0.13,
 * compiled with _LGPL_SOURCE so quiescent_state inlines into its wrapper).
 * A QSBR read-side section is empty (urcu_qsbr_read_lock/unlock compile to
 * nothing), so the Rust side calls no wrapper per section; it calls
 * bench_urcu_qsbr_quiescent_state between operations (a plain function
 * call that an LGPL C program would inline).
 *
 * A file of its own: urcu-qsbr.h and urcu-memb.h map the same unprefixed
 * names and cannot share a translation unit. Built by build.rs only with
 * `--features liburcu`.
 */
#define _LGPL_SOURCE
#include <urcu/urcu-qsbr.h>

/* Registers the calling thread as a reader (online; once per thread). */
void bench_urcu_qsbr_register_thread(void)
{
	urcu_qsbr_register_thread();
}

/* Unregisters the calling thread. */
void bench_urcu_qsbr_unregister_thread(void)
{
	urcu_qsbr_unregister_thread();
}

/* Reports a quiescent state. */
void bench_urcu_qsbr_quiescent_state(void)
{
	urcu_qsbr_quiescent_state();
}

/* Puts the calling thread offline. */
void bench_urcu_qsbr_thread_offline(void)
{
	urcu_qsbr_thread_offline();
}

/* Puts the calling thread back online. */
void bench_urcu_qsbr_thread_online(void)
{
	urcu_qsbr_thread_online();
}

/* Queues fn(head) after a grace period (liburcu's call_rcu thread runs it). */
void bench_urcu_qsbr_call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *))
{
	urcu_qsbr_call_rcu(head, fn);
}

/* Waits for every callback queued so far (from an unregistered thread). */
void bench_urcu_qsbr_barrier(void)
{
	urcu_qsbr_barrier();
}

/* The size of struct rcu_head, checked against the Rust layout. */
unsigned long bench_urcu_qsbr_head_size(void)
{
	return sizeof(struct rcu_head);
}
