/* call_rcu_data_free() on a call_rcu_data whose thread is alive, as
 * liburcu's (urcu-call-rcu-impl.h) behaves: it sets the STOP flag, wakes
 * the thread and waits until the thread has stopped; the thread, before it
 * looks at STOP, takes what is queued and runs it (or finishes the batch
 * it was running); what is still queued then goes to the default
 * call_rcu_data. So:
 *
 *   idle     a callback queued on an idle thread just before the free has
 *            run, on that thread, when the free returns (before: handed to
 *            the default thread at once, run later there);
 *   busy     the free does not return while the thread runs a callback of
 *            its batch; the callbacks queued behind that batch are run by
 *            the default thread (by rcu_barrier() at the latest).
 *
 * Each callback notes whether it ran on the freed call_rcu_data's thread
 * (its get_thread_call_rcu_data() is that one) or the default's.
 *
 * Built for both flavors: under QSBR the main thread stays offline (an
 * online one waiting in call_rcu_data_free(), or for busy_cb to start,
 * would hold up the grace period the call_rcu thread waits for). */
#include "common.h"
#include "../../../rcu-reclaim-urcu/tests/c/call_rcu_data_free_body.h"
