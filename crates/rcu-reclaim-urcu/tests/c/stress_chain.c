/* Callbacks that queue more callbacks (chains and fan-out), some on
 * per-thread call_rcu_data freed while their chains still grow, some
 * calling synchronize_rcu; another thread calls rcu_barrier in a loop.
 * Every callback runs exactly once and the whole tree ends. */
#include "stress.h"
#define FAN 3
#define DEPTH 5
struct cnode { struct rcu_head h; long id; int depth; };
static atomic_long expected;
static atomic_int stop_barrier;

static void ccb(struct rcu_head *h)
{
	struct cnode *n = caa_container_of(h, struct cnode, h);
	if (n->depth > 0) {
		for (int i = 0; i < FAN; i++) {
			struct cnode *c = malloc(sizeof(*c));
			c->id = atomic_fetch_add(&next_id, 1);
			c->depth = n->depth - 1;
			call_rcu(&c->h, ccb);
		}
	}
	if (n->id % 997 == 0)
		synchronize_rcu();
	if (atomic_fetch_add(&ran[n->id], 1) != 0)
		atomic_fetch_add(&double_run, 1);
	atomic_fetch_add(&run_count, 1);
	free(n);
}

static long tree(int d) { long t = 0, p = 1; for (int i = 0; i <= d; i++) { t += p; p *= FAN; } return t; }

static void seed_one(int depth)
{
	struct cnode *c = malloc(sizeof(*c));
	c->id = atomic_fetch_add(&next_id, 1);
	c->depth = depth;
	atomic_fetch_add(&expected, tree(depth));
	call_rcu(&c->h, ccb);
}

static void *seeder(void *arg)
{
	unsigned seed = (unsigned)(long)arg;
	rcu_register_thread();
	for (int r = 0; r < 10; r++) {
		struct call_rcu_data *mine = NULL;
		if (rand_r(&seed) % 2) {
			mine = create_call_rcu_data(0, -1);
			set_thread_call_rcu_data(mine);
		}
		for (int i = 0; i < 20; i++)
			seed_one(rand_r(&seed) % (DEPTH + 1));
		if (mine) {
			set_thread_call_rcu_data(NULL);
			call_rcu_data_free(mine);
		}
		if (rand_r(&seed) % 3 == 0) rcu_barrier();
	}
	rcu_unregister_thread();
	return NULL;
}

static void *barrier_loop(void *arg)
{
	(void)arg;
	/* not registered, no crdp of its own */
	while (!atomic_load(&stop_barrier)) rcu_barrier();
	return NULL;
}

int main(void)
{
	arm(60);
	pthread_t s[6], b;
	CHECK(pthread_create(&b, NULL, barrier_loop, NULL) == 0);
	for (long i = 0; i < 6; i++) CHECK(pthread_create(&s[i], NULL, seeder, (void *)(i + 1)) == 0);
	for (int i = 0; i < 6; i++) pthread_join(s[i], NULL);
	double t0 = now();
	while (atomic_load(&run_count) < atomic_load(&expected)) {
		rcu_barrier();
		if (now() - t0 > 30) { fprintf(stderr, "run %ld of %ld\n", atomic_load(&run_count), atomic_load(&expected)); break; }
	}
	atomic_store(&stop_barrier, 1);
	pthread_join(b, NULL);
	rcu_barrier();
	usleep(100000);
	if (atomic_load(&run_count) != atomic_load(&expected) || atomic_load(&next_id) != atomic_load(&expected)) {
		printf("chain: FAIL run %ld expected %ld ids %ld\n", atomic_load(&run_count), atomic_load(&expected), atomic_load(&next_id));
		return 1;
	}
	return verdict("chain");
}
