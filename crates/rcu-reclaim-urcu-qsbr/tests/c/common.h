/* Shared by the C ABI tests: built against Debian's liburcu-dev 0.13
 * <urcu-qsbr.h> WITHOUT _LGPL_SOURCE (every RCU call but the empty inline
 * rcu_read_lock/unlock goes through the shared library; with -DDEBUG_RCU
 * those too), run against liburcu-qsbr.so.8 and against
 * rcu-reclaim-urcu-qsbr. Each program prints only results that must be
 * identical on both. */
#ifndef RCU_RECLAIM_URCU_QSBR_TEST_COMMON_H
#define RCU_RECLAIM_URCU_QSBR_TEST_COMMON_H

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <urcu-qsbr.h>

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: check failed: %s\n",       \
				__FILE__, __LINE__, #cond);                \
			exit(1);                                           \
		}                                                          \
	} while (0)

#endif
