/* Read-side sections taken where the library's own thread-locals are
 * already destroyed: a pthread key destructor (run after every
 * thread-local destructor of the exiting thread) and an atexit handler
 * (run after the main thread's). liburcu allows both. In the key
 * destructor a reader holds an object while the main thread replaces it,
 * waits with synchronize_rcu and poisons it: the reader must never see the
 * poison. Before: rcu_read_lock there aborted ("panic in a function that
 * cannot unwind"). */
#include "common.h"
#include <poll.h>
#include <stdatomic.h>
#include <unistd.h>

#define THREADS 20
#define MAGIC 0x600dL
#define POISON 0xdeadL

struct obj {
	long magic;
};

static struct obj *gp;
static pthread_key_t key;
static atomic_int in_section, poisoned_seen, sections;
static struct rcu_head at_exit_head;
static atomic_int at_exit_ran;

static void destructor(void *arg)
{
	(void)arg;
	rcu_read_lock();
	rcu_read_lock(); /* nested */
	struct obj *o = rcu_dereference(gp);
	atomic_store(&in_section, 1);
	poll(NULL, 0, 20); /* the writer's synchronize_rcu waits meanwhile */
	if (o->magic != MAGIC)
		atomic_fetch_add(&poisoned_seen, 1);
	rcu_read_unlock();
	rcu_read_unlock();
	atomic_fetch_add(&sections, 1);
	rcu_unregister_thread();
}

static void *reader(void *arg)
{
	(void)arg;
	rcu_register_thread();
	CHECK(pthread_setspecific(key, &key) == 0);
	return NULL; /* the destructor reads and unregisters */
}

static void mark(struct rcu_head *head)
{
	(void)head;
	atomic_store(&at_exit_ran, 1);
}

static void at_exit(void)
{
	rcu_read_lock();
	CHECK(rcu_dereference(gp)->magic == MAGIC);
	rcu_read_unlock();
	call_rcu(&at_exit_head, mark);
	synchronize_rcu();
	rcu_barrier();
	printf("atexit: section, call_rcu and rcu_barrier: callback ran %d\n",
	       atomic_load(&at_exit_ran));
	fflush(stdout);
}

int main(void)
{
	CHECK(pthread_key_create(&key, destructor) == 0);
	gp = malloc(sizeof(*gp));
	gp->magic = MAGIC;
	for (int i = 0; i < THREADS; i++) {
		pthread_t t;
		atomic_store(&in_section, 0);
		CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
		while (!atomic_load(&in_section))
			poll(NULL, 0, 1);
		struct obj *fresh = malloc(sizeof(*fresh));
		fresh->magic = MAGIC;
		struct obj *old = rcu_xchg_pointer(&gp, fresh);
		synchronize_rcu();
		old->magic = POISON;
		pthread_join(t, NULL);
		free(old);
	}
	printf("sections in key destructors: %d, poisoned objects seen: %d\n",
	       atomic_load(&sections), atomic_load(&poisoned_seen));
	CHECK(atomic_load(&poisoned_seen) == 0);
	rcu_register_thread();
	rcu_read_lock();
	rcu_read_unlock();
	CHECK(atexit(at_exit) == 0);
	return 0; /* exit() destroys this thread's thread-locals, then at_exit */
}
