/* The memb drop-in's flood of heavy objects, from online QSBR threads that
 * report a quiescent state every EVERY calls:
 *   flood_heavy THREADS SECONDS SIZE [EVERY] */
#define QSBR
#include "../../../rcu-reclaim-urcu/tests/c/flood_heavy.c"
