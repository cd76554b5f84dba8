/* Signals whose handlers take a read-side section and call_rcu, landing
 * on threads inside create_call_rcu_data, set_thread_call_rcu_data,
 * call_rcu_data_free, rcu_barrier, synchronize_rcu, register/unregister
 * and defer_rcu. Exactly-once, no hang. */
#include "stress.h"
static atomic_int stop;
#define NT 4
static pthread_t thr[NT];
#include "signal_pool.h"
static atomic_long handled;
static void handler(int s)
{
	(void)s;
	rcu_read_lock();
	(void)rcu_read_ongoing();
	rcu_read_unlock();
	if (pooln > 0) { struct node *n = pool[--pooln]; call_rcu(&n->h, cb); atomic_fetch_add(&handled, 1); }
}
static void dfn(void *p) { cb((struct rcu_head *)p); }
static void *worker(void *arg)
{
	unsigned seed = (unsigned)(long)arg;
	int defer = seed % 2;
	rcu_register_thread();
	if (defer) CHECK(rcu_defer_register_thread() == 0);
	while (!atomic_load(&stop)) {
		refill();
		int r = rand_r(&seed) % 10;
		if (r == 0) { struct call_rcu_data *c = create_call_rcu_data(0, -1); set_thread_call_rcu_data(c); call_rcu(&mknode()->h, cb); set_thread_call_rcu_data(NULL); call_rcu_data_free(c); }
		else if (r == 1) rcu_barrier();
		else if (r == 2) synchronize_rcu();
		else if (r == 3 && !defer) { rcu_unregister_thread(); rcu_register_thread(); }
		else if (r == 4 && defer) defer_rcu(dfn, &mknode()->h);
		else for (int i = 0; i < 20; i++) call_rcu(&mknode()->h, cb);
		while (atomic_load(&next_id) > MAXCB / 2 && !atomic_load(&stop)) usleep(1000);
	}
	sigset_t b; sigemptyset(&b); sigaddset(&b, SIGUSR1); pthread_sigmask(SIG_BLOCK, &b, NULL);
	while (pooln > 0) call_rcu(&pool[--pooln]->h, cb);
	if (defer) rcu_defer_unregister_thread();
	rcu_unregister_thread();
	return NULL;
}
int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1;
	arm(60);
	/* The default call_rcu_data first: the first call_rcu creates it,
	 * which allocates, and a handler that interrupted malloc would wait
	 * for the lock its own thread holds (both libraries: the drop-in hung
	 * so at run 33 of 33 under load, its very first call_rcu a handler's). */
	(void)get_default_call_rcu_data();
	struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	for (long i = 0; i < NT; i++) CHECK(pthread_create(&thr[i], NULL, worker, (void *)(i + 1)) == 0);
	double end = now() + secs;
	while (now() < end) { for (int i = 0; i < NT; i++) pthread_kill(thr[i], SIGUSR1); usleep(100); }
	atomic_store(&stop, 1);
	for (int i = 0; i < NT; i++) pthread_join(thr[i], NULL);
	rcu_barrier();
	fprintf(stderr, "handled %ld\n", atomic_load(&handled));
	return verdict("sigchurn");
}
