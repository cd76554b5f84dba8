/* A reader thread registers (online), reports no quiescent state for
 * 200 ms and exits without rcu_unregister_thread, while the main thread
 * waits in synchronize_rcu. The drop-in unregisters a thread at its exit,
 * so the grace period must end right after it (liburcu keeps the dead
 * thread registered and waits for ever). Exits 1 if it took over 2 s.
 * Built with and without _LGPL_SOURCE. */
#include "common.h"
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static volatile int ready;

static void *reader(void *arg)
{
	(void)arg;
	rcu_register_thread();
	ready = 1;
	usleep(200000);
	return NULL;
}

int main(void)
{
	pthread_t t;
	CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
	while (!ready)
		usleep(100);
	double start = now();
	synchronize_rcu();
	double took = now() - start;
	pthread_join(t, NULL);
	printf("synchronize_rcu returned\n");
	if (took > 2.0) {
		fprintf(stderr, "synchronize_rcu took %.3f s\n", took);
		return 1;
	}
	return 0;
}
