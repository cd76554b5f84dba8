/* fork() through the call_rcu hooks, again and again, while two threads
 * flood call_rcu: their push-back and their wake-ups of the call_rcu
 * thread take the call_rcu_data's lock, so a fork often finds it held by
 * a thread that does not exist in the child. Every child must get a
 * working call_rcu and rcu_barrier (before: the child's
 * call_rcu_after_fork_child waited for that lock forever). Run against
 * rcu-reclaim-urcu only: liburcu's own child hangs here too. */
#include "common.h"
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#define FLOODERS 2
#define FORKS 100

static atomic_int stop;
static atomic_long ran;

static void count_and_free(struct rcu_head *head)
{
	atomic_fetch_add(&ran, 1);
	free(head);
}

static void *flood(void *arg)
{
	(void)arg;
	rcu_register_thread();
	while (!atomic_load(&stop)) {
		struct rcu_head *head = malloc(sizeof(*head));
		call_rcu(head, count_and_free);
	}
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	pthread_t t[FLOODERS];
	for (int i = 0; i < FLOODERS; i++)
		CHECK(pthread_create(&t[i], NULL, flood, NULL) == 0);
	for (int i = 0; i < FORKS; i++) {
		call_rcu_before_fork();
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			call_rcu_after_fork_child();
			long before = atomic_load(&ran);
			struct rcu_head *head = malloc(sizeof(*head));
			call_rcu(head, count_and_free);
			rcu_barrier();
			_exit(atomic_load(&ran) > before ? 0 : 2);
		}
		call_rcu_after_fork_parent();
		int status;
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < FLOODERS; i++)
		pthread_join(t[i], NULL);
	rcu_barrier();
	printf("%d children forked during a call_rcu flood ran call_rcu and rcu_barrier\n", FORKS);
	return 0;
}
