/* call_rcu_before_fork() inside a read-side section while a call_rcu
 * thread has a batch in hand: that batch's grace period waits for the
 * section, so the thread never pauses and the hook waits for ever (as
 * liburcu's does). The drop-in must say why at once; it said so only
 * after the threads had paused (never, here). The scenario runs in a
 * child process whose stderr comes back through a pipe; the parent reads
 * it for up to WAIT_MS, then ends the child and prints "told" or
 * "not told". The sleep only makes the hang likely: where the hook
 * returns instead, the line has been written all the same. */
#include "common.h"
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 5000

static void cb(struct rcu_head *h)
{
	free(h);
}

static void scenario(void)
{
	rcu_register_thread();
	call_rcu(malloc(sizeof(struct rcu_head)), cb);
	rcu_barrier(); /* the call_rcu thread exists */
	rcu_read_lock();
	call_rcu(malloc(sizeof(struct rcu_head)), cb);
	usleep(100 * 1000); /* its thread takes the batch */
	call_rcu_before_fork();
	call_rcu_after_fork_parent();
	rcu_read_unlock();
	_exit(0);
}

int main(void)
{
	int fds[2];
	CHECK(pipe(fds) == 0);
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 2);
		scenario();
	}
	close(fds[1]);
	char buf[4096];
	size_t len = 0;
	int told = 0;
	for (int waited = 0; !told && waited < WAIT_MS; waited += 100) {
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fds[0], buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = 0;
		told = strstr(buf, "prepared inside a read-side critical section") != NULL;
	}
	kill(pid, SIGKILL);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	printf("%s\n", told ? "told" : "not told");
	return 0;
}
