/* Forks every few milliseconds through the call_rcu fork hooks while
 * heads move between queues: threads make a call_rcu_data, install it,
 * queue on it, uninstall it and free it (its queue handed to the default)
 * in a loop, a thread runs rcu_barrier, and a thread signals them, each handler queueing a call_rcu
 * (heads a handler queues inside an interrupted call_rcu or rcu_barrier
 * wait aside and are handed over on its way out). Every child runs rcu_barrier and checks
 * that every callback whose call_rcu returned before the fork ran in it:
 * a chain in some thread's hands at the fork would be lost there. The
 * parent checks exactly-once at the end. Arguments: forks (default 300). */
#include "stress.h"
static atomic_int stop;
static atomic_long returned; /* call_rcus that returned */
static pthread_t churners[4];
static const int nchurn = 4;

#include "signal_pool.h"
static void handler(int s)
{
	(void)s;
	if (pooln > 0) {
		call_rcu(&pool[--pooln]->h, cb);
		atomic_fetch_add(&returned, 1);
	}
}
static void q(void) { call_rcu(&mknode()->h, cb); atomic_fetch_add(&returned, 1); }

static void *churn(void *arg)
{
	unsigned r = (unsigned)(long)arg * 7919u + 1;
	rcu_register_thread();
	while (!atomic_load(&stop)) {
		struct call_rcu_data *c = create_call_rcu_data(0, -1);
		CHECK(c);
		set_thread_call_rcu_data(c);
		r = r * 1103515245u + 12345u;
		int n = 1 + (r >> 8) % 400;
		for (int i = 0; i < n; i++) { refill_to(32); q(); }
		/* a long call: the handlers' heads gather aside meanwhile */
		if ((r >> 20) % 4 == 0) rcu_barrier();
		set_thread_call_rcu_data(NULL);
		for (int i = 0; i < 10; i++) q();
		call_rcu_data_free(c);
		while (atomic_load(&next_id) > MAXCB / 2 && !atomic_load(&stop)) usleep(1000);
	}
	{ sigset_t b; sigemptyset(&b); sigaddset(&b, SIGUSR1); pthread_sigmask(SIG_BLOCK, &b, NULL); }
	while (pooln > 0) { call_rcu(&pool[--pooln]->h, cb); atomic_fetch_add(&returned, 1); }
	rcu_unregister_thread();
	return NULL;
}

static void *barrierer(void *arg)
{
	(void)arg;
	rcu_register_thread();
	while (!atomic_load(&stop)) { rcu_barrier(); usleep(500); }
	rcu_unregister_thread();
	return NULL;
}

static void *signaller(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		for (int i = 0; i < nchurn; i++) pthread_kill(churners[i], SIGUSR1);
		usleep(50);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int forks = argc > 1 ? atoi(argv[1]) : 300;
	arm(120);
	struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	rcu_register_thread();
	/* made before any handler runs: a handler's call_rcu that made it
	 * could interrupt malloc (README) */
	(void)get_default_call_rcu_data();
	for (long i = 0; i < nchurn; i++) CHECK(pthread_create(&churners[i], NULL, churn, (void *)i) == 0);
	pthread_t sg, br;
	CHECK(pthread_create(&sg, NULL, signaller, NULL) == 0);
	CHECK(pthread_create(&br, NULL, barrierer, NULL) == 0);
	int bad = 0;
	for (int f = 0; f < forks && !bad; f++) {
		usleep(3000);
		call_rcu_before_fork();
		long before = atomic_load(&returned);
		pid_t p = fork();
		if (p == 0) {
			call_rcu_after_fork_child();
			alarm(20);
			rcu_barrier();
			long ran_now = atomic_load(&run_count);
			if (ran_now < before) {
				fprintf(stderr, "child %d: %ld callbacks ran, %ld were queued before the fork\n",
					f, ran_now, before);
				_exit(3);
			}
			_exit(atomic_load(&double_run) ? 4 : 0);
		}
		call_rcu_after_fork_parent();
		if (!child_ok(p, f)) bad++;
	}
	atomic_store(&stop, 1);
	pthread_join(sg, NULL);
	pthread_join(br, NULL);
	for (int i = 0; i < nchurn; i++) pthread_join(churners[i], NULL);
	rcu_barrier();
	rcu_unregister_thread();
	printf("children that lost callbacks: %d\n", bad);
	return verdict("fork during hand-offs") || bad;
}
