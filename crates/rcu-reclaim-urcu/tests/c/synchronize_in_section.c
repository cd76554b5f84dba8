/* Misuse that liburcu turns into a deadlock: synchronize_rcu() inside the
 * caller's own read-side section. Run against rcu-reclaim-urcu only, which
 * must print why and abort (also when the caller is the only registered
 * thread, where synchronize_rcu otherwise returns at once).
 *   synchronize_in_section nested|single */
#include "common.h"
#include <string.h>

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	rcu_register_thread();
	/* Outside any section: returns. */
	synchronize_rcu();
	rcu_read_lock();
	if (!strcmp(argv[1], "nested"))
		rcu_read_lock();
	printf("in section\n");
	fflush(stdout);
	synchronize_rcu();
	printf("synchronize_rcu returned inside a section\n");
	return 0;
}
