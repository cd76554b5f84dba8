/* Misuse, built with _LGPL_SOURCE: an rcu_read_unlock() without its
 * rcu_read_lock() on a registered thread takes the inlined reader count
 * below zero. liburcu does not check, and goes on. Before, the drop-in
 * took the thread for one inside a section that never ends: its
 * rcu_unregister_thread() and synchronize_rcu() said they were called
 * inside a read-side section, and it aborted. Now it says what happened,
 * sets the count back to zero, and goes on; balanced sections after it
 * work, and so do grace periods on another thread. */
#define _LGPL_SOURCE
#include "common.h"

static struct rcu_head head;
static int ran;

static void count(struct rcu_head *h)
{
	(void)h;
	__atomic_add_fetch(&ran, 1, __ATOMIC_SEQ_CST);
}

static void *other(void *arg)
{
	(void)arg;
	rcu_register_thread();
	synchronize_rcu();
	rcu_unregister_thread();
	return NULL;
}

int main(void)
{
	rcu_register_thread();
	rcu_read_unlock(); /* the stray unlock */
	synchronize_rcu();
	printf("synchronize_rcu returned\n");
	rcu_read_lock();
	rcu_read_unlock();
	pthread_t t;
	CHECK(pthread_create(&t, NULL, other, NULL) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	printf("another thread's synchronize_rcu returned\n");
	call_rcu(&head, count);
	rcu_barrier();
	printf("callbacks run: %d\n", __atomic_load_n(&ran, __ATOMIC_SEQ_CST));
	rcu_unregister_thread();
	printf("unregistered\n");
	return 0;
}
