/* Per-CPU and per-thread call_rcu_data: a callback queued from a thread
 * pinned to CPU i runs on CPU i's call_rcu thread; one queued by a thread
 * with its own call_rcu_data runs on that one's thread; the error codes of
 * set_cpu_call_rcu_data; freeing hands leftovers to the default. */
#include "common.h"
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

struct obj {
	pthread_t ran_on;
	atomic_int done;
	struct rcu_head rcu;
};

static void record(struct rcu_head *head)
{
	struct obj *o = caa_container_of(head, struct obj, rcu);
	o->ran_on = pthread_self();
	atomic_store(&o->done, 1);
}

static int pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

int main(void)
{
	int ncpus = (int)sysconf(_SC_NPROCESSORS_CONF);
	int online = (int)sysconf(_SC_NPROCESSORS_ONLN);
	rcu_register_thread();

	CHECK(get_cpu_call_rcu_data(0) == NULL);
	CHECK(create_all_cpu_call_rcu_data(0) == 0);
	int distinct = 1;
	for (int i = 0; i < ncpus; i++) {
		CHECK(get_cpu_call_rcu_data(i) != NULL);
		for (int j = 0; j < i; j++)
			if (get_cpu_call_rcu_data(i) == get_cpu_call_rcu_data(j))
				distinct = 0;
	}
	CHECK(get_cpu_call_rcu_data(ncpus) == NULL);
	CHECK(get_cpu_call_rcu_data(-1) == NULL);
	/* Calling it again keeps the existing ones. */
	struct call_rcu_data *cpu0 = get_cpu_call_rcu_data(0);
	CHECK(create_all_cpu_call_rcu_data(0) == 0);
	CHECK(get_cpu_call_rcu_data(0) == cpu0);

	errno = 0;
	int eexist = set_cpu_call_rcu_data(0, cpu0) == -EEXIST && errno == EEXIST;
	errno = 0;
	int einval = set_cpu_call_rcu_data(ncpus, cpu0) == -EINVAL && errno == EINVAL;

	int on_cpu_thread = 0;
	for (int i = 0; i < online; i++) {
		CHECK(pin(i) == 0);
		CHECK(get_call_rcu_data() == get_cpu_call_rcu_data(sched_getcpu()));
		struct obj o = { .done = 0 };
		call_rcu(&o.rcu, record);
		int cpu = sched_getcpu();
		rcu_barrier();
		CHECK(atomic_load(&o.done));
		on_cpu_thread += pthread_equal(o.ran_on,
			get_call_rcu_thread(get_cpu_call_rcu_data(cpu)));
	}

	/* A thread's own call_rcu_data wins over the CPU's. */
	struct call_rcu_data *mine = create_call_rcu_data(0, -1);
	CHECK(mine != NULL);
	set_thread_call_rcu_data(mine);
	CHECK(get_thread_call_rcu_data() == mine);
	CHECK(get_call_rcu_data() == mine);
	struct obj o = { .done = 0 };
	call_rcu(&o.rcu, record);
	rcu_barrier();
	int on_thread_crdp = atomic_load(&o.done) &&
		pthread_equal(o.ran_on, get_call_rcu_thread(mine));
	set_thread_call_rcu_data(NULL);
	synchronize_rcu();
	call_rcu_data_free(mine);
	/* The default and NULL are refused silently. */
	call_rcu_data_free(get_default_call_rcu_data());
	call_rcu_data_free(NULL);

	free_all_cpu_call_rcu_data();
	int cleared = 1;
	for (int i = 0; i < ncpus; i++)
		cleared &= get_cpu_call_rcu_data(i) == NULL;
	struct obj last = { .done = 0 };
	call_rcu(&last.rcu, record);
	rcu_barrier();
	int on_default = atomic_load(&last.done) &&
		pthread_equal(last.ran_on, get_call_rcu_thread(get_default_call_rcu_data()));

	printf("per-CPU data distinct %d, EEXIST %d, EINVAL %d, callbacks on their CPU's thread %d of %d\n",
	       distinct, eexist, einval, on_cpu_thread, online);
	printf("per-thread data used %d, per-CPU data cleared %d, default used after %d\n",
	       on_thread_crdp, cleared, on_default);
	rcu_unregister_thread();
	return distinct && eexist && einval && on_cpu_thread == online &&
		on_thread_crdp && cleared && on_default ? 0 : 1;
}
