/* A lone call_rcu runs without a barrier; synchronize_rcu with no thread
 * registered returns (liburcu's early return), and once a reader is
 * registered it waits for the reader's section, including a reader that
 * registered after the updater's last synchronize_rcu. */
#include "common.h"
#include <poll.h>
#include <stdatomic.h>

static atomic_int ran;

static void mark(struct rcu_head *head)
{
	(void)head;
	atomic_fetch_add(&ran, 1);
}

static int *shared;
static atomic_int entered, leaving, go;
static int saw;

static void *reader(void *arg)
{
	(void)arg;
	while (!atomic_load(&go))
		poll(NULL, 0, 1);
	rcu_register_thread();
	rcu_read_lock();
	int *p = rcu_dereference(shared);
	atomic_store(&entered, 1);
	poll(NULL, 0, 50);
	saw = *p;
	atomic_store(&leaving, 1);
	rcu_read_unlock();
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	/* No thread registered: returns, many times over. */
	for (int i = 0; i < 1000; i++)
		synchronize_rcu();

	/* Lone callbacks, each awaited by polling (no barrier). */
	static struct rcu_head head;
	int lone = 0;
	rcu_register_thread();
	for (int i = 0; i < 20; i++) {
		atomic_store(&ran, 0);
		call_rcu(&head, mark);
		while (!atomic_load(&ran))
			poll(NULL, 0, 1);
		lone++;
	}
	rcu_unregister_thread();

	/* A reader that registers after the last grace period. */
	int *a = malloc(sizeof(int)), *b = malloc(sizeof(int));
	*a = 1;
	*b = 2;
	rcu_set_pointer(&shared, a);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
	atomic_store(&go, 1);
	while (!atomic_load(&entered))
		poll(NULL, 0, 1);
	int *old = rcu_xchg_pointer(&shared, b);
	synchronize_rcu();
	int waited = atomic_load(&leaving);
	*old = -1;
	pthread_join(t, NULL);
	printf("lone callbacks ran %d of 20, synchronize_rcu waited for the reader %d, it read %d\n",
	       lone, waited, saw);
	free(old);
	free(b);
	return lone == 20 && waited && saw == 1 ? 0 : 1;
}
