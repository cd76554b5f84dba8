/* fork() without call_rcu_before_fork / _after_fork_*, while another
 * thread of the parent is inside rcu_read_lock(): that reader is copied
 * into the child's registry, but its thread does not exist there, so its
 * section never ends and the child's synchronize_rcu() can never return.
 * liburcu hangs silently; the drop-in must hang too (never end the grace
 * period under that reader) but say why at once, naming the fork hooks.
 *
 * Prints the child's fate ("hung": killed by the parent after WAIT_MS
 * with synchronize_rcu() not returned) and, with argument "stderr", copies
 * what the child wrote to stderr meanwhile after a "--- child stderr"
 * line (the parent reads it through a pipe). */
#include "common.h"
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 3000

static volatile int in_section, leave;

static void *reader(void *arg)
{
	(void)arg;
	rcu_register_thread();
	rcu_read_lock();
	__atomic_store_n(&in_section, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&leave, __ATOMIC_SEQ_CST))
		poll(NULL, 0, 1);
	rcu_read_unlock();
	rcu_unregister_thread();
	return NULL;
}

int main(int argc, char **argv)
{
	int show_stderr = argc > 1 && strcmp(argv[1], "stderr") == 0;
	pthread_t t;
	int errpipe[2], donepipe[2];

	rcu_register_thread();
	synchronize_rcu(); /* grace periods work before the fork */
	CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
	while (!__atomic_load_n(&in_section, __ATOMIC_SEQ_CST))
		poll(NULL, 0, 1);
	CHECK(pipe(errpipe) == 0 && pipe(donepipe) == 0);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		dup2(errpipe[1], 2);
		close(errpipe[0]);
		close(donepipe[0]);
		synchronize_rcu(); /* waits on the parent's reader */
		CHECK(write(donepipe[1], "r", 1) == 1);
		_exit(0);
	}
	close(errpipe[1]);
	close(donepipe[1]);
	/* The child's synchronize_rcu returning would be wrong: the reader
	 * never left its section in the child. */
	struct pollfd p = { .fd = donepipe[0], .events = POLLIN };
	int returned = poll(&p, 1, WAIT_MS) == 1 && (p.revents & POLLIN);
	kill(pid, SIGKILL);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	printf("%s\n", returned ? "synchronize_rcu returned" : "hung");
	if (show_stderr) {
		char buf[4096];
		ssize_t n;
		printf("--- child stderr\n");
		fflush(stdout);
		while ((n = read(errpipe[0], buf, sizeof(buf))) > 0)
			fwrite(buf, 1, (size_t)n, stdout);
	}
	__atomic_store_n(&leave, 1, __ATOMIC_SEQ_CST);
	CHECK(pthread_join(t, NULL) == 0);
	synchronize_rcu(); /* the parent's grace periods still work */
	rcu_unregister_thread();
	return 0;
}
