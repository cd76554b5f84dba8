/* synchronize_rcu between call_rcu_before_fork() and
 * call_rcu_after_fork_parent() on the forking thread, online before the
 * hooks (liburcu-qsbr runs grace periods there: its hooks pause only the
 * call_rcu threads). Ours aborted on a panic of the domain, which the
 * hooks hold stopped. Same output on both. */
#include "common.h"
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_long ran;
static struct rcu_head heads[3];

static void count(struct rcu_head *head)
{
	(void)head;
	atomic_fetch_add(&ran, 1);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	alarm(30);
	rcu_register_thread();
	call_rcu(&heads[0], count);
	rcu_thread_offline();
	rcu_barrier();
	rcu_thread_online();
	call_rcu_before_fork();
	synchronize_rcu();
	printf("synchronize_rcu in the window returned\n");
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		call_rcu_after_fork_child();
		call_rcu(&heads[1], count);
		rcu_thread_offline();
		rcu_barrier();
		_exit(atomic_load(&ran) == 2 ? 0 : 3);
	}
	call_rcu_after_fork_parent();
	call_rcu(&heads[2], count);
	rcu_thread_offline();
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	rcu_barrier();
	rcu_thread_online();
	rcu_unregister_thread();
	printf("child %d, parent ran %ld\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st),
	       atomic_load(&ran));
	return 0;
}
