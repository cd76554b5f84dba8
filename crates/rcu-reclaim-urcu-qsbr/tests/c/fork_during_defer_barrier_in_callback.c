/* A fork through the hooks while a call_rcu callback is about to call
 * rcu_defer_barrier(): call_rcu_before_fork waits for the call_rcu thread
 * to finish its batch, and held the defer_rcu flush lock meanwhile, which
 * the callback waited for (before: a silent deadlock). liburcu's hooks
 * take no defer_rcu lock, but liburcu-qsbr deadlocks here all the same:
 * its online call_rcu thread waits online for its defer mutex, whose
 * holder waits for it to pass a quiescent state. Run against ours only. */
#include "common.h"
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int in_callback;
static atomic_long ran;
static struct rcu_head head;

static void deferred(void *p)
{
	(void)p;
	atomic_fetch_add(&ran, 1);
}

static void flushing_callback(struct rcu_head *h)
{
	(void)h;
	atomic_store(&in_callback, 1);
	usleep(100000); /* call_rcu_before_fork is waiting for this batch */
	rcu_defer_barrier();
	atomic_fetch_add(&ran, 1);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	rcu_register_thread();
	rcu_defer_register_thread();
	defer_rcu(deferred, NULL);
	call_rcu(&head, flushing_callback);
	rcu_thread_offline();
	while (!atomic_load(&in_callback))
		usleep(1000);
	call_rcu_before_fork();
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		call_rcu_after_fork_child();
		printf("child: forked after the callback's barrier\n");
		_exit(0);
	}
	call_rcu_after_fork_parent();
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	rcu_barrier();
	printf("parent: callback and deferred call ran: %ld\n", atomic_load(&ran));
	rcu_thread_online();
	rcu_defer_unregister_thread();
	rcu_unregister_thread();
	return 0;
}
