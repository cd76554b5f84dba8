/* Many threads mixing call_rcu, rcu_barrier, synchronize_rcu, defer_rcu,
 * per-thread call_rcu_data churn, all-cpu call_rcu_data churn and
 * register/unregister churn; threads that exit with a crdp installed. */
#include "stress.h"
static atomic_int stop; static int exit_registered;
static void defer_fn(void *p) { cb((struct rcu_head *)p); }

static void *worker(void *arg)
{
	unsigned seed = (unsigned)(long)arg;
	long round = 0;
	int use_defer = seed % 3 == 0; /* liburcu: once per thread */
	if (use_defer) CHECK(rcu_defer_register_thread() == 0);
	while (!atomic_load(&stop) && round < 40) {
		round++;
		rcu_register_thread();
		struct call_rcu_data *mine = NULL;
		if (rand_r(&seed) % 2) {
			mine = create_call_rcu_data(0, -1);
			set_thread_call_rcu_data(mine);
		}
		for (int i = 0; i < 300; i++) {
			int r = rand_r(&seed) % 100;
			if (r < 85) {
				call_rcu(&mknode()->h, cb);
			} else if (r < 90 && use_defer) {
				defer_rcu(defer_fn, &mknode()->h);
			} else if (r < 93) {
				synchronize_rcu();
			} else if (r < 95) {
				rcu_barrier();
			} else {
				rcu_read_lock(); rcu_read_lock();
				CHECK(rcu_read_ongoing());
				rcu_read_unlock(); rcu_read_unlock();
			}
		}
		if (mine) {
			if (exit_registered && rand_r(&seed) % 4 == 0 && round > 30) {
				/* exit with crdp installed, registered */
				if (use_defer) rcu_defer_unregister_thread();
				return NULL;
			}
			set_thread_call_rcu_data(NULL);
			if (rand_r(&seed) % 2) synchronize_rcu();
			call_rcu_data_free(mine);
		}
		rcu_unregister_thread();
	}
	if (use_defer) rcu_defer_unregister_thread();
	return NULL;
}

static void *percpu(void *arg)
{
	(void)arg;
	rcu_register_thread();
	while (!atomic_load(&stop)) {
		if (create_all_cpu_call_rcu_data(0) == 0) {
			usleep(2000);
			free_all_cpu_call_rcu_data();
		}
		usleep(1000);
	}
	rcu_unregister_thread();
	return NULL;
}

int main(int argc, char **argv)
{
	int nthr = argc > 1 ? atoi(argv[1]) : 8;
	double secs = argc > 2 ? atof(argv[2]) : 1; exit_registered = argc > 3;
	arm(60);
	pthread_t t[64], p;
	CHECK(pthread_create(&p, NULL, percpu, NULL) == 0);
	for (long i = 0; i < nthr; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(i + 1)) == 0);
	double end = now() + secs;
	while (now() < end) usleep(10000);
	atomic_store(&stop, 1);
	for (int i = 0; i < nthr; i++) pthread_join(t[i], NULL);
	pthread_join(p, NULL);
	rcu_register_thread();
	rcu_barrier();
	rcu_unregister_thread();
	return verdict("mix");
}
