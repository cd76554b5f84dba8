/* Waits for a grace period between call_rcu_before_fork() and fork() (as
 * a program's own atfork prepare handler may), while a signal handler
 * queues call_rcus (the heads it queues inside an interrupted call_rcu
 * wait aside during the fork) and another thread loops on rcu_barrier:
 * the barrier must not wait for the fork inside a read-side section or
 * online (the drop-in hung so in every run), and every callback runs
 * once. Argument: forks (default 200). -DQSBR for the QSBR flavor. */
#include "stress.h"
#ifdef QSBR
#define NAP(u) do { rcu_thread_offline(); usleep(u); rcu_thread_online(); } while (0)
#else
#define NAP(u) usleep(u)
#endif
static atomic_int stop;
static pthread_t gen;
#include "signal_pool.h"
static void handler(int s) { (void)s; if (pooln > 0) call_rcu(&pool[--pooln]->h, cb); }
static void *generator(void *a) { (void)a; rcu_register_thread();
	while (!atomic_load(&stop)) { refill(); for (int i = 0; i < 50; i++) call_rcu(&mknode()->h, cb);
#ifdef QSBR
		rcu_quiescent_state();
#endif
		while (atomic_load(&next_id) > MAXCB / 2 && !atomic_load(&stop)) NAP(1000); }
	{ sigset_t b; sigemptyset(&b); sigaddset(&b, SIGUSR1); pthread_sigmask(SIG_BLOCK, &b, NULL); }
	while (pooln > 0) call_rcu(&pool[--pooln]->h, cb);
	rcu_unregister_thread(); return NULL; }
static void *signaller(void *a) { (void)a; while (!atomic_load(&stop)) { pthread_kill(gen, SIGUSR1); usleep(20); } return NULL; }
static void *barrierer(void *a) { (void)a; rcu_register_thread();
	while (!atomic_load(&stop)) { rcu_barrier();
#ifdef QSBR
	rcu_quiescent_state();
#endif
	NAP(100); }
	rcu_unregister_thread(); return NULL; }
int main(int argc, char **argv) {
	int forks = argc > 1 ? atoi(argv[1]) : 200;
	arm(60);
	struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask); sigaction(SIGUSR1, &sa, NULL);
	(void)get_default_call_rcu_data();
	pthread_t sg, br;
	CHECK(pthread_create(&gen, NULL, generator, NULL) == 0);
	CHECK(pthread_create(&sg, NULL, signaller, NULL) == 0);
	CHECK(pthread_create(&br, NULL, barrierer, NULL) == 0);
	int bad = 0;
	for (int f = 0; f < forks; f++) {
		usleep(2000);
		call_rcu_before_fork();
		usleep(2000);
		synchronize_rcu();   /* e.g. an atfork prepare handler of the program's */
		pid_t p = fork();
		if (p == 0) { call_rcu_after_fork_child(); _exit(0); }
		call_rcu_after_fork_parent();
		if (!child_ok(p, f)) bad++;
	}
	atomic_store(&stop, 1);
	pthread_join(sg, NULL); pthread_join(br, NULL); pthread_join(gen, NULL);
	rcu_barrier();
	return verdict("sync in fork window") || bad;
}
