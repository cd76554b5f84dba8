/* rcu_read_ongoing() from signal handlers that interrupted malloc, on
 * threads that never registered (liburcu answers 0 from a thread-local:
 * valid on any thread). Phase 1: the program's first liburcu call is such
 * a handler's (the main thread loops on malloc/free while another thread
 * signals it). Phase 2: short-lived unregistered threads loop on
 * malloc/free and are signalled. Before, the drop-in made its domain at
 * the first call (a handler that interrupted the making waited for it for
 * good, or re-entered malloc: 4 runs in 10 hung), and a fresh thread's
 * query registered a thread-local's destructor, which allocates (5 runs
 * of 5 hung). Argument: phase 2's threads (default 100). Built with
 * -DQSBR by the QSBR drop-in's tests. */
#include "stress.h"

static atomic_long hits, nonzero;
static atomic_int stop_signals, alive, started;
static pthread_t target;

static void on_usr1(int s)
{
	(void)s;
	if (rcu_read_ongoing())
		atomic_fetch_add(&nonzero, 1);
	atomic_fetch_add(&hits, 1);
}

static void churn(long n)
{
	void *v[16] = { 0 };
	for (long i = 0; i < n; i++) {
		int k = i & 15;
		free(v[k]);
		v[k] = malloc(16 + (i % 2000));
	}
	for (int k = 0; k < 16; k++)
		free(v[k]);
}

static void *signaller(void *a)
{
	(void)a;
	while (!atomic_load(&stop_signals)) {
		pthread_kill(target, SIGUSR1);
		usleep(20);
	}
	return NULL;
}

static void *worker(void *a)
{
	(void)a;
	atomic_store(&alive, 1);
	atomic_fetch_add(&started, 1);
	churn(20000);
	atomic_store(&alive, 0);
	return NULL;
}

int main(int argc, char **argv)
{
	int nthreads = argc > 1 ? atoi(argv[1]) : 100;
	arm(60);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	target = pthread_self();
	pthread_t s;
	CHECK(pthread_create(&s, NULL, signaller, NULL) == 0);
	churn(300000);
	atomic_store(&stop_signals, 1);
	CHECK(pthread_join(s, NULL) == 0);
	for (int t = 0; t < nthreads; t++) {
		pthread_t th;
		atomic_store(&alive, 0);
		CHECK(pthread_create(&th, NULL, worker, NULL) == 0);
		while (atomic_load(&started) <= t)
			;
		for (int k = 0; k < 200 && atomic_load(&alive); k++) {
			pthread_kill(th, SIGUSR1);
			usleep(5);
		}
		CHECK(pthread_join(th, NULL) == 0);
	}
	fprintf(stderr, "%ld handler queries\n", atomic_load(&hits));
	printf("handlers queried: %s; all answered 0: %s\n", atomic_load(&hits) > 0 ? "yes" : "no",
	       atomic_load(&nonzero) == 0 ? "yes" : "no");
	return 0;
}
