/* fork() with callbacks pending, from an online QSBR thread, through the
 * call_rcu fork hooks: the child runs the callbacks queued before the fork
 * and new ones, reads, reports quiescent states, waits for grace periods
 * and starts a reader thread; the parent goes on as before. Callbacks count
 * into a per-process counter, so each process must end at exactly the
 * number it queued. (Other threads are not registered at the fork: in
 * liburcu's child, a thread that was online at the fork would hold up
 * every grace period.) */
#include "common.h"
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#define BEFORE 20000
#define AFTER 1000

struct obj {
	struct rcu_head rcu;
};

static atomic_long invoked;

static void count(struct rcu_head *head)
{
	atomic_fetch_add(&invoked, 1);
	free(caa_container_of(head, struct obj, rcu));
}

static void queue(int n)
{
	for (int i = 0; i < n; i++) {
		struct obj *o = malloc(sizeof(*o));
		call_rcu(&o->rcu, count);
		if (i % 128 == 0)
			rcu_quiescent_state();
	}
}

static void *reader(void *arg)
{
	(void)arg;
	rcu_register_thread();
	for (int i = 0; i < 100; i++) {
		rcu_read_lock();
		rcu_read_unlock();
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
	return NULL;
}

static int child(void)
{
	call_rcu_after_fork_child();
	printf("child: ongoing %d\n", !!rcu_read_ongoing());
	fflush(stdout);
	rcu_read_lock();
	rcu_read_unlock();
	rcu_quiescent_state();
	synchronize_rcu();
	queue(AFTER);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
	pthread_join(t, NULL);
	rcu_barrier();
	long n = atomic_load(&invoked);
	printf("child: invoked %ld of %d\n", n, BEFORE + AFTER);
	fflush(stdout);
	rcu_unregister_thread();
	return n == BEFORE + AFTER ? 0 : 1;
}

int main(void)
{
	pthread_t t;
	CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
	pthread_join(t, NULL);
	rcu_register_thread();
	queue(BEFORE);
	call_rcu_before_fork();
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(child());
	call_rcu_after_fork_parent();
	CHECK(rcu_read_ongoing());
	queue(AFTER);
	rcu_barrier();
	int status;
	rcu_thread_offline(); /* blocking in waitpid */
	CHECK(waitpid(pid, &status, 0) == pid);
	rcu_thread_online();
	long n = atomic_load(&invoked);
	printf("parent: invoked %ld of %d, child exit %d\n", n, BEFORE + AFTER,
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	rcu_unregister_thread();
	return n == BEFORE + AFTER && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
