/*
 * Comparison shim for rcu-reclaim's benchmarks: liburcu's memb flavor
 * (Debian liburcu-dev 0.13), compiled with _LGPL_SOURCE so that
 * urcu_memb_read_lock()/urcu_memb_read_unlock() are inlined into the loops
 * below, as they are in an LGPL C program. The loops run in C so the
 * per-pair numbers carry no FFI call overhead; the Rust benches time the
 * whole call and divide by the number of pairs.
 *
 * Built by build.rs only with `--features liburcu`.
 */
#define _LGPL_SOURCE
#include <urcu/urcu-memb.h>

#include <stdint.h>
#include <stdlib.h>

/* Registers the calling thread as a liburcu memb reader. */
void shim_register_thread(void)
{
	urcu_memb_register_thread();
}

/* Unregisters the calling thread (it must be outside any section). */
void shim_unregister_thread(void)
{
	urcu_memb_unregister_thread();
}

/*
 * n outermost read_lock/read_unlock pairs. Both primitives contain a compiler
 * barrier and volatile stores to the reader's TLS word, so the loop cannot be
 * folded away. Returns n.
 */
uint64_t shim_read_pairs(uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++) {
		urcu_memb_read_lock();
		urcu_memb_read_unlock();
	}
	return i;
}

/* n nested pairs, taken while an outer section is held. Returns n. */
uint64_t shim_read_pairs_nested(uint64_t n)
{
	uint64_t i;

	urcu_memb_read_lock();
	for (i = 0; i < n; i++) {
		urcu_memb_read_lock();
		urcu_memb_read_unlock();
	}
	urcu_memb_read_unlock();
	return i;
}

/*
 * n sections that each rcu_dereference() *slot and read the pointee: the
 * counterpart of `RcuCell::load` inside a section. Returns the sum read.
 */
uint64_t shim_read_deref_pairs(uint64_t n, uint64_t *const *slot)
{
	uint64_t i, sum = 0;

	for (i = 0; i < n; i++) {
		urcu_memb_read_lock();
		sum += *rcu_dereference(*slot);
		urcu_memb_read_unlock();
	}
	return sum;
}

/* Reads the pointee of *slot in one section (for setting up). */
uint64_t shim_read_once(uint64_t *const *slot)
{
	uint64_t v;

	urcu_memb_read_lock();
	v = *rcu_dereference(*slot);
	urcu_memb_read_unlock();
	return v;
}

/* Spins for `work` iterations that the compiler must keep. */
static inline void spin_work(uint32_t work)
{
	uint32_t i;

	for (i = 0; i < work; i++)
		__asm__ __volatile__("" : : "r"(i) : "memory");
}

/*
 * A busy reader: registers the calling thread, sets *ready, then loops
 * read_lock / spin_work(work) / read_unlock until *stop becomes non-zero,
 * and unregisters. Returns the number of sections run.
 */
uint64_t shim_busy_reader(const volatile int *stop, volatile int *ready,
			  uint32_t work)
{
	uint64_t sections = 0;

	urcu_memb_register_thread();
	CMM_STORE_SHARED(*ready, 1);
	while (!CMM_LOAD_SHARED(*stop)) {
		urcu_memb_read_lock();
		spin_work(work);
		urcu_memb_read_unlock();
		sections++;
	}
	urcu_memb_unregister_thread();
	return sections;
}

/* urcu_memb_synchronize_rcu(): waits for pre-existing readers. */
void shim_synchronize(void)
{
	urcu_memb_synchronize_rcu();
}

/* n back-to-back urcu_memb_synchronize_rcu() calls. */
void shim_synchronize_n(uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++)
		urcu_memb_synchronize_rcu();
}

/* Whether liburcu detected sys_membarrier (its memb read side is then a
 * compiler barrier; else it falls back to a full fence). */
int shim_has_sys_membarrier(void)
{
	return urcu_memb_has_sys_membarrier;
}

/* A 64-byte object with liburcu's rcu_head, freed by call_rcu. */
struct shim_obj {
	uint64_t payload[6];
	struct rcu_head head;
};

static void shim_free_obj(struct rcu_head *head)
{
	free(caa_container_of(head, struct shim_obj, head));
}

/*
 * Allocates n 64-byte objects, queues each with call_rcu, then waits for
 * all of them to be freed with rcu_barrier: the allocate + defer-free +
 * reclaim cycle, in C. The calling thread must be registered.
 */
void shim_call_rcu_n(uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++) {
		struct shim_obj *o = malloc(sizeof(*o));

		if (!o)
			abort();
		o->payload[0] = i;
		urcu_memb_call_rcu(&o->head, shim_free_obj);
	}
	urcu_memb_barrier();
}
