/* call_rcu_data_free() ("one") or free_all_cpu_call_rcu_data() ("all")
 * inside a read-side section, while the call_rcu_data's thread has a batch
 * in hand: that batch's grace period waits for the caller's section, so
 * the thread cannot stop before the section ends. liburcu waits for it
 * (for ever); the drop-in hung too once the thread had taken the batch
 * ("one"), and aborted ("all"). It must return, and run every callback
 * once the section has ended. The sleep only makes it likely that the
 * thread has taken the batch; the program passes either way. */
#include "common.h"
#include <string.h>
#include <unistd.h>

static int ran;

static void cb(struct rcu_head *h)
{
	__atomic_fetch_add(&ran, 1, __ATOMIC_SEQ_CST);
	free(h);
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	int all = !strcmp(argv[1], "all");
	struct call_rcu_data *c = NULL;
	rcu_register_thread();
	if (all) {
		CHECK(create_all_cpu_call_rcu_data(0) == 0);
	} else {
		c = create_call_rcu_data(0, -1);
		set_thread_call_rcu_data(c);
	}
	call_rcu(malloc(sizeof(struct rcu_head)), cb);
	rcu_barrier(); /* its thread exists and has run a batch */
	rcu_read_lock();
	call_rcu(malloc(sizeof(struct rcu_head)), cb);
	usleep(100 * 1000); /* its thread takes the batch */
	if (all) {
		free_all_cpu_call_rcu_data();
	} else {
		set_thread_call_rcu_data(NULL);
		call_rcu_data_free(c);
	}
	printf("freed inside the section\n");
	rcu_read_unlock();
	rcu_barrier();
	printf("callbacks run: %d\n", ran);
	rcu_unregister_thread();
	return 0;
}
