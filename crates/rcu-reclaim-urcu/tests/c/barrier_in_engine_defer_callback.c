/* rcu-reclaim-urcu only (liburcu hangs here): a defer_rcu callback that
 * defers more than a queue holds, then one more call that calls
 * rcu_barrier() (argument "barrier") or rcu_defer_barrier()
 * ("defer_barrier"). The calls deferred from inside a defer_rcu callback
 * past a full queue are run by the library's callback engine, so the last
 * one's barrier runs there: it must say what it cannot wait for, as the
 * barriers of other callbacks do, and return, not print a panic of the
 * library's internals. */
#include "common.h"
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static atomic_int done;
static const char *what;

static void act(void *p)
{
	(void)p;
	if (!strcmp(what, "barrier"))
		rcu_barrier();
	else
		rcu_defer_barrier();
	atomic_fetch_add(&done, 1);
}

static void noop(void *p)
{
	(void)p;
}

static void nest(void *p)
{
	(void)p;
	for (int i = 0; i < 4200; i++)
		defer_rcu(noop, NULL);
	defer_rcu(act, NULL);
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	what = argv[1];
	rcu_register_thread();
	rcu_defer_register_thread();
	defer_rcu(nest, NULL);
	rcu_defer_barrier();
	while (!atomic_load(&done))
		usleep(1000);
	rcu_defer_barrier();
	rcu_barrier();
	printf("done %d\n", atomic_load(&done));
	rcu_defer_unregister_thread();
	rcu_unregister_thread();
	return 0;
}
