/* The dynamically linked read-side pair: rcu_read_lock() + rcu_read_unlock()
 * through the shared library (no _LGPL_SOURCE), as a program built against
 * liburcu's headers calls them. Prints ns per pair (best of `rounds`).
 * Usage: read_pair ITERATIONS [ROUNDS] */
#define RCU_MEMBARRIER
#include <urcu.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000000L;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	double best = 1e18;

	rcu_register_thread();
	for (int r = 0; r < rounds; r++) {
		double t0 = now_ns();
		for (long i = 0; i < n; i++) {
			rcu_read_lock();
			rcu_read_unlock();
		}
		double dt = (now_ns() - t0) / n;
		if (dt < best)
			best = dt;
	}
	rcu_unregister_thread();
	printf("%.2f ns/pair\n", best);
	return 0;
}
