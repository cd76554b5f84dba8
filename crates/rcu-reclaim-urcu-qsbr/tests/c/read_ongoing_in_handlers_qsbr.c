/* The memb drop-in's read_ongoing_in_handlers.c, QSBR flavor. */
#define QSBR
#include "read_ongoing_in_handlers.c" /* rcu-reclaim-urcu/tests/c: the harness adds -I */
