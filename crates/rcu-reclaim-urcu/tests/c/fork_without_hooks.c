/* fork() without call_rcu_before_fork / _after_fork_*: the child's
 * rcu_barrier cannot run what it queued (the call_rcu threads stayed in
 * the parent). liburcu hangs; the drop-in must abort with the reason.
 * Prints the child's fate: "aborted" or "exit N" or "hung". */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void cb(struct rcu_head *h)
{
	free(h);
}

int main(void)
{
	rcu_register_thread();
	call_rcu(malloc(sizeof(struct rcu_head)), cb);
	rcu_barrier(); /* the call_rcu thread exists in the parent */
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		alarm(10); /* a hang ends as SIGALRM */
		rcu_register_thread();
		call_rcu(malloc(sizeof(struct rcu_head)), cb);
		rcu_barrier();
		_exit(0);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	if (WIFSIGNALED(st))
		printf("%s\n", WTERMSIG(st) == SIGABRT ? "aborted" : WTERMSIG(st) == SIGALRM ? "hung" : "killed");
	else
		printf("exit %d\n", WEXITSTATUS(st));
	rcu_unregister_thread();
	return 0;
}
