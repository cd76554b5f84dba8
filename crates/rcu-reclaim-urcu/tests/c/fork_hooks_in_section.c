/* call_rcu_before_fork() inside a read-side section while a call_rcu
 * thread has a batch in hand: that batch's grace period waits for the
 * section, so the thread never pauses and liburcu's hook waits for ever,
 * without a word. The drop-in must say at once that the fork is prepared
 * inside a section, and must not hang: once the thread has waited 2 s
 * for that grace period, it ends the process naming the fix. The
 * scenario runs in a child process whose stderr comes back through a
 * pipe; the parent reads it until the child ends (for up to WAIT_MS),
 * then prints whether the child was told, and whether it ended by itself
 * (and, if it aborted, with the reason). The sleep only makes the batch
 * likely to be in hand; where the hook returns instead, the child exits
 * normally, and the first line has been written all the same. */
#include "common.h"
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 20000

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
	char buf[8192];
	size_t len = 0;
	int waited = 0;
	for (; waited < WAIT_MS; waited += 100) {
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fds[0], buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break; /* the child has ended */
		len += (size_t)n;
		buf[len] = 0;
	}
	buf[len] = 0;
	int told = strstr(buf, "prepared inside a read-side critical section") != NULL;
	int hung = waited >= WAIT_MS;
	if (hung)
		kill(pid, SIGKILL);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	printf("%s\n", told ? "told" : "not told");
	if (hung)
		printf("hung\n");
	else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		printf("ended by itself\n");
	else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT &&
		 strstr(buf, "cannot pause for the fork") &&
		 strstr(buf, "rcu_read_unlock()"))
		printf("ended by itself\n");
	else
		printf("ended without the reason: status %d\n%s", st, buf);
	return 0;
}
