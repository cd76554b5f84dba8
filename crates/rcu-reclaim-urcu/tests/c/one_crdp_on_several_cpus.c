/* rcu-reclaim-urcu only (liburcu frees such a call_rcu_data once per CPU:
 * a double free): one call_rcu_data set for several CPUs with
 * set_cpu_call_rcu_data, callbacks queued on it, then
 * free_all_cpu_call_rcu_data. It is freed once, every callback runs, and
 * nothing is said: before, its second free printed that the program had
 * freed a call_rcu_data that was not live, which it never did. */
#include "common.h"
#include <stdatomic.h>
#include <unistd.h>

static atomic_int ran;

static void count(struct rcu_head *head)
{
	free(head);
	atomic_fetch_add(&ran, 1);
}

int main(void)
{
	int ncpus = (int)sysconf(_SC_NPROCESSORS_CONF);
	int cpus = ncpus < 4 ? ncpus : 4;
	rcu_register_thread();
	struct call_rcu_data *shared = create_call_rcu_data(0, -1);
	CHECK(shared != NULL);
	for (int cpu = 0; cpu < cpus; cpu++)
		CHECK(set_cpu_call_rcu_data(cpu, shared) == 0);
	set_thread_call_rcu_data(shared);
	for (int i = 0; i < 1000; i++) {
		struct rcu_head *head = malloc(sizeof(*head));
		CHECK(head != NULL);
		call_rcu(head, count);
	}
	set_thread_call_rcu_data(NULL);
	free_all_cpu_call_rcu_data();
	for (int cpu = 0; cpu < cpus; cpu++)
		CHECK(get_cpu_call_rcu_data(cpu) == NULL);
	rcu_barrier();
	printf("callbacks run: %d\n", atomic_load(&ran));
	rcu_unregister_thread();
	return 0;
}
