/* One exported call N times, for callgrind (bench/calls.sh): the same
 * binary against Debian's liburcu-memb.so.8 and against rcu-reclaim-urcu
 * dropped in through LD_LIBRARY_PATH. Built against liburcu 0.13's headers
 * without _LGPL_SOURCE.
 *
 *   calls sync N   N synchronize_rcu() with no thread registered
 *   calls call N   N call_rcu() from a registered thread (heads in a static
 *                  array, callbacks that do nothing), then rcu_barrier()
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define RCU_MEMBARRIER
#include <urcu.h>

#define MAX 100000
static struct rcu_head heads[MAX + 1];

static void nothing(struct rcu_head *head)
{
	(void)head;
}

int main(int argc, char **argv)
{
	int n = argc == 3 ? atoi(argv[2]) : 0;
	if (n <= 0 || n > MAX) {
		fprintf(stderr, "usage: %s sync|call N (N <= %d)\n", argv[0], MAX);
		return 2;
	}
	if (!strcmp(argv[1], "sync")) {
		synchronize_rcu(); /* warm up */
		for (int i = 0; i < n; i++)
			synchronize_rcu();
		return 0;
	}
	if (!strcmp(argv[1], "call")) {
		rcu_register_thread();
		call_rcu(&heads[0], nothing); /* warm up: starts the thread */
		rcu_barrier();
		for (int i = 1; i <= n; i++)
			call_rcu(&heads[i], nothing);
		rcu_barrier();
		rcu_unregister_thread();
		return 0;
	}
	return 2;
}
