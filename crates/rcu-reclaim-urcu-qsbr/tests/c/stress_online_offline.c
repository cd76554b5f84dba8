/* QSBR: readers announce quiescent states and go offline/online around
 * blocking calls (sleep, synchronize_rcu, rcu_barrier), updaters replace
 * pointers and call_rcu/synchronize_rcu the old ones (poisoned on free),
 * threads come and go (some exiting online when argv[2] given),
 * per-thread crdps churn. No poison seen, every callback once. */
#define QSBR
#include "stress.h" /* rcu-reclaim-urcu/tests/c: the harness adds -I */
#define SLOTS 64
#define POISON 0x5a5a5a5aL
struct obj { struct rcu_head h; long id; long val; };
static struct obj *slot[SLOTS];
static atomic_int stop; static atomic_long poison_seen;
static int exit_online;

static void ocb(struct rcu_head *h)
{
	struct obj *o = caa_container_of(h, struct obj, h);
	if (atomic_fetch_add(&ran[o->id], 1) != 0) atomic_fetch_add(&double_run, 1);
	atomic_fetch_add(&run_count, 1);
	o->val = POISON;
	free(o);
}
static struct obj *mk(void) { struct obj *o = malloc(sizeof(*o)); o->id = atomic_fetch_add(&next_id, 1); o->val = 1; if (o->id >= MAXCB) exit(3); return o; }

static void *reader(void *arg)
{
	unsigned seed = (unsigned)(long)arg;
	for (int life = 0; life < 50 && !atomic_load(&stop); life++) {
		rcu_register_thread();
		for (int i = 0; i < 2000; i++) {
			rcu_read_lock();
			for (int s = 0; s < SLOTS; s++) {
				struct obj *o = rcu_dereference(slot[s]);
				if (o && o->val == POISON) atomic_fetch_add(&poison_seen, 1);
			}
			rcu_read_unlock();
			int r = rand_r(&seed) % 100;
			if (r < 60) rcu_quiescent_state();
			else if (r < 62) { rcu_thread_offline(); usleep(50); rcu_thread_online(); }
			else if (r < 63) { rcu_thread_offline(); rcu_thread_online(); synchronize_rcu(); }
			else if (r < 64) { call_rcu(&mk()->h, ocb); }
			else if (r == 64 && i % 7 == 0) { rcu_thread_offline(); rcu_barrier(); rcu_thread_online(); }
		}
		if (exit_online && life == 10 && seed % 2) return NULL;
		rcu_unregister_thread();
	}
	return NULL;
}

static void *updater(void *arg)
{
	unsigned seed = (unsigned)(long)arg;
	rcu_register_thread();
	struct call_rcu_data *mine = NULL;
	while (!atomic_load(&stop)) {
		if (rand_r(&seed) % 500 == 0) {
			if (mine) { set_thread_call_rcu_data(NULL); rcu_thread_offline(); call_rcu_data_free(mine); rcu_thread_online(); mine = NULL; }
			else { mine = create_call_rcu_data(0, -1); set_thread_call_rcu_data(mine); }
		}
		struct obj *old = rcu_xchg_pointer(&slot[rand_r(&seed) % SLOTS], mk());
		if (old) {
			if (rand_r(&seed) % 200 == 0) {
				synchronize_rcu();
				ocb(&old->h);
			} else call_rcu(&old->h, ocb);
		}
		rcu_quiescent_state();
		while (atomic_load(&next_id) > MAXCB / 2 && !atomic_load(&stop)) {
			rcu_thread_offline(); usleep(1000); rcu_thread_online();
		}
	}
	if (mine) { set_thread_call_rcu_data(NULL); rcu_thread_offline(); call_rcu_data_free(mine); rcu_thread_online(); }
	rcu_unregister_thread();
	return NULL;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1;
	exit_online = argc > 2;
	arm(60);
	pthread_t r[6], u[3];
	for (long i = 0; i < 6; i++) CHECK(pthread_create(&r[i], NULL, reader, (void *)(i + 1)) == 0);
	for (long i = 0; i < 3; i++) CHECK(pthread_create(&u[i], NULL, updater, (void *)(i + 11)) == 0);
	double end = now() + secs;
	while (now() < end) usleep(10000);
	atomic_store(&stop, 1);
	for (int i = 0; i < 3; i++) pthread_join(u[i], NULL);
	for (int i = 0; i < 6; i++) pthread_join(r[i], NULL);
	rcu_register_thread();
	for (int s = 0; s < SLOTS; s++) { struct obj *o = rcu_xchg_pointer(&slot[s], NULL); if (o) call_rcu(&o->h, ocb); }
	rcu_thread_offline();
	rcu_barrier();
	rcu_thread_online();
	rcu_unregister_thread();
	printf("poison seen: %ld\n", atomic_load(&poison_seen));
	return verdict("qsbr") || atomic_load(&poison_seen);
}
