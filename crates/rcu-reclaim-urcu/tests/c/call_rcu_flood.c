/* A call_rcu flood: 4 updaters replace the slots of a table and call_rcu
 * every removed node while a reader checks that no node it reaches was
 * freed (callbacks poison before freeing); then every callback has run,
 * exactly once. Second, the same flood on per-CPU call_rcu_data, freed
 * with free_all_cpu_call_rcu_data while the updaters go on: it returns
 * (the harness kills a hung program), and no callback is lost. */
#include "common.h"
#include <poll.h>
#include <stdatomic.h>

#define UPDATERS 4
#define SLOTS 1024
#define PER_THREAD 200000
#define POISON 0xdeadbeefL

struct node {
	long value;
	struct rcu_head rcu;
};

static struct node *table[SLOTS];
static atomic_long queued, invoked, poisoned_seen;
static atomic_int stop_reader, updaters_done;

static void free_node(struct rcu_head *head)
{
	struct node *n = caa_container_of(head, struct node, rcu);
	n->value = POISON;
	atomic_fetch_add(&invoked, 1);
	free(n);
}

static void *updater(void *arg)
{
	unsigned int seed = (unsigned int)(long)arg;
	rcu_register_thread();
	for (long i = 0; i < PER_THREAD; i++) {
		struct node *fresh = malloc(sizeof(*fresh));
		fresh->value = i;
		struct node *old = rcu_xchg_pointer(&table[rand_r(&seed) % SLOTS], fresh);
		if (old) {
			atomic_fetch_add(&queued, 1);
			call_rcu(&old->rcu, free_node);
		}
	}
	atomic_fetch_add(&updaters_done, 1);
	rcu_unregister_thread();
	return NULL;
}

static void *reader(void *arg)
{
	(void)arg;
	rcu_register_thread();
	while (!atomic_load(&stop_reader)) {
		rcu_read_lock();
		for (int i = 0; i < SLOTS; i++) {
			struct node *n = rcu_dereference(table[i]);
			if (n && n->value == POISON)
				atomic_fetch_add(&poisoned_seen, 1);
		}
		rcu_read_unlock();
	}
	rcu_unregister_thread();
	return NULL;
}

/* One round; with per_cpu, per-CPU call_rcu_data are freed midway. */
static void round_(int per_cpu)
{
	pthread_t u[UPDATERS], r;
	atomic_store(&stop_reader, 0);
	atomic_store(&updaters_done, 0);
	if (per_cpu)
		CHECK(create_all_cpu_call_rcu_data(0) == 0);
	CHECK(pthread_create(&r, NULL, reader, NULL) == 0);
	for (long i = 0; i < UPDATERS; i++)
		CHECK(pthread_create(&u[i], NULL, updater, (void *)(i + 1)) == 0);
	if (per_cpu) {
		while (atomic_load(&queued) < PER_THREAD / 2)
			poll(NULL, 0, 1);
		free_all_cpu_call_rcu_data();
		CHECK(get_cpu_call_rcu_data(0) == NULL);
	}
	for (int i = 0; i < UPDATERS; i++)
		pthread_join(u[i], NULL);
	atomic_store(&stop_reader, 1);
	pthread_join(r, NULL);
	for (int i = 0; i < SLOTS; i++) {
		struct node *old = rcu_xchg_pointer(&table[i], NULL);
		if (old) {
			atomic_fetch_add(&queued, 1);
			call_rcu(&old->rcu, free_node);
		}
	}
	rcu_barrier();
	printf("%s: every callback ran once %d, freed nodes seen by the reader %ld\n",
	       per_cpu ? "per-CPU call_rcu_data freed under load" : "default call_rcu_data",
	       atomic_load(&invoked) == atomic_load(&queued), atomic_load(&poisoned_seen));
	CHECK(atomic_load(&invoked) == atomic_load(&queued));
	CHECK(atomic_load(&poisoned_seen) == 0);
	atomic_store(&queued, 0);
	atomic_store(&invoked, 0);
}

int main(void)
{
	rcu_register_thread();
	round_(0);
	round_(1);
	rcu_unregister_thread();
	return 0;
}
