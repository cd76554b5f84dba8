/* synchronize_rcu() inside rcu_read_lock() on a thread that never
 * registered: liburcu does not wait for unregistered threads (their
 * sections protect nothing) and returns; the drop-in must return too, not
 * wait for itself or abort. Nested sections, then plain ones after. */
#include "common.h"

int main(void)
{
	rcu_read_lock();
	synchronize_rcu();
	rcu_read_unlock();
	printf("synchronize_rcu returned\n");
	rcu_read_lock();
	rcu_read_lock();
	synchronize_rcu();
	printf("nested: ongoing %d\n", rcu_read_ongoing());
	rcu_read_unlock();
	rcu_read_unlock();
	printf("after: ongoing %d\n", rcu_read_ongoing());
	synchronize_rcu();
	printf("done\n");
	return 0;
}
