/* errno across the library's calls: liburcu-qsbr's leave it alone. Ours
 * set it to 0 on the first registration (the domain, made then, reads
 * /sys), to ENOENT on the first call_rcu (the default call_rcu_data looks
 * for the cgroup's memory files), and to ETIMEDOUT in a quiescent state or
 * rcu_thread_offline that paid the push-back an online thread's call_rcu
 * owed under a flood (a futex wait that times out). Each call is made with
 * errno at 1234 and must leave it there. */
#include "common.h"
#include <errno.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void cb(struct rcu_head *head)
{
	pthread_mutex_lock(&lock);
	pthread_mutex_unlock(&lock);
	free(head);
}

static void dfn(void *p)
{
	free(p);
}

#define KEPT(call)                                                         \
	do {                                                               \
		errno = 1234;                                              \
		call;                                                      \
		printf("%-32s %s\n", #call,                                \
		       errno == 1234 ? "kept" : "changed");                \
	} while (0)

int main(void)
{
	int changed = 0;

	/* The program's first call. */
	KEPT(rcu_register_thread());
	KEPT(synchronize_rcu());
	KEPT(call_rcu(malloc(sizeof(struct rcu_head)), cb));
	KEPT(rcu_barrier());
	KEPT(create_call_rcu_data(0, -1));
	KEPT(rcu_defer_register_thread());
	KEPT(defer_rcu(dfn, malloc(8)));
	KEPT(rcu_defer_barrier());
	KEPT(rcu_defer_unregister_thread());

	/* A flood from this online thread while the callbacks wait for a
	 * lock it holds: ours makes its quiescent states pay the calls'
	 * push-back, each wait timing out. */
	pthread_mutex_lock(&lock);
	for (int i = 0; i < 60000; i++) {
		errno = 1234;
		call_rcu(malloc(sizeof(struct rcu_head)), cb);
		if (i % 64 == 0)
			rcu_quiescent_state();
		if (i % 1000 == 0) {
			rcu_thread_offline();
			rcu_thread_online();
		}
		if (errno != 1234)
			changed++;
	}
	pthread_mutex_unlock(&lock);
	printf("a flood's calls changed errno %d times\n", changed);
	KEPT(rcu_thread_offline());
	KEPT(rcu_barrier());
	KEPT(rcu_thread_online());
	KEPT(rcu_unregister_thread());
	return 0;
}
