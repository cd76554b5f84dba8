/* A call_rcu flood made while holding a mutex that the callbacks take (an
 * updater freeing nodes into a pool its own lock guards): past the
 * push-back mark each call_rcu waited for the next batch, up to 1 ms, for
 * a call_rcu thread blocked on the caller's mutex in its first callback,
 * so 200,000 calls took 110 s (liburcu: 15 ms). The watchdog (30 s) turns
 * that into a failure. Every callback runs once, after the unlock. */
#include "stress.h"

#define N 200000
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

static void locked_cb(struct rcu_head *h)
{
	pthread_mutex_lock(&pool_lock);
	cb(h);
	pthread_mutex_unlock(&pool_lock);
}

int main(void)
{
	arm(30);
	setvbuf(stdout, NULL, _IONBF, 0);
	rcu_register_thread();
	pthread_mutex_lock(&pool_lock);
	for (int i = 0; i < N; i++)
		call_rcu(&mknode()->h, locked_cb);
	pthread_mutex_unlock(&pool_lock);
	rcu_barrier();
	rcu_unregister_thread();
	return verdict("a flood under the callbacks' lock");
}
