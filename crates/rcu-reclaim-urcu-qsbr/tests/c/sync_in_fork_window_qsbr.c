/* The memb drop-in's sync_in_fork_window.c, QSBR flavor: a grace period
 * waited for in the fork window beside rcu_barrier and handlers. */
#define QSBR
#include "sync_in_fork_window.c" /* rcu-reclaim-urcu/tests/c: the harness adds -I */
