/* A thread registers, reads and unregisters in a loop while another thread
 * sends it SIGUSR1 without pause; the handler takes a read-side section,
 * also while the thread is inside rcu_register_thread() (liburcu's docs ask
 * for signals to be blocked there; liburcu copes, as its section touches
 * only the thread's counter). Before: ours deadlocked on the library's
 * first initialisation (the handler waited for the domain that the
 * interrupted registration was making), or aborted on the registration's
 * thread-local list borrowed twice. Usage: signal_in_register [init]
 * (init: the library is initialised by a registration before the storm). */
#include "common.h"
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#define MAGIC 0x600dc0deUL
#define POISON 0xdeadbeefUL
#define ROUNDS 20000

struct obj { unsigned long magic; };
static struct obj *gp;
static atomic_long bad;
static atomic_int stop;
static __thread volatile int may_read;
static pthread_t target;

static void handler(int sig)
{
	(void)sig;
	if (!may_read)
		return;
	rcu_read_lock();
	if (rcu_dereference(gp)->magic != MAGIC)
		atomic_fetch_add(&bad, 1);
	rcu_read_unlock();
}

static void *registers(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		may_read = 1; /* also inside rcu_register_thread() */
		rcu_register_thread();
		rcu_read_lock();
		if (rcu_dereference(gp)->magic != MAGIC)
			atomic_fetch_add(&bad, 1);
		rcu_read_unlock();
		may_read = 0;
		rcu_unregister_thread();
	}
	atomic_store(&stop, 1);
	return NULL;
}

static void *writer(void *arg)
{
	(void)arg;
	rcu_register_thread();
	while (!atomic_load(&stop)) {
		struct obj *n = malloc(sizeof(*n));
		CHECK(n);
		n->magic = MAGIC;
		rcu_read_lock(); /* a reader of its own, as in readers_writers */
		rcu_read_unlock();
		struct obj *old = rcu_xchg_pointer(&gp, n);
		synchronize_rcu();
		old->magic = POISON;
		free(old);
	}
	rcu_unregister_thread();
	return NULL;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	gp = malloc(sizeof(*gp));
	CHECK(gp);
	gp->magic = MAGIC;
	if (argc > 1 && !strcmp(argv[1], "init")) {
		rcu_register_thread();
		rcu_unregister_thread();
	}
	pthread_t w;
	CHECK(pthread_create(&target, NULL, registers, NULL) == 0);
	CHECK(pthread_create(&w, NULL, writer, NULL) == 0);
	for (long i = 0; !atomic_load(&stop); i++) {
		pthread_kill(target, SIGUSR1);
		if (i % 8 == 0)
			sched_yield();
	}
	CHECK(pthread_join(target, NULL) == 0);
	CHECK(pthread_join(w, NULL) == 0);
	printf("poisoned reads %ld\n", atomic_load(&bad));
	free(gp);
	return 0;
}
