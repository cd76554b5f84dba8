/* Twenty threads each make and install their own call_rcu_data, queue on
 * it, and end; a pthread key destructor of the program's frees it, finding
 * it with get_thread_call_rcu_data() (liburcu keeps a thread's choice
 * until the thread is gone, after every key destructor). The key is made
 * after a first thread installed one (a library's own key, made then,
 * comes first in each round of destructors). Every callback runs once,
 * and no call_rcu thread is left behind. */
#include "stress.h"
#include <dirent.h>
static pthread_key_t key;
static atomic_int found, missing;
static void dtor(void *p)
{
	(void)p;
	struct call_rcu_data *c = get_thread_call_rcu_data();
	if (!c) { atomic_fetch_add(&missing, 1); return; }
	atomic_fetch_add(&found, 1);
	set_thread_call_rcu_data(NULL);
	call_rcu_data_free(c);
}
static void *thr(void *a)
{
	(void)a;
	rcu_register_thread();
	set_thread_call_rcu_data(create_call_rcu_data(0, -1));
	for (int i = 0; i < 10; i++) call_rcu(&mknode()->h, cb);
	rcu_unregister_thread();
	pthread_setspecific(key, (void *)1);
	return NULL;
}
static int threads(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	while (readdir(d)) n++;
	closedir(d);
	return n - 2; /* . and .. */
}
static void *first(void *a)
{
	(void)a;
	struct call_rcu_data *c = create_call_rcu_data(0, -1);
	set_thread_call_rcu_data(c);
	set_thread_call_rcu_data(NULL);
	call_rcu_data_free(c);
	return NULL;
}
int main(void)
{
	arm(60);
	pthread_t t0;
	CHECK(pthread_create(&t0, NULL, first, NULL) == 0);
	CHECK(pthread_join(t0, NULL) == 0);
	CHECK(pthread_key_create(&key, dtor) == 0);
	rcu_register_thread();
	(void)get_default_call_rcu_data();
	rcu_barrier();
	int before = threads();
	for (int i = 0; i < 20; i++) {
		pthread_t t;
		CHECK(pthread_create(&t, NULL, thr, NULL) == 0);
		CHECK(pthread_join(t, NULL) == 0);
	}
	rcu_barrier();
	int left = threads() - before;
	fprintf(stderr, "destructor found its crdp %d times, NULL %d times; threads left %d\n",
		atomic_load(&found), atomic_load(&missing), left);
	printf("destructors found their call_rcu_data: %s\n", atomic_load(&missing) ? "no" : "yes");
	printf("call_rcu threads left behind: %s\n", left > 2 ? "yes" : "no");
	rcu_unregister_thread();
	return verdict("call_rcu_data freed in key destructors") || atomic_load(&missing) || left > 2;
}
