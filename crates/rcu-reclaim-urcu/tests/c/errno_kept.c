/* errno across the library's calls: liburcu's leave it alone. Ours set it
 * to 0 on the program's first call (the domain, made then, reads /sys),
 * to ENOENT on the first call_rcu (the default call_rcu_data looks for the
 * cgroup's memory files), and to ETIMEDOUT in a call_rcu held back under a
 * flood (a futex wait that times out): a program that read errno after
 * such a call, or whose signal handler called call_rcu, got ours.
 * Each call is made with errno at 1234 and must leave it there. */
#include "common.h"
#include <errno.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int changed;

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

static void *thread(void *arg)
{
	(void)arg;
	KEPT(rcu_register_thread());
	KEPT(synchronize_rcu());
	KEPT(rcu_unregister_thread());
	return NULL;
}

int main(void)
{
	/* The program's first call, made on an unregistered thread. */
	KEPT(rcu_read_lock());
	KEPT(rcu_read_unlock());
	KEPT(rcu_register_thread());
	KEPT(synchronize_rcu());
	KEPT(call_rcu(malloc(sizeof(struct rcu_head)), cb));
	KEPT(rcu_barrier());
	KEPT(create_call_rcu_data(0, -1));
	KEPT(create_all_cpu_call_rcu_data(0));
	KEPT(free_all_cpu_call_rcu_data());
	KEPT(rcu_defer_register_thread());
	KEPT(defer_rcu(dfn, malloc(8)));
	KEPT(rcu_defer_barrier());
	KEPT(rcu_defer_unregister_thread());
	KEPT(call_rcu_before_fork());
	KEPT(call_rcu_after_fork_parent());
	pthread_t t;
	CHECK(pthread_create(&t, NULL, thread, NULL) == 0);
	CHECK(pthread_join(t, NULL) == 0);

	/* A flood while the callbacks wait for a lock this thread holds:
	 * ours holds the calls past its mark back, each wait timing out. */
	pthread_mutex_lock(&lock);
	for (int i = 0; i < 60000; i++) {
		errno = 1234;
		call_rcu(malloc(sizeof(struct rcu_head)), cb);
		if (errno != 1234)
			changed++;
	}
	pthread_mutex_unlock(&lock);
	printf("call_rcu in a flood changed errno %d times\n", changed);
	KEPT(rcu_barrier());
	KEPT(rcu_unregister_thread());
	return 0;
}
