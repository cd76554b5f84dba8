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
	printf("done\n");
	return 0;
}
