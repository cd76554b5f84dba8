/* call_rcu from a signal handler that interrupted malloc, with a
 * call_rcu_data for every CPU (create_all_cpu_call_rcu_data) and no
 * default one yet. Each callback goes to a CPU's call_rcu_data and
 * call_rcu allocates nothing, so the handler cannot wait for the malloc
 * lock the thread it interrupted holds. liburcu creates its default
 * call_rcu_data only for a call_rcu that has no other, and so must the
 * drop-in: the program checks that no thread was started for one, also
 * for the heads of handlers that interrupted a call_rcu of their thread
 * (a third thread floods call_rcu).
 * Argument: seconds of signals (default 1). Built with -DQSBR (the QSBR
 * drop-in's tests include this file), the threads report quiescent
 * states and the main thread is offline while it signals. */
#include "stress.h"
#include <dirent.h>

#define POOL (1 << 20)
static struct rcu_head heads[POOL];
static atomic_long taken, pool_ran;
static atomic_int stop;
static pthread_t threads[3]; /* two mallocers, a caller */

static void pool_cb(struct rcu_head *h) { (void)h; atomic_fetch_add(&pool_ran, 1); }

static void on_usr1(int s)
{
	(void)s;
	long i = atomic_fetch_add(&taken, 1);
	if (i < POOL)
		call_rcu(&heads[i], pool_cb);
}

static int tasks(void)
{
	DIR *d = opendir("/proc/self/task");
	CHECK(d != NULL);
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void *mallocer(void *arg)
{
	(void)arg;
	rcu_register_thread();
	unsigned k = 0;
	while (!atomic_load(&stop)) {
		void *p[16];
		for (int i = 0; i < 16; i++) {
			p[i] = malloc(16 + (k++ * 977) % 8192);
			CHECK(p[i] != NULL);
			memset(p[i], 1, 16);
		}
		for (int i = 0; i < 16; i++)
			free(p[i]);
#ifdef QSBR
		rcu_quiescent_state();
#endif
	}
	rcu_unregister_thread();
	return NULL;
}

/* Queues callbacks as fast as it can: a handler that interrupts its
 * call_rcu leaves its head for that call to hand over on its way out (to
 * a per-CPU call_rcu_data, not a default one made for it). */
static void *caller(void *arg)
{
	(void)arg;
	rcu_register_thread();
	while (!atomic_load(&stop)) {
		call_rcu(&mknode()->h, cb);
		while (atomic_load(&next_id) > MAXCB / 2 && !atomic_load(&stop))
			usleep(1000);
#ifdef QSBR
		rcu_quiescent_state();
#endif
	}
	rcu_unregister_thread();
	return NULL;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1;
	arm((int)secs + 30);
	rcu_register_thread();
	CHECK(create_all_cpu_call_rcu_data(0) == 0);
	/* The first call_rcu of the program is a handler's. */
	synchronize_rcu();
	int before = tasks();

	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	for (int i = 0; i < 3; i++)
		CHECK(pthread_create(&threads[i], NULL, i < 2 ? mallocer : caller, NULL) == 0);
#ifdef QSBR
	rcu_thread_offline();
#endif
	double end = now() + secs;
	long sent = 0;
	while (now() < end && atomic_load(&taken) < POOL - 1000) {
		for (int i = 0; i < 3; i++, sent++)
			CHECK(pthread_kill(threads[i], SIGUSR1) == 0);
		usleep(50);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 3; i++)
		CHECK(pthread_join(threads[i], NULL) == 0);
#ifdef QSBR
	rcu_thread_online();
#endif
	rcu_barrier();
	int after = tasks();
	long n = atomic_load(&taken);
	fprintf(stderr, "%ld signals sent, %ld handled, %ld ran; tasks %d then %d\n",
		sent, n, atomic_load(&pool_ran), before, after);
	CHECK(n > 0);
	CHECK(atomic_load(&pool_ran) == n);
	printf("no default call_rcu_data: %s\n", after == before ? "yes" : "NO");
	int bad = verdict("signal_in_malloc");
	free_all_cpu_call_rcu_data();
	rcu_unregister_thread();
	return bad;
}
