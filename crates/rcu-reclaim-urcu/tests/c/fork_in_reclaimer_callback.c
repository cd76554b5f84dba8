/* fork() through liburcu's hooks from a call_rcu callback that
 * rcu_reclaim_run_callbacks() runs on the caller's thread, while more heads
 * wait on the same call_rcu_data: its call_rcu thread then waits for the
 * batch order the reclaimer holds, so it cannot pause, and
 * call_rcu_before_fork() waited for it for ever. Run against
 * rcu-reclaim-urcu only (an extension). Rounds go on until a callback ran
 * on the reclaimer's thread (the call_rcu thread may take a round's head
 * first). */
#include "common.h"
#include <stdatomic.h>
#include <unistd.h>
#include <sys/wait.h>
#include <rcu_reclaim.h>

#define ROUNDS 1000
#define MORE 8

static pthread_t main_thread;
static struct rcu_head head, more[MORE];
static atomic_int forked, more_ran;
static int child_status = -1;

static void count_more(struct rcu_head *h)
{
	(void)h;
	atomic_fetch_add(&more_ran, 1);
}

static void cb(struct rcu_head *h)
{
	(void)h;
	if (!pthread_equal(pthread_self(), main_thread) || atomic_load(&forked))
		return;
	atomic_store(&forked, 1);
	/* Heads for the call_rcu thread, which wakes for them. */
	for (int i = 0; i < MORE; i++)
		call_rcu(&more[i], count_more);
	/* Long enough for it to wake and wait for the batch order (it lets
	 * callbacks gather 5 ms first); a fork before it does passes. */
	usleep(50000);
	call_rcu_before_fork();
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		call_rcu_after_fork_child();
		rcu_barrier();
		_exit(0);
	}
	call_rcu_after_fork_parent();
	CHECK(waitpid(pid, &child_status, 0) == pid);
}

int main(void)
{
	main_thread = pthread_self();
	rcu_register_thread();
	for (int r = 0; r < ROUNDS && !atomic_load(&forked); r++) {
		call_rcu(&head, cb);
		CHECK(rcu_reclaim_run_callbacks(-1, 0) >= 0);
	}
	CHECK(atomic_load(&forked));
	rcu_barrier();
	CHECK(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0);
	printf("forked in a callback the reclaimer ran; later callbacks ran: %d\n",
	       atomic_load(&more_ran));
	rcu_unregister_thread();
	return 0;
}
