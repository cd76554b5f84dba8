/* liburcu-cds's lock-free hash table on the QSBR flavor: cds_lfht reaches
 * it only through urcu_qsbr_flavor (its resize worker registers and goes
 * offline/online through the table, its writers use call_rcu and
 * synchronize_rcu). Online readers look keys up, reporting quiescent
 * states between lookups, while writers replace and delete (the table
 * grows and shrinks by itself); freed nodes are poisoned. An explicit
 * cds_lfht_resize from a writer is left out: with the resize worker at
 * work it hung now and then (in a grace period, holding the resize mutex
 * the worker waits for) on liburcu-qsbr as on ours. Prints the counts
 * (the same on both libraries). */
#include "common.h"
#include <urcu/rculfhash.h>

#define NKEYS 4096
#define LIVE 0x11111111u
#define DEAD 0xdeaddeadu

struct node { struct cds_lfht_node n; unsigned long key; unsigned magic; struct rcu_head rh; };
static struct cds_lfht *ht;
static int stop;
static unsigned long freed, bad;

static unsigned long hash(unsigned long k) { return k * 0x9E3779B97F4A7C15ul; }
static int match(struct cds_lfht_node *n, const void *key)
{
	return caa_container_of(n, struct node, n)->key == *(const unsigned long *)key;
}
static void free_node(struct rcu_head *h)
{
	struct node *p = caa_container_of(h, struct node, rh);
	CHECK(p->magic == LIVE);
	p->magic = DEAD;
	__atomic_fetch_add(&freed, 1, __ATOMIC_RELAXED);
	free(p);
}
static void *reader(void *a)
{
	(void)a;
	rcu_register_thread();
	unsigned long k = 0;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		for (int i = 0; i < 64; i++) {
			struct cds_lfht_iter it;
			k = (k + 7) % NKEYS;
			cds_lfht_lookup(ht, hash(k), match, &k, &it);
			struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
			if (n && caa_container_of(n, struct node, n)->magic != LIVE)
				__atomic_fetch_add(&bad, 1, __ATOMIC_RELAXED);
		}
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
	return NULL;
}
static void *writer(void *a)
{
	long id = (long)a;
	rcu_register_thread();
	for (int round = 0; round < 10; round++) {
		for (unsigned long k = id; k < NKEYS; k += 2) {
			struct node *p = malloc(sizeof(*p));
			p->key = k;
			p->magic = LIVE;
			cds_lfht_node_init(&p->n);
			struct cds_lfht_node *old = cds_lfht_add_replace(ht, hash(k), match, &k, &p->n);
			if (old)
				call_rcu(&caa_container_of(old, struct node, n)->rh, free_node);
			if (k % 64 == (unsigned long)id)
				rcu_quiescent_state();
		}
		for (unsigned long k = id; k < NKEYS; k += 4) {
			struct cds_lfht_iter it;
			cds_lfht_lookup(ht, hash(k), match, &k, &it);
			struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
			if (n && !cds_lfht_del(ht, n))
				call_rcu(&caa_container_of(n, struct node, n)->rh, free_node);
		}
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
	return NULL;
}
int main(void)
{
	ht = cds_lfht_new(1, 1, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	CHECK(ht);
	pthread_t r[3], w[2];
	for (long i = 0; i < 3; i++)
		CHECK(pthread_create(&r[i], NULL, reader, NULL) == 0);
	for (long i = 0; i < 2; i++)
		CHECK(pthread_create(&w[i], NULL, writer, (void *)i) == 0);
	for (int i = 0; i < 2; i++)
		pthread_join(w[i], NULL);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 3; i++)
		pthread_join(r[i], NULL);
	rcu_register_thread();
	struct cds_lfht_iter it;
	struct node *p;
	cds_lfht_for_each_entry(ht, &it, p, n) {
		if (!cds_lfht_del(ht, &p->n))
			call_rcu(&p->rh, free_node);
	}
	rcu_thread_offline();
	CHECK(cds_lfht_destroy(ht, NULL) == 0);
	rcu_barrier();
	rcu_thread_online();
	rcu_unregister_thread();
	printf("freed %lu bad %lu\n", freed, bad);
	return 0;
}
