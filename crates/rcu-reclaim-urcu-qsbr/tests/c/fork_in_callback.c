/* The memb drop-in's fork_in_callback.c on QSBR: fork() from a call_rcu
 * callback (online, on its call_rcu thread) with the hooks installed by
 * pthread_atfork. liburcu-qsbr waits for the thread to pause for ever. */
#define QSBR
#include "../../../rcu-reclaim-urcu/tests/c/fork_in_callback.c"
