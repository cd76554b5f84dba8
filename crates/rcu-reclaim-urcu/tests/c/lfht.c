/* liburcu-cds's lock-free hash table (cds_lfht, which reaches the flavor
 * only through the table urcu_memb_flavor and registers its fork hooks
 * with urcu_memb_register_rculfhash_atfork) on the memb flavor: readers
 * look up keys while writers replace, delete and resize (the resize
 * worker uses the flavor's registration, call_rcu and synchronize_rcu),
 * freed nodes poisoned. With "fork", the main thread forks ten times
 * through the hooks meanwhile, and each child builds a table of its own.
 * Prints the counts (the same on both libraries). */
#include "common.h"
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/wait.h>
#include <urcu/rculfhash.h>

#define NKEYS 4096
#define LIVE 0x11111111u
#define DEAD 0xdeaddeadu

struct node { struct cds_lfht_node n; unsigned long key; unsigned magic; struct rcu_head rh; };
static struct cds_lfht *ht;
static volatile int stop;
static unsigned long freed, bad;

static void noop(struct rcu_head *h) { (void)h; }
static unsigned long hash(unsigned long k) { return k * 0x9E3779B97F4A7C15ul; }
static int match(struct cds_lfht_node *n, const void *key) {
	return caa_container_of(n, struct node, n)->key == *(const unsigned long *)key;
}
static void free_node(struct rcu_head *h) {
	struct node *p = caa_container_of(h, struct node, rh);
	CHECK(p->magic == LIVE);
	p->magic = DEAD;
	__atomic_fetch_add(&freed, 1, __ATOMIC_RELAXED);
	free(p);
}
static void *reader(void *a) {
	(void)a;
	rcu_register_thread();
	unsigned long k = 0;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		struct cds_lfht_iter it;
		rcu_read_lock();
		k = (k + 7) % NKEYS;
		cds_lfht_lookup(ht, hash(k), match, &k, &it);
		struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
		if (n && caa_container_of(n, struct node, n)->magic != LIVE)
			__atomic_fetch_add(&bad, 1, __ATOMIC_RELAXED);
		rcu_read_unlock();
	}
	rcu_unregister_thread();
	return NULL;
}
static void *writer(void *a) {
	long id = (long)a;
	rcu_register_thread();
	for (int round = 0; round < 10; round++) {
		for (unsigned long k = id; k < NKEYS; k += 2) {
			struct node *p = malloc(sizeof(*p));
			p->key = k; p->magic = LIVE;
			cds_lfht_node_init(&p->n);
			rcu_read_lock();
			struct cds_lfht_node *old = cds_lfht_add_replace(ht, hash(k), match, &k, &p->n);
			rcu_read_unlock();
			if (old)
				call_rcu(&caa_container_of(old, struct node, n)->rh, free_node);
		}
		/* delete half to make the table shrink */
		for (unsigned long k = id; k < NKEYS; k += 4) {
			struct cds_lfht_iter it;
			rcu_read_lock();
			cds_lfht_lookup(ht, hash(k), match, &k, &it);
			struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
			if (n && !cds_lfht_del(ht, n))
				call_rcu(&caa_container_of(n, struct node, n)->rh, free_node);
			rcu_read_unlock();
		}
		if (round % 5 == 0) {
			cds_lfht_resize(ht, 1 << (round % 10 + 1));
		}
	}
	rcu_unregister_thread();
	return NULL;
}
int main(int argc, char **argv) {
	int dofork = argc > 1 && !strcmp(argv[1], "fork");
	ht = cds_lfht_new(1, 1, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	CHECK(ht);
	/* The default call_rcu_data exists before the forks: a writer's first
	 * call_rcu, made inside a section, creates it under the lock that
	 * call_rcu_before_fork holds while it waits for a grace period, which
	 * waits for that section (a deadlock on liburcu as on ours). */
	static struct rcu_head warm;
	call_rcu(&warm, noop);
	rcu_barrier();
	pthread_t r[3], w[2];
	for (long i = 0; i < 3; i++) pthread_create(&r[i], NULL, reader, NULL);
	for (long i = 0; i < 2; i++) pthread_create(&w[i], NULL, writer, (void *)i);
	if (dofork) {
		for (int i = 0; i < 10; i++) {
			call_rcu_before_fork();
			pid_t pid = fork();
			if (pid == 0) {
				call_rcu_after_fork_child();
				rcu_register_thread();
				struct cds_lfht *h2 = cds_lfht_new(1, 1, 0, CDS_LFHT_AUTO_RESIZE, NULL);
				for (unsigned long k = 0; k < 1000; k++) {
					struct node *p = malloc(sizeof(*p)); p->key = k; p->magic = LIVE;
					cds_lfht_node_init(&p->n);
					rcu_read_lock(); cds_lfht_add(h2, hash(k), &p->n); rcu_read_unlock();
				}
				rcu_unregister_thread();
				_exit(0);
			}
			call_rcu_after_fork_parent();
			int st; CHECK(waitpid(pid, &st, 0) == pid); CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
	}
	for (int i = 0; i < 2; i++) pthread_join(w[i], NULL);
	stop = 1;
	for (int i = 0; i < 3; i++) pthread_join(r[i], NULL);
	rcu_register_thread();
	/* empty the table then destroy it */
	struct cds_lfht_iter it; struct node *p;
	rcu_read_lock();
	cds_lfht_for_each_entry(ht, &it, p, n) {
		if (!cds_lfht_del(ht, &p->n)) call_rcu(&p->rh, free_node);
	}
	rcu_read_unlock();
	rcu_unregister_thread();
	CHECK(cds_lfht_destroy(ht, NULL) == 0);
	rcu_barrier();
	printf("freed %lu bad %lu\n", freed, bad);
	return 0;
}
