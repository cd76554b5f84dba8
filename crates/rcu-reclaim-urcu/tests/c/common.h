/* Shared by the C ABI tests: built against Debian's liburcu-dev 0.13
 * headers WITHOUT _LGPL_SOURCE (every RCU call goes through the shared
 * library), run against liburcu-memb.so.8 and against rcu-reclaim-urcu.
 * Each program prints only results that must be identical on both. */
#ifndef RCU_RECLAIM_URCU_TEST_COMMON_H
#define RCU_RECLAIM_URCU_TEST_COMMON_H

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#define RCU_MEMBARRIER /* the memb flavor, with the rcu_* names mapped */
#include <urcu.h>

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: check failed: %s\n",       \
				__FILE__, __LINE__, #cond);                \
			exit(1);                                           \
		}                                                          \
	} while (0)

#endif
