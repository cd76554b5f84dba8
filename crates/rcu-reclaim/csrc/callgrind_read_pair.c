/*
 * Callgrind driver for liburcu's memb flavor: the C counterpart of
 * examples/callgrind_read_pair.rs. Not built by build.rs; compile ad hoc:
 *
 *   gcc -O2 -g -o target/callgrind_read_pair_urcu \
 *       crates/rcu-reclaim/csrc/callgrind_read_pair.c -lurcu-memb
 *   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.urcu.1m \
 *       target/callgrind_read_pair_urcu memb 1000000
 *
 * Variants: memb (outermost pairs), nested (pairs under a held outer
 * section), load (a section with one rcu_dereference and a read).
 * Each loop is its own noinline function (pairs_outermost, pairs_nested,
 * pairs_load) for --toggle-collect.
 */
#define _LGPL_SOURCE
#include <urcu/urcu-memb.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void pairs_outermost(uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++) {
		urcu_memb_read_lock();
		urcu_memb_read_unlock();
	}
}

__attribute__((noinline)) static void pairs_nested(uint64_t n)
{
	uint64_t i;

	urcu_memb_read_lock();
	for (i = 0; i < n; i++) {
		urcu_memb_read_lock();
		urcu_memb_read_unlock();
	}
	urcu_memb_read_unlock();
}

__attribute__((noinline)) static uint64_t pairs_load(uint64_t *const *slot,
						     uint64_t n)
{
	uint64_t i, sum = 0;

	for (i = 0; i < n; i++) {
		urcu_memb_read_lock();
		sum += *rcu_dereference(*slot);
		urcu_memb_read_unlock();
	}
	return sum;
}

int main(int argc, char **argv)
{
	uint64_t n, value = 1, *slot = &value;
	const char *variant;

	if (argc != 3) {
		fprintf(stderr, "usage: %s <memb|nested|load> <pairs>\n", argv[0]);
		return 2;
	}
	variant = argv[1];
	n = strtoull(argv[2], NULL, 10);
	urcu_memb_register_thread();
	if (!strcmp(variant, "nested"))
		pairs_nested(n);
	else if (!strcmp(variant, "load"))
		printf("sum=%" PRIu64 "\n", pairs_load(&slot, n));
	else
		pairs_outermost(n);
	urcu_memb_unregister_thread();
	printf("variant=%s sys_membarrier=%d pairs=%" PRIu64 "\n", variant,
	       urcu_memb_has_sys_membarrier, n);
	return 0;
}
