/* Offline threads never hold up synchronize_rcu: registered threads go
 * offline and block (on a condition variable) for the whole test, others
 * go offline and online around short waits; a thread unregisters while
 * online. Every synchronize_rcu must return; a hang is a failure (the test
 * harness kills it). Also checks rcu_read_ongoing's transitions. */
#include "common.h"
#include <stdatomic.h>
#include <unistd.h>

#define SLEEPERS 3
#define SYNCS 200

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int done, ready;
static atomic_int stop;

static void *sleeper(void *arg)
{
	(void)arg;
	rcu_register_thread();
	rcu_thread_offline();
	pthread_mutex_lock(&lock);
	ready++;
	pthread_cond_broadcast(&cond);
	while (!done)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	rcu_thread_online();
	rcu_quiescent_state();
	rcu_unregister_thread();
	return NULL;
}

static void *blinker(void *arg)
{
	(void)arg;
	rcu_register_thread();
	while (!atomic_load(&stop)) {
		rcu_quiescent_state();
		rcu_thread_offline();
		usleep(100);
		rcu_thread_online();
	}
	rcu_unregister_thread();
	return NULL;
}

/* An event loop that comes back from a blocking wait with
 * rcu_quiescent_state() instead of rcu_thread_online(): liburcu's stores
 * the grace-period counter, which puts the thread online, so what it reads
 * next is protected until its next quiescent state. */
struct obj { long magic; };
static struct obj *shared;
static atomic_int holding, checked;

static void *returner(void *arg)
{
	(void)arg;
	rcu_register_thread();
	rcu_thread_offline();
	usleep(1000);
	rcu_quiescent_state();
	printf("quiescent state while offline: ongoing %d\n", !!rcu_read_ongoing());
	struct obj *o = rcu_dereference(shared);
	atomic_store(&holding, 1);
	usleep(100000);
	printf("returner read %s\n", o->magic == 42 ? "intact" : "freed memory");
	atomic_store(&checked, 1);
	rcu_quiescent_state();
	rcu_unregister_thread();
	return NULL;
}

static void *leaver(void *arg)
{
	(void)arg;
	rcu_register_thread();
	/* Unregisters online, without a quiescent state. */
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	printf("unregistered: ongoing %d\n", !!rcu_read_ongoing());
	synchronize_rcu();
	rcu_register_thread();
	printf("registered: ongoing %d\n", !!rcu_read_ongoing());
	rcu_thread_offline();
	printf("offline: ongoing %d\n", !!rcu_read_ongoing());
	rcu_thread_online();
	printf("online again: ongoing %d\n", !!rcu_read_ongoing());

	pthread_t s[SLEEPERS], b, l;
	for (int i = 0; i < SLEEPERS; i++)
		CHECK(pthread_create(&s[i], NULL, sleeper, NULL) == 0);
	pthread_mutex_lock(&lock);
	while (ready < SLEEPERS)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	CHECK(pthread_create(&b, NULL, blinker, NULL) == 0);
	CHECK(pthread_create(&l, NULL, leaver, NULL) == 0);
	pthread_join(l, NULL);

	/* Online: synchronize_rcu puts this thread offline for the wait. */
	for (int i = 0; i < SYNCS; i++) {
		synchronize_rcu();
		rcu_quiescent_state();
	}
	printf("online caller: %d grace periods with %d offline sleepers\n",
	       SYNCS, SLEEPERS);
	rcu_thread_offline();
	for (int i = 0; i < SYNCS; i++)
		synchronize_rcu();
	printf("offline caller: %d grace periods\n", SYNCS);
	printf("still offline after synchronize_rcu: ongoing %d\n",
	       !!rcu_read_ongoing());
	rcu_thread_online();

	atomic_store(&stop, 1);
	pthread_join(b, NULL);
	pthread_mutex_lock(&lock);
	done = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	for (int i = 0; i < SLEEPERS; i++)
		pthread_join(s[i], NULL);
	/* Unregister while offline. */
	rcu_thread_offline();
	rcu_unregister_thread();
	printf("unregistered again: ongoing %d\n", !!rcu_read_ongoing());
	synchronize_rcu();

	struct obj *o = malloc(sizeof *o);
	CHECK(o != NULL);
	o->magic = 42;
	rcu_assign_pointer(shared, o);
	pthread_t r;
	CHECK(pthread_create(&r, NULL, returner, NULL) == 0);
	while (!atomic_load(&holding))
		usleep(100);
	rcu_assign_pointer(shared, NULL);
	synchronize_rcu(); /* waits for the returner's next quiescent state */
	CHECK(atomic_load(&checked));
	o->magic = 0xdead;
	pthread_join(r, NULL);
	free(o);
	printf("done\n");
	return 0;
}
