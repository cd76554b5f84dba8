/*
 * liburcu's struct rcu_flavor_struct (urcu/flavor.h), the table of a
 * flavor's functions that liburcu-cds calls through: urcu_<p>_flavor.
 *
 * Its ELF size is 0.13's, fourteen pointers (112 bytes), as Debian's
 * programs were built with: an executable that names the table (every
 * cds_lfht_new(..., &rcu_flavor, ...)) holds a copy of it, made at load
 * time from the library's, and the dynamic linker warns "has different
 * size in shared object, consider re-linking" when the library's is larger
 * (liburcu 0.14's has sixteen). 0.14's two entries, the polled pair, follow
 * in memory all the same: a reader of the library's own table (a library
 * built against 0.14's headers, dlsym) finds them. An executable built
 * against 0.14's headers copies only the fourteen: it calls the pair by
 * name (urcu_<p>_start_poll_synchronize_rcu / _poll_state_...).
 *
 * Each drop-in's csrc/lgpl_reader.c expands RCU_RECLAIM_FLAVOR_TABLE once
 * with its prefix and the functions of its flavor that differ (the memb
 * flavor's quiescent state, offline and online do nothing). The functions
 * are the library's own exports, defined in Rust; this file only takes
 * their addresses, never calls them, so one prototype serves them all.
 */
#ifndef RCU_RECLAIM_URCU_FLAVOR_TABLE_H
#define RCU_RECLAIM_URCU_FLAVOR_TABLE_H

typedef void (*rcu_reclaim_flavor_fn)(void);

#define RCU_RECLAIM_FLAVOR_STR(x) #x
#define RCU_RECLAIM_FLAVOR_XSTR(x) RCU_RECLAIM_FLAVOR_STR(x)

/* The table of flavor P (memb, qsbr) under the hidden name `full`, and
 * urcu_P_flavor, exported, as its first 112 bytes. QS, OFF, ON: the
 * quiescent-state, offline and online entries. */
#define RCU_RECLAIM_FLAVOR_TABLE(P, full, QS, OFF, ON)                         \
	void urcu_##P##_read_lock(void);                                       \
	void urcu_##P##_read_unlock(void);                                     \
	void urcu_##P##_read_ongoing(void);                                    \
	void urcu_##P##_call_rcu(void);                                        \
	void urcu_##P##_synchronize_rcu(void);                                 \
	void urcu_##P##_defer_rcu(void);                                       \
	void urcu_##P##_register_thread(void);                                 \
	void urcu_##P##_unregister_thread(void);                               \
	void urcu_##P##_barrier(void);                                         \
	void urcu_##P##_register_rculfhash_atfork(void);                       \
	void urcu_##P##_unregister_rculfhash_atfork(void);                     \
	void urcu_##P##_start_poll_synchronize_rcu(void);                      \
	void urcu_##P##_poll_state_synchronize_rcu(void);                      \
	__attribute__((used, visibility("hidden")))                            \
	const rcu_reclaim_flavor_fn full[16] = {                               \
		urcu_##P##_read_lock,                                          \
		urcu_##P##_read_unlock,                                        \
		urcu_##P##_read_ongoing,                                       \
		QS,                                                            \
		urcu_##P##_call_rcu,                                           \
		urcu_##P##_synchronize_rcu,                                    \
		urcu_##P##_defer_rcu,                                          \
		OFF,                                                           \
		ON,                                                            \
		urcu_##P##_register_thread,                                    \
		urcu_##P##_unregister_thread,                                  \
		urcu_##P##_barrier,                                            \
		urcu_##P##_register_rculfhash_atfork,                          \
		urcu_##P##_unregister_rculfhash_atfork,                        \
		urcu_##P##_start_poll_synchronize_rcu,                         \
		urcu_##P##_poll_state_synchronize_rcu,                         \
	};                                                                     \
	__asm__(".globl urcu_" #P "_flavor\n\t"                                \
		".type urcu_" #P "_flavor, @object\n\t"                        \
		".set urcu_" #P "_flavor, " RCU_RECLAIM_FLAVOR_XSTR(full) "\n\t" \
		".size urcu_" #P "_flavor, 112\n\t")

#endif
