/* rcu_reclaim_memory_state() in a 100 MiB cgroup before any call_rcu: the
 * program writes 88 MiB, over 85 % of the limit, and asks. Before, the
 * domain was bounded by the cgroup only when the first call_rcu thread
 * started, so the answer was 0 (plenty) however full the cgroup was. */
#include "common.h"
#include "rcu_reclaim.h"

int main(void)
{
	int before = rcu_reclaim_memory_state();
	size_t n = (size_t)88 << 20;
	char *p = malloc(n);
	CHECK(p != NULL);
	/* Volatile stores, one a page: a memset of memory never read again
	 * may be left out by the compiler. */
	for (size_t i = 0; i < n; i += 4096)
		((volatile char *)p)[i] = 1;
	int after = rcu_reclaim_memory_state();
	printf("before %d, after %d\n", before, after);
	free(p);
	return 0;
}
