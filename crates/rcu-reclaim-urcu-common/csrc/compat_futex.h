/*
 * liburcu's futex fallbacks (urcu/futex.h), which liburcu's inlined read
 * side names: its wake-up of a waiting grace period calls
 * compat_futex_async() or compat_futex_noasync() should the futex system
 * call fail with ENOSYS. Both drop-ins export them (as liburcu's flavors
 * each do): each one's csrc/lgpl_reader.c includes this file once. No
 * grace period of the drop-ins waits on a futex word of liburcu's, so the
 * inlined read side never gets this far; these follow liburcu's
 * compat_futex.c all the same.
 */
#ifndef RCU_RECLAIM_URCU_COMPAT_FUTEX_H
#define RCU_RECLAIM_URCU_COMPAT_FUTEX_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <poll.h>
#include <time.h>
#include <linux/futex.h>

/* Their lock and condition variable, exported weak under liburcu's names,
 * as liburcu's compat_futex.c exports them (liburcu-common and each flavor
 * define them; the first loaded wins). */
__attribute__((weak)) pthread_mutex_t __urcu_compat_futex_lock = PTHREAD_MUTEX_INITIALIZER;
__attribute__((weak)) pthread_cond_t __urcu_compat_futex_cond = PTHREAD_COND_INITIALIZER;

/* Waits on or wakes the futex word uaddr with a mutex and a condition
 * variable (FUTEX_WAIT and FUTEX_WAKE only; a timeout is relative, as
 * for the system call). */
int compat_futex_noasync(int32_t *uaddr, int op, int32_t val,
		const struct timespec *timeout, int32_t *uaddr2, int32_t val3)
{
	int ret = 0;

	(void)uaddr2;
	(void)val3;
	pthread_mutex_lock(&__urcu_compat_futex_lock);
	switch (op) {
	case FUTEX_WAIT: {
		struct timespec until;
		if (timeout) {
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += timeout->tv_sec;
			until.tv_nsec += timeout->tv_nsec;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
		}
		while (__atomic_load_n(uaddr, __ATOMIC_SEQ_CST) == val) {
			if (!timeout) {
				pthread_cond_wait(&__urcu_compat_futex_cond,
					&__urcu_compat_futex_lock);
			} else if (pthread_cond_timedwait(&__urcu_compat_futex_cond,
					&__urcu_compat_futex_lock, &until) == ETIMEDOUT) {
				errno = ETIMEDOUT;
				ret = -1;
				break;
			}
		}
		break;
	}
	case FUTEX_WAKE:
		pthread_cond_broadcast(&__urcu_compat_futex_cond);
		break;
	default:
		errno = EINVAL;
		ret = -1;
	}
	pthread_mutex_unlock(&__urcu_compat_futex_lock);
	return ret;
}

/* The async-signal-safe variant: FUTEX_WAIT polls the word every 10 ms,
 * FUTEX_WAKE is a full fence (the waiter polls). */
int compat_futex_async(int32_t *uaddr, int op, int32_t val,
		const struct timespec *timeout, int32_t *uaddr2, int32_t val3)
{
	(void)timeout;
	(void)uaddr2;
	(void)val3;
	switch (op) {
	case FUTEX_WAIT:
		while (__atomic_load_n(uaddr, __ATOMIC_SEQ_CST) == val)
			(void)poll(NULL, 0, 10);
		return 0;
	case FUTEX_WAKE:
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		return 0;
	default:
		errno = EINVAL;
		return -1;
	}
}

#endif
