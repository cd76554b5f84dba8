/* The memb drop-in's signal_in_malloc.c, QSBR flavor: call_rcu from
 * handlers that interrupted malloc, per-CPU call_rcu_data, no default. */
#define QSBR
#include "signal_in_malloc.c" /* rcu-reclaim-urcu/tests/c: the harness adds -I */
