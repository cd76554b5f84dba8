/*
 * Callgrind driver for liburcu's QSBR flavor: the C counterpart of the
 * qsbr_* variants of examples/callgrind_read_pair.rs. Not built by
 * build.rs; compile ad hoc (a PIE executable, as Debian's gcc builds by
 * default, with _LGPL_SOURCE: liburcu's read side and quiescent state are
 * inlined, its best case):
 *
 *   gcc -O2 -g -o target/callgrind_qsbr_urcu \
 *       crates/rcu-reclaim/csrc/callgrind_qsbr.c -lurcu-qsbr
 *   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.urcu.qs.1m \
 *       target/callgrind_qsbr_urcu qs 1000000
 *
 * Variants: load (a section: urcu_qsbr_read_lock, one rcu_dereference and
 * the read, urcu_qsbr_read_unlock), plain (the same loop without the lock
 * and unlock), qs (urcu_qsbr_quiescent_state, no grace period meanwhile).
 * Each loop is its own noinline function (qsbr_load, plain_load,
 * quiescent_states) for --toggle-collect.
 */
#define _LGPL_SOURCE
#include <urcu/urcu-qsbr.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static uint64_t qsbr_load(uint64_t *const *slot,
						    uint64_t n)
{
	uint64_t i, sum = 0;

	for (i = 0; i < n; i++) {
		urcu_qsbr_read_lock();
		sum += *rcu_dereference(*slot);
		urcu_qsbr_read_unlock();
	}
	return sum;
}

__attribute__((noinline)) static uint64_t plain_load(uint64_t *const *slot,
						     uint64_t n)
{
	uint64_t i, sum = 0;

	for (i = 0; i < n; i++)
		sum += *rcu_dereference(*slot);
	return sum;
}

__attribute__((noinline)) static void quiescent_states(uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++)
		urcu_qsbr_quiescent_state();
}

int main(int argc, char **argv)
{
	uint64_t n, sum = 0, value = 1, *slot = &value;
	const char *variant;

	if (argc != 3) {
		fprintf(stderr, "usage: %s <load|plain|qs> <n>\n", argv[0]);
		return 2;
	}
	variant = argv[1];
	n = strtoull(argv[2], NULL, 10);
	urcu_qsbr_register_thread();
	if (!strcmp(variant, "load"))
		sum = qsbr_load(&slot, n);
	else if (!strcmp(variant, "plain"))
		sum = plain_load(&slot, n);
	else if (!strcmp(variant, "qs"))
		quiescent_states(n);
	else {
		fprintf(stderr, "unknown variant %s; use load, plain or qs\n", variant);
		urcu_qsbr_unregister_thread();
		return 2;
	}
	urcu_qsbr_unregister_thread();
	printf("variant=%s n=%" PRIu64 " sum=%" PRIu64 "\n", variant, n, sum);
	return 0;
}
