/* Misuse where liburcu survives, crashes or asserts, and the drop-in
 * must not hang, crash or fail silently (each mode is one process):
 *   signal       call_rcu from a SIGALRM handler (every 100 us) while the
 *                main thread floods call_rcu, from the first call on (the
 *                handler interrupted the creation of the default
 *                call_rcu_data, or a push-back, and waited for the lock
 *                the interrupted call held: a silent hang; liburcu
 *                completes). Same output on both libraries.
 *   cpu_big      create_call_rcu_data(0, 100000): ours panicked in the
 *                call_rcu thread (CPU_SET past its 1024 bits) and aborted;
 *                liburcu runs it unbound. Same output on both.
 *   unlock_unreg an unbalanced rcu_read_unlock on a thread that never
 *                registered: liburcu goes on (its counter underflows where
 *                no grace period looks); ours aborted. Same output on both.
 *   null_func    call_rcu(head, NULL): liburcu crashes on its call_rcu
 *                thread later; ours dropped the callback silently (a NULL
 *                non-nullable fn pointer). Ours only: aborts, saying why.
 *   free_mine    call_rcu_data_free on the thread's own call_rcu_data,
 *                still installed, then call_rcu: liburcu crashes; ours
 *                used the freed call_rcu_data. Ours only: uninstalls it,
 *                saying so, and the callback runs on the default one.
 *   free_twice   call_rcu_data_free twice: liburcu double-frees. Ours
 *                only: the second is refused, saying so. */
#include "common.h"
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/time.h>

#define FLOOD 200000
#define MAX_SIG 100000

static atomic_long ran;
/* The signal may land on any thread (liburcu's call_rcu threads included;
 * the drop-in's block signals): each handler takes its own head. */
static atomic_long nsig;
static struct rcu_head sig_heads[MAX_SIG];
static struct rcu_head heads[FLOOD];

static void count(struct rcu_head *head)
{
	(void)head;
	atomic_fetch_add(&ran, 1);
}

static void on_alarm(int sig)
{
	(void)sig;
	long i = atomic_fetch_add(&nsig, 1);
	if (i < MAX_SIG)
		call_rcu(&sig_heads[i], count);
	else
		atomic_fetch_sub(&nsig, 1);
}

static void signal_mode(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
	struct itimerval every = { { 0, 100 }, { 0, 100 } };
	CHECK(setitimer(ITIMER_REAL, &every, NULL) == 0);
	for (int i = 0; i < FLOOD; i++)
		call_rcu(&heads[i], count);
	struct itimerval stop;
	memset(&stop, 0, sizeof(stop));
	CHECK(setitimer(ITIMER_REAL, &stop, NULL) == 0);
	rcu_barrier();
	CHECK(atomic_load(&nsig) > 0);
	CHECK(atomic_load(&ran) == FLOOD + atomic_load(&nsig));
	printf("callbacks queued from the handler and the flood all ran\n");
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	const char *m = argv[1];
	setvbuf(stdout, NULL, _IONBF, 0);
	if (!strcmp(m, "signal")) {
		signal_mode();
	} else if (!strcmp(m, "cpu_big")) {
		struct call_rcu_data *crdp = create_call_rcu_data(0, 100000);
		CHECK(crdp != NULL);
		set_thread_call_rcu_data(crdp);
		call_rcu(&heads[0], count);
		rcu_barrier();
		set_thread_call_rcu_data(NULL);
		synchronize_rcu();
		call_rcu_data_free(crdp);
		printf("callbacks run: %ld\n", atomic_load(&ran));
	} else if (!strcmp(m, "unlock_unreg")) {
		rcu_read_unlock();
		synchronize_rcu();
		printf("went on\n");
	} else if (!strcmp(m, "null_func")) {
		printf("queueing\n");
		call_rcu(&heads[0], NULL);
		rcu_barrier();
		printf("returned\n");
	} else if (!strcmp(m, "free_mine")) {
		struct call_rcu_data *crdp = create_call_rcu_data(0, -1);
		set_thread_call_rcu_data(crdp);
		call_rcu_data_free(crdp);
		CHECK(get_thread_call_rcu_data() == NULL);
		call_rcu(&heads[0], count);
		rcu_barrier();
		printf("callbacks run: %ld\n", atomic_load(&ran));
	} else if (!strcmp(m, "free_twice")) {
		struct call_rcu_data *crdp = create_call_rcu_data(0, -1);
		call_rcu_data_free(crdp);
		call_rcu_data_free(crdp);
		printf("second free returned\n");
	} else {
		CHECK(!"unknown mode");
	}
	return 0;
}
