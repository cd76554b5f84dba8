/* Calls made on the forking thread between call_rcu_before_fork() and
 * call_rcu_after_fork_parent() / _child() (the "window"), one mode a
 * process:
 *   sync      synchronize_rcu, rcu_register_thread and
 *             rcu_unregister_thread in the window (liburcu runs grace
 *             periods there: its hooks pause only the call_rcu threads),
 *             then fork; parent and child use call_rcu after their hook.
 *             Ours aborted on a panic of the domain, which the hooks hold
 *             stopped. Same output on both.
 *   twice     call_rcu_before_fork twice (liburcu deadlocks on its own
 *             lock, silently; ours did too): the second is refused, saying
 *             so, and the first's after_fork_parent ends the window.
 *   barrier   rcu_barrier in the window (liburcu waits for its paused
 *             call_rcu threads for ever): returns at once, saying why.
 *   first     the first call_rcu of the process in the window (it makes
 *             the default call_rcu_data, whose list the window holds:
 *             both libraries hung silently): aborts, naming the window.
 *   child     synchronize_rcu in the child before after_fork_child:
 *             aborts, naming the hook.
 * A mode that returns prints its results; a hang ends as SIGALRM. */
#include "common.h"
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_long ran;
static struct rcu_head heads[4];

static void count(struct rcu_head *head)
{
	(void)head;
	atomic_fetch_add(&ran, 1);
}

/* Forks and resolves the window; the child queues and waits for one
 * callback. Returns the child's exit status. */
static int fork_and_check(void)
{
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		call_rcu_after_fork_child();
		call_rcu(&heads[2], count);
		rcu_barrier();
		synchronize_rcu();
		_exit(atomic_load(&ran) >= 1 ? 0 : 3);
	}
	call_rcu_after_fork_parent();
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	const char *m = argv[1];
	setvbuf(stdout, NULL, _IONBF, 0);
	alarm(30);
	if (!strcmp(m, "first")) {
		call_rcu_before_fork();
		printf("queueing\n");
		call_rcu(&heads[0], count);
		printf("returned\n");
		return 0;
	}
	/* The default call_rcu_data exists before the window. */
	call_rcu(&heads[0], count);
	rcu_barrier();
	if (!strcmp(m, "sync")) {
		call_rcu_before_fork();
		synchronize_rcu();
		rcu_register_thread();
		synchronize_rcu();
		rcu_unregister_thread();
		printf("synchronize_rcu and registration in the window returned\n");
		int child = fork_and_check();
		call_rcu(&heads[1], count);
		rcu_barrier();
		printf("child %d, parent ran %ld\n", child, atomic_load(&ran));
	} else if (!strcmp(m, "twice")) {
		call_rcu_before_fork();
		call_rcu_before_fork();
		printf("second before_fork returned\n");
		int child = fork_and_check();
		call_rcu(&heads[1], count);
		rcu_barrier();
		printf("child %d, parent ran %ld\n", child, atomic_load(&ran));
	} else if (!strcmp(m, "barrier")) {
		call_rcu_before_fork();
		rcu_barrier();
		printf("barrier in the window returned\n");
		int child = fork_and_check();
		call_rcu(&heads[1], count);
		rcu_barrier();
		printf("child %d, parent ran %ld\n", child, atomic_load(&ran));
	} else if (!strcmp(m, "child")) {
		call_rcu_before_fork();
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			synchronize_rcu();
			_exit(0);
		}
		call_rcu_after_fork_parent();
		int st;
		CHECK(waitpid(pid, &st, 0) == pid);
		printf("child %s\n", WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT ? "aborted" : "did not abort");
	} else {
		CHECK(!"unknown mode");
	}
	return 0;
}
