/* Forks through the call_rcu fork hooks in the middle of floods on the
 * default, per-thread and per-CPU call_rcu_data and defer_rcu, while a
 * thread signals the flooders and each handler queues a call_rcu. Each
 * child calls call_rcu, defer_rcu, a crdp of its own, synchronize_rcu and
 * rcu_barrier, checks its own callbacks ran exactly once, and exits. The
 * parent checks exactly-once at the end. */
#include "stress.h"
static atomic_int stop;
static pthread_t flooders[8];
static int nflood = 4;

#include "signal_pool.h"
static void sigcb(struct rcu_head *h)
{
	struct node *n = caa_container_of(h, struct node, h);
	if (atomic_fetch_add(&ran[n->id], 1) != 0) atomic_fetch_add(&double_run, 1);
	atomic_fetch_add(&run_count, 1);
	free(n);
}
static void handler(int s) { (void)s; if (pooln > 0) { struct node *n = pool[--pooln]; call_rcu(&n->h, sigcb); } }
static void dfn(void *p) { cb((struct rcu_head *)p); }

static void *flood(void *arg)
{
	long k = (long)arg;
	rcu_register_thread();
	struct call_rcu_data *mine = NULL;
	if (k == 1) { mine = create_call_rcu_data(0, -1); set_thread_call_rcu_data(mine); }
	if (k == 2) CHECK(rcu_defer_register_thread() == 0);
	while (!atomic_load(&stop)) {
		refill();
		if (k == 2) defer_rcu(dfn, &mknode()->h);
		else call_rcu(&mknode()->h, cb);
		while (atomic_load(&next_id) > MAXCB / 2 && !atomic_load(&stop)) usleep(1000);
	}
	{ sigset_t b; sigemptyset(&b); sigaddset(&b, SIGUSR1); pthread_sigmask(SIG_BLOCK, &b, NULL); }
	while (pooln > 0) call_rcu(&pool[--pooln]->h, sigcb);
	if (k == 2) rcu_defer_unregister_thread();
	if (mine) { set_thread_call_rcu_data(NULL); call_rcu_data_free(mine); }
	rcu_unregister_thread();
	return NULL;
}

static void *signaller(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		for (int i = 0; i < nflood; i++) pthread_kill(flooders[i], SIGUSR1);
		usleep(200);
	}
	return NULL;
}

static int child(void)
{
	alarm(20);
	long base = atomic_load(&next_id);
	(void)base;
	rcu_register_thread();
	static atomic_int cran[300];
	for (int i = 0; i < 100; i++) call_rcu(&mknode()->h, cb);
	CHECK(rcu_defer_register_thread() == 0);
	for (int i = 0; i < 100; i++) defer_rcu(dfn, &mknode()->h);
	rcu_defer_barrier();
	struct call_rcu_data *c = create_call_rcu_data(0, -1);
	set_thread_call_rcu_data(c);
	for (int i = 0; i < 100; i++) call_rcu(&mknode()->h, cb);
	synchronize_rcu();
	rcu_barrier();
	set_thread_call_rcu_data(NULL);
	call_rcu_data_free(c);
	rcu_defer_unregister_thread();
	rcu_unregister_thread();
	(void)cran;
	/* the child's own 300 ran exactly once (ids allocated in the child
	 * are after every parent id copied at the fork) */
	long n = atomic_load(&next_id), bad = 0;
	for (long i = n - 300; i < n; i++) if (atomic_load(&ran[i]) != 1) bad++;
	if (bad) { fprintf(stderr, "child: %ld of its 300 callbacks bad\n", bad); _exit(5); }
	_exit(0);
}

int main(int argc, char **argv)
{
	int forks = argc > 1 ? atoi(argv[1]) : 40;
	arm(60);
	struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	CHECK(create_all_cpu_call_rcu_data(0) == 0);
	for (long i = 0; i < nflood; i++) CHECK(pthread_create(&flooders[i], NULL, flood, (void *)i) == 0);
	pthread_t sg;
	CHECK(pthread_create(&sg, NULL, signaller, NULL) == 0);
	int bad = 0;
	for (int f = 0; f < forks; f++) {
		usleep(5000);
		call_rcu_before_fork();
		pid_t p = fork();
		if (p == 0) { call_rcu_after_fork_child(); child(); }
		call_rcu_after_fork_parent();
		if (!child_ok(p, f)) bad++;
	}
	atomic_store(&stop, 1);
	pthread_join(sg, NULL);
	for (int i = 0; i < nflood; i++) pthread_join(flooders[i], NULL);
	free_all_cpu_call_rcu_data();
	rcu_barrier();
	printf("children failed: %d\n", bad);
	return verdict("fork") || bad;
}
