/* Shared by the stress programs: exactly-once accounting of callbacks
 * (each has an id; ran[id] counts its runs), a watchdog alarm() that
 * turns a hang into exit 2, and the verdict. Built against Debian's
 * liburcu-dev 0.13 headers; QSBR picks <urcu-qsbr.h>. Only verdicts go to
 * stdout (identical on both libraries); counts go to stderr. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <sys/wait.h>
#ifdef QSBR
#include <urcu-qsbr.h>
#else
#define RCU_MEMBARRIER
#include <urcu.h>
#endif

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)

#define MAXCB (1 << 22)
static atomic_uchar ran[MAXCB];
static atomic_long next_id, run_count, double_run;

struct node { struct rcu_head h; long id; };

static inline void cb(struct rcu_head *h)
{
	struct node *n = caa_container_of(h, struct node, h);
	if (atomic_fetch_add(&ran[n->id], 1) != 0)
		atomic_fetch_add(&double_run, 1);
	atomic_fetch_add(&run_count, 1);
	n->id = -1;
	free(n);
}

static inline struct node *mknode(void)
{
	long id = atomic_fetch_add(&next_id, 1);
	if (id >= MAXCB) { fprintf(stderr, "too many callbacks\n"); exit(3); }
	struct node *n = malloc(sizeof(*n));
	n->id = id;
	return n;
}

static inline void watchdog(int s) { (void)s; static const char m[] = "HANG: watchdog fired\n"; write(2, m, sizeof m - 1); _exit(2); }
static inline void arm(int secs) { signal(SIGALRM, watchdog); alarm(secs); }

/* Waits for the child `p` of fork number `f`: 1 if it exited with 0, else
 * says how it ended and returns 0. */
static inline int child_ok(pid_t p, int f)
{
	int st;
	CHECK(waitpid(p, &st, 0) == p);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 1;
	fprintf(stderr, "child %d: status %x\n", f, st);
	return 0;
}

static inline double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

/* Every id below next_id ran exactly once: prints a verdict, returns 0 if ok. */
static inline int verdict(const char *what)
{
	long n = atomic_load(&next_id), lost = 0, dbl = 0;
	for (long i = 0; i < n; i++) {
		int v = atomic_load(&ran[i]);
		if (v == 0) lost++;
		else if (v > 1) dbl++;
	}
	if (lost || dbl || atomic_load(&double_run)) {
		printf("%s: FAIL lost %ld double %ld of %ld\n", what, lost, dbl, n);
		fprintf(stderr, "%s: FAIL lost %ld double %ld of %ld\n", what, lost, dbl, n);
		return 1;
	}
	printf("%s: ok\n", what);
	fprintf(stderr, "%s: %ld callbacks\n", what, n);
	return 0;
}
