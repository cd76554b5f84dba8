/* Nodes for signal handlers to queue (a handler must not malloc): each
 * thread refills a pool of its own, with every signal blocked while a
 * node joins it, and its handlers take from it. Include after stress.h. */
#ifndef RCU_RECLAIM_URCU_SIGNAL_POOL_H
#define RCU_RECLAIM_URCU_SIGNAL_POOL_H

#define POOL_MAX 64
static __thread struct node *pool[POOL_MAX];
static __thread volatile int pooln;

/* Fills this thread's pool up to `n` nodes (at most POOL_MAX). */
static inline void refill_to(int n)
{
	while (pooln < n) {
		struct node *node = mknode();
		sigset_t b, o;
		sigfillset(&b);
		pthread_sigmask(SIG_BLOCK, &b, &o);
		pool[pooln++] = node;
		pthread_sigmask(SIG_SETMASK, &o, NULL);
	}
}

/* Fills this thread's pool. */
static inline void refill(void) { refill_to(POOL_MAX); }

#endif
