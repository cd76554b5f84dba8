/* fork() from a call_rcu callback, with liburcu's fork hooks installed by
 * pthread_atfork as its documentation recommends (a callback that spawns
 * a helper process). call_rcu_before_fork() pauses every call_rcu thread,
 * the caller's own among them, which runs the callback: liburcu waits for
 * itself for ever, and so did we. Now the caller's own thread counts as
 * paused where it is: the child runs call_rcu and rcu_barrier and exits;
 * the parent's callbacks, queued before and after, each run once. */
#include <sys/wait.h>
#include "stress.h"

#define BEFORE 100
#define AFTER 100
static atomic_int child_status = -1;

static void child_cb(struct rcu_head *h) { (void)h; }

static void forking_cb(struct rcu_head *h)
{
	free(h);
	pid_t pid = fork(); /* the atfork hooks run here */
	CHECK(pid >= 0);
	if (pid == 0) {
		static struct rcu_head mine;
		call_rcu(&mine, child_cb);
		rcu_barrier();
		synchronize_rcu();
		_exit(0);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	atomic_store(&child_status, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

int main(void)
{
	arm(20);
	setvbuf(stdout, NULL, _IONBF, 0);
	CHECK(pthread_atfork(call_rcu_before_fork, call_rcu_after_fork_parent,
			     call_rcu_after_fork_child) == 0);
	rcu_register_thread();
	for (int i = 0; i < BEFORE; i++)
		call_rcu(&mknode()->h, cb);
	call_rcu(malloc(sizeof(struct rcu_head)), forking_cb);
	for (int i = 0; i < AFTER; i++)
		call_rcu(&mknode()->h, cb);
	rcu_barrier();
	printf("child exit status %d\n", atomic_load(&child_status));
	for (int i = 0; i < AFTER; i++)
		call_rcu(&mknode()->h, cb);
	rcu_barrier();
	rcu_unregister_thread();
	return verdict("callbacks around a fork in a callback");
}
