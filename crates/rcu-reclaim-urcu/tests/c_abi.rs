//! The C ABI, exercised by C programs of our own compiled against Debian's
//! liburcu-dev 0.13 headers (no `_LGPL_SOURCE`): each one runs against the
//! real `liburcu-memb.so.8` and against this library dropped in as
//! `liburcu-memb.so.8` through `LD_LIBRARY_PATH`, and must print the same.
//!
//! The tests build the cdylib themselves (`cargo build -p
//! rcu-reclaim-urcu`, same profile and target directory), since `cargo
//! test` does not promise to. They skip, saying why, where gcc, the
//! liburcu-dev headers or binutils are missing.

mod harness;

use harness::{run, run_with_args, Env, MEMB};

/// Every symbol of the drop-in's ABI (liburcu 0.13's memb ABI for programs built
/// without `_LGPL_SOURCE`, 0.14's polled pair) plus our extensions.
const EXPORTS: &[&str] = &[
    "urcu_memb_read_lock",
    "urcu_memb_read_unlock",
    "urcu_memb_read_ongoing",
    "urcu_memb_register_thread",
    "urcu_memb_unregister_thread",
    "urcu_memb_synchronize_rcu",
    "urcu_memb_init",
    "urcu_memb_call_rcu",
    "urcu_memb_barrier",
    "urcu_memb_create_call_rcu_data",
    "urcu_memb_call_rcu_data_free",
    "urcu_memb_get_default_call_rcu_data",
    "urcu_memb_get_cpu_call_rcu_data",
    "urcu_memb_get_thread_call_rcu_data",
    "urcu_memb_get_call_rcu_data",
    "urcu_memb_set_thread_call_rcu_data",
    "urcu_memb_set_cpu_call_rcu_data",
    "urcu_memb_create_all_cpu_call_rcu_data",
    "urcu_memb_free_all_cpu_call_rcu_data",
    "urcu_memb_get_call_rcu_thread",
    "urcu_memb_call_rcu_before_fork",
    "urcu_memb_call_rcu_after_fork_parent",
    "urcu_memb_call_rcu_after_fork_child",
    "urcu_memb_defer_rcu",
    "urcu_memb_defer_register_thread",
    "urcu_memb_defer_unregister_thread",
    "urcu_memb_defer_barrier",
    "urcu_memb_defer_barrier_thread",
    "urcu_memb_defer_exit",
    "urcu_memb_flavor",
    "urcu_memb_register_rculfhash_atfork",
    "urcu_memb_unregister_rculfhash_atfork",
    "rcu_dereference_sym",
    "rcu_set_pointer_sym",
    "rcu_xchg_pointer_sym",
    "rcu_cmpxchg_pointer_sym",
    "urcu_memb_start_poll_synchronize_rcu",
    "urcu_memb_poll_state_synchronize_rcu",
    "rcu_reclaim_pressure_start",
    "rcu_reclaim_pressure_end",
    "rcu_reclaim_pending",
    "rcu_reclaim_pending_bytes",
    "rcu_reclaim_memory_state",
    "rcu_reclaim_call_rcu_sized",
    "rcu_reclaim_run_callbacks",
    "rcu_reclaim_stats_json",
    "rcu_reclaim_free_string",
    // Data that programs built with `_LGPL_SOURCE` use directly.
    "urcu_memb_gp",
    "urcu_memb_reader",
    "urcu_memb_has_sys_membarrier",
    "compat_futex_async",
    "compat_futex_noasync",
];

/// Builds `prog`, runs it against liburcu and against ours, and checks both
/// succeed with the same output.
fn same_as_liburcu(prog: &str) {
    same_as_liburcu_with(prog, &[]);
}

/// [`same_as_liburcu`], the program run with `args`.
fn same_as_liburcu_with(prog: &str, args: &[&str]) {
    let Some(env) = Env::get(&MEMB) else { return };
    // Linked against the drop-in (NEEDED: its SONAME, liburcu-memb.so.8).
    let exe = env.compile(prog, &[], &["-lurcu-memb"]);
    let ours = env.run_ours(&exe, args);
    assert_eq!(
        ours.code,
        Some(0),
        "{prog} against rcu-reclaim-urcu failed:\n{}",
        ours.stderr
    );
    match &env.real_liburcu {
        Some(_) => {
            let real = run_with_args(&exe, args, None);
            assert_eq!(
                real.code,
                Some(0),
                "{prog} against liburcu failed:\n{}",
                real.stderr
            );
            assert_eq!(
                ours.stdout, real.stdout,
                "{prog}: rcu-reclaim-urcu and liburcu differ"
            );
        }
        None => eprintln!("note: liburcu-memb.so.8 not found; {prog} ran against ours only"),
    }
    assert!(!ours.stdout.is_empty());
}

#[test]
fn readers_writers_xchg_synchronize_poison() {
    same_as_liburcu("readers_writers");
}

/// Sections in a signal handler that interrupts the thread's own
/// `rcu_register_thread` (or `rcu_unregister_thread`), with the library
/// made by that registration or before it: no poisoned read, no hang, no
/// abort (before: a deadlock on the domain being made, or an abort on the
/// registration's list borrowed twice). Registration now blocks signals.
#[test]
fn sections_in_a_signal_handler_that_interrupts_registration() {
    same_as_liburcu_with("signal_in_register", &[]);
    same_as_liburcu_with("signal_in_register", &["init"]);
}

/// `errno` is the caller's after every call, as with liburcu (before: 0
/// after the program's first call, `ENOENT` after the first `call_rcu`,
/// `ETIMEDOUT` after a `call_rcu` held back under a flood).
#[test]
fn calls_leave_errno_alone() {
    same_as_liburcu("errno_kept");
}

#[test]
fn call_rcu_and_defer_rcu_with_barriers() {
    same_as_liburcu("call_rcu_barrier");
}

/// The same programs built with `_LGPL_SOURCE`: the read side inlined from
/// liburcu's headers, reaching `urcu_memb_reader`, `urcu_memb_gp` and
/// `urcu_memb_has_sys_membarrier` directly (before, the loader refused
/// them: undefined symbol `urcu_memb_reader`). A grace period that missed
/// an inlined section shows as poison in `lgpl_readers_writers`.
#[test]
fn programs_built_with_lgpl_source_inline_the_read_side() {
    same_as_liburcu("lgpl_readers_writers");
    same_as_liburcu("lgpl_call_rcu_barrier");
    same_as_liburcu("lgpl_fork");
}

/// Inlined and exported read-side calls on one thread pair with each other
/// and see each other's sections, as on liburcu (both write the thread's
/// `urcu_memb_reader.ctr`); readers alternating mixed pairs never see
/// poison.
#[test]
fn inlined_and_exported_read_side_calls_mix() {
    same_as_liburcu("lgpl_mixed");
}

/// `call_rcu_data_free` as liburcu's: asked to stop while idle, the
/// thread first runs the callbacks queued on it (they have run, on that
/// thread, when the free returns; before: they went to the default
/// call_rcu_data at once and ran there later); asked while it runs a
/// batch, the free waits for the batch to end, and what was queued behind
/// it runs on the default thread, by `rcu_barrier` at the latest.
#[test]
fn call_rcu_data_free_lets_the_thread_run_what_it_holds() {
    same_as_liburcu("call_rcu_data_free");
}

#[test]
fn per_cpu_and_per_thread_call_rcu_data() {
    same_as_liburcu("per_cpu");
    // CPUs out of range (ncpus, then -1) are said once, in liburcu's words.
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("per_cpu", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &[]);
    assert_eq!(
        out.stderr
            .matches("[error] liburcu: get CPU # out of range")
            .count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn call_rcu_flood_and_free_all_cpu_call_rcu_data_under_load() {
    same_as_liburcu("call_rcu_flood");
}

/// A `call_rcu` flood made while holding a mutex the callbacks take:
/// past the push-back mark every call waited its full millisecond for a
/// call_rcu thread blocked on that mutex (200,000 calls: 110 s, against
/// liburcu's 15 ms; the program's watchdog fires at 30 s). A caller now
/// stops waiting while the batch in hand has not invoked one more callback
/// since a wait ran out.
#[test]
fn a_call_rcu_flood_under_the_callbacks_lock_is_not_held_back() {
    same_as_liburcu("flood_under_callbacks_lock");
}

/// `rcu_unregister_thread` in a pthread key destructor of a registered
/// thread (lazy registration, ended at thread exit): the thread's exit
/// had already unregistered it, before the key destructors run, and the
/// call printed "[error] ... not registered" for every thread, where
/// liburcu, whose thread stays registered until then, prints nothing.
#[test]
fn unregistering_in_a_pthread_key_destructor_is_not_an_error() {
    same_as_liburcu("unregister_in_key_destructor");
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("unregister_in_key_destructor", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &[]);
    assert_eq!(
        out.stdout,
        "unregistered in key destructors: 8, callbacks run: 8\n"
    );
    assert!(!out.stderr.contains("[error]"), "{}", out.stderr);
}

/// Queued inside sections, 8 million callbacks (512 MB of nodes if none
/// were freed meanwhile) run in a bounded backlog: the callers yield to
/// the call_rcu threads once over the push-back mark (before: 650 MB for
/// 20 million, liburcu 230-530 MB; now about 28 MB). Ours only: liburcu's
/// own peak is beyond any bound worth stating.
#[test]
fn a_call_rcu_flood_inside_sections_stays_bounded() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("call_rcu_flood_in_section", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "callbacks run: 8000000 of 8000000\n");
    let peak_kb: u64 = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM ")?.strip_suffix(" kB")?.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM line: {}", out.stderr));
    assert!(
        peak_kb < 160 << 10,
        "peak resident memory {peak_kb} kB: the backlog grew with the flood"
    );
}

/// A `call_rcu` flood of heavy objects in a 100 MiB memory cgroup, as a
/// container runs it: 4 threads queue heads of 4 KiB objects, then of
/// 16 KiB objects, for 2 s each (gigabytes written in all). The drop-in
/// bounds its domain by the cgroup's limit and holds callers back harder
/// once the usage nears it; before, the program was OOM-killed with 4 KiB
/// objects (200–400 MB waiting at the ordinary push-back mark), as it is
/// on liburcu. Needs root and a cgroup v1 memory hierarchy; says why and
/// passes without running where there is none.
/// `defer_rcu` of heavy objects in a 100 MiB memory cgroup: 4 threads
/// defer the frees of 16 KiB objects for 2 s (`flood_heavy.c` built with
/// `DEFER`). liburcu's queue of 4,096 entries per thread knows nothing of
/// memory: the four hold 256 MiB (258 MB peak resident without a limit),
/// and the program was OOM-killed, as it is on liburcu. Now a thread
/// flushes its own queue at 128 entries while usage is over the limit's
/// mark. Needs root and a cgroup v1 memory hierarchy; says why
/// and passes without running where there is none.
#[test]
fn a_defer_rcu_flood_of_heavy_objects_keeps_to_the_cgroup_limit() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("flood_heavy", &["-DDEFER"], &["-lurcu-memb"]);
    let Some(run) = env.run_ours_in_100_mib("defer-flood", &exe, &["4", "2", "16384"]) else {
        return;
    };
    run.assert_flood_lived_and_ran_all("defer_rcu of 16384-byte objects");
}

#[test]
fn a_call_rcu_flood_of_heavy_objects_keeps_to_the_cgroup_limit() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("flood_heavy", &[], &["-lurcu-memb"]);
    for size in ["4096", "16384"] {
        let Some(run) = env.run_ours_in_100_mib("flood", &exe, &["4", "2", size]) else {
            return;
        };
        run.assert_flood_lived_and_ran_all(&format!("{size}-byte objects"));
    }
}

/// `call_rcu` from signal handlers during a flood of heavy objects in a
/// 100 MiB memory cgroup: 4 threads queue heads of 4 KiB objects while
/// another signals them every 100 us, and each handler queues a head too.
/// Before, the drop-in's look at the memory state (the cgroup's
/// `memory.stat`, read into a `String`) ran inside handlers that had
/// interrupted `malloc`, and the program hung for good in `malloc`'s arena
/// lock (liburcu: OOM-killed). Needs root and a cgroup v1 memory
/// hierarchy; says why and passes without running where there is none.
#[test]
fn call_rcu_from_signal_handlers_in_a_limited_cgroup_does_not_hang() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("call_rcu_signal_in_cgroup", &[], &["-lurcu-memb"]);
    let Some(run) = env.run_ours_in_100_mib("signal", &exe, &["150000", "4096"]) else {
        return;
    };
    run.assert_lived("the program");
    assert_eq!(run.out.stdout, "callbacks run: all\n");
}

#[test]
fn defer_rcu_flood_unregister_and_barrier() {
    same_as_liburcu("defer_flood");
}

#[test]
fn lone_callbacks_and_synchronize_with_and_without_readers() {
    same_as_liburcu("latency_sync");
}

/// Sections in a pthread key destructor and an atexit handler, which run
/// after the library's thread-locals are destroyed (before: the read lock
/// aborted there); the destructor's section still holds up a writer.
#[test]
fn sections_in_key_destructors_and_atexit_handlers() {
    same_as_liburcu("section_in_destructor");
}

/// A call_rcu callback's read-side section holds up a writer's
/// `synchronize_rcu`, as on liburcu, whose call_rcu thread is a registered
/// reader: built with `_LGPL_SOURCE`, the section is inlined into the
/// call_rcu thread's `urcu_memb_reader`, which the drop-in's grace periods
/// did not wait for (before: the callback read the poisoned old version).
#[test]
fn sections_in_call_rcu_callbacks_hold_up_grace_periods() {
    same_as_liburcu("section_in_callback");
    same_as_liburcu("lgpl_section_in_callback");
}

#[test]
fn fork_with_pending_callbacks() {
    same_as_liburcu("fork");
}

/// liburcu-cds's `cds_lfht` on the drop-in: it reaches the flavor only
/// through `urcu_memb_flavor` (read side, `call_rcu`, `synchronize_rcu`,
/// registration of its resize worker) and registers its fork hooks with
/// `urcu_memb_register_rculfhash_atfork`. Lookups during replaces,
/// deletes and resizes never see a freed node, and every node is freed
/// once. Forking through the hooks meanwhile is ours only: liburcu's
/// children wait for the parent's readers, caught in their sections at
/// the fork, for ever.
#[test]
fn cds_lfht_from_liburcu_cds_on_the_drop_in() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("lfht", &[], &["-lurcu-cds", "-lurcu-memb"]);
    let ours = env.run_ours(&exe, &[]);
    assert_eq!(ours.code, Some(0), "{}", ours.stderr);
    assert_eq!(ours.stdout, "freed 40960 bad 0\n", "{}", ours.stderr);
    if env.real_liburcu.is_some() {
        let real = run_with_args(&exe, &[], None);
        assert_eq!(real.code, Some(0), "liburcu: {}", real.stderr);
        assert_eq!(ours.stdout, real.stdout);
    }
    let out = env.run_ours(&exe, &["fork"]);
    assert_eq!(out.code, Some(0), "fork: {}", out.stderr);
    assert_eq!(out.stdout, "freed 40960 bad 0\n", "fork: {}", out.stderr);
}

/// `fork()` from a `call_rcu` callback with liburcu's hooks installed by
/// `pthread_atfork` (a callback that spawns a helper): `call_rcu_before_fork`
/// waited for the caller's own call_rcu thread to pause, which it never
/// does while it runs the callback (before: a silent hang; liburcu hangs
/// the same way, so ours only). The child uses call_rcu and exits; the
/// parent's callbacks around the fork each run once.
#[test]
fn fork_from_a_call_rcu_callback() {
    let Some(env) = Env::get(&MEMB) else { return };
    env.assert_ours_prints(
        "fork_in_callback",
        &["-lurcu-memb"],
        "child exit status 0\ncallbacks around a fork in a callback: ok\n",
    );
}

/// A callback registers the call_rcu thread again, then unregisters it:
/// the register is ignored (liburcu asserts), and so is its unregister,
/// which before unregistered the call_rcu thread itself, so that a later
/// callback's inlined section was not waited for (the poison was read).
#[test]
fn an_ignored_registration_in_a_callback_keeps_the_call_rcu_thread_registered() {
    let Some(env) = Env::get(&MEMB) else { return };
    let out = env.assert_ours_prints(
        "lgpl_register_in_callback",
        &["-lurcu-memb"],
        "the callback's section read 1\n",
    );
    assert!(
        out.stderr.contains("already registered")
            && out
                .stderr
                .contains("pairs with an rcu_register_thread() that was ignored"),
        "{}",
        out.stderr
    );
}

/// A callback that leaves a section open: every later grace period would
/// wait for the call_rcu thread for ever (liburcu hangs without a word;
/// the drop-in hung too, and said only, after 21 s, that the thread stalled).
#[test]
fn a_callback_that_leaves_a_section_open_aborts_with_the_reason() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("section_left_open_in_callback", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &[]);
    assert_eq!(out.stdout, "queued\n", "{}", out.stderr);
    // Killed by SIGABRT: no exit code.
    assert_eq!(out.code, None, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "a call_rcu callback returned inside a read-side critical section (an \
             rcu_read_lock() without its rcu_read_unlock())"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn synchronize_inside_a_section_aborts_with_the_reason() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("synchronize_in_section", &[], &["-lurcu-memb"]);
    for mode in ["single", "nested"] {
        let out = env.run_ours(&exe, &[mode]);
        assert_eq!(out.stdout, "in section\n", "{mode}: {}", out.stderr);
        // Killed by SIGABRT: no exit code.
        assert_eq!(out.code, None, "{mode}: {}", out.stderr);
        assert!(
            out.stderr.contains(
                "[error] rcu-reclaim-urcu: synchronize_rcu() called inside a read-side \
                 critical section"
            ),
            "{mode}: {}",
            out.stderr
        );
    }
}

/// The same on a thread that never registered: liburcu does not wait for
/// it (its section protects nothing) and returns; so does the drop-in,
/// saying what it does (it aborted).
#[test]
fn synchronize_inside_an_unregistered_threads_section_returns() {
    same_as_liburcu("sync_unregistered_in_section");
}

/// `rcu_barrier` from a call_rcu callback (liburcu deadlocks: its thread
/// waits for itself) cannot wait for the callbacks queued on its own
/// thread before it: it says so instead of returning as if they had run.
#[test]
fn a_barrier_in_a_call_rcu_callback_says_what_it_cannot_wait_for() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("barrier_in_callback", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout, "barrier returned; earlier callback ran: no\n",
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("[error] rcu-reclaim-urcu: rcu_barrier() called from a call_rcu callback"),
        "no message:\n{}",
        out.stderr
    );
}

/// Builds `prog` against this library's own header (`rcu_reclaim.h`: the
/// extensions beyond liburcu's API) and library, and runs it; `None` where
/// the drop-in cannot be built here.
fn run_extension(prog: &str) -> Option<harness::Output> {
    let env = Env::get(&MEMB)?;
    let lib_dir = env.lib.parent().expect("the library has a directory");
    let include = format!("-I{}", env.crate_dir.join("include").display());
    let rpath = format!("-Wl,-rpath,{}", lib_dir.display());
    let libdir = format!("-L{}", lib_dir.display());
    let exe = env.compile(prog, &[&include], &[&libdir, &rpath, "-lrcu_reclaim_urcu"]);
    Some(run(&exe, None))
}

/// [`run_extension`], checking that `prog` succeeds, prints `stdout`, and
/// says `message` on stderr if one is given.
fn extension_prints(prog: &str, stdout: &str, message: Option<&str>) {
    let Some(out) = run_extension(prog) else {
        return;
    };
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, stdout, "{}", out.stderr);
    if let Some(m) = message {
        assert!(out.stderr.contains(m), "no message:\n{}", out.stderr);
    }
}

/// `call_rcu_data_free` of a call_rcu_data from one of its callbacks that
/// `rcu_reclaim_run_callbacks` runs on the reclaimer's thread: stopping its
/// thread waited for that thread, which waited for the batch the reclaimer
/// held (a hang); as from its own thread, it is now freed once the
/// callback returns, and said so.
#[test]
fn a_call_rcu_data_freed_in_a_callback_the_reclaimer_runs_is_freed_after() {
    extension_prints(
        "free_in_reclaimer_callback",
        "a call_rcu_data freed in a callback the reclaimer ran\n",
        Some("call_rcu_data_free() called from a callback of that call_rcu_data"),
    );
}

/// `rcu_barrier` from a call_rcu callback that `rcu_reclaim_run_callbacks`
/// runs on the reclaimer's thread: it waited for the batch it was called
/// from (a hang); as on a call_rcu thread, it now skips that batch's
/// crdp, says so, and returns.
#[test]
fn a_barrier_in_a_callback_the_reclaimer_runs_returns() {
    extension_prints(
        "barrier_in_reclaimer_callback",
        "a barrier in a callback the reclaimer ran returned\n",
        Some("rcu_barrier() called from a call_rcu callback"),
    );
}

/// A fork through the hooks from a call_rcu callback that
/// `rcu_reclaim_run_callbacks` runs, while the call_rcu thread waits for
/// the batch order the reclaimer holds: `call_rcu_before_fork` waited for
/// that thread to pause, for ever; it now leaves that crdp where it is, as
/// it does a forking callback's own.
#[test]
fn a_fork_in_a_callback_the_reclaimer_runs_completes() {
    extension_prints(
        "fork_in_reclaimer_callback",
        "forked in a callback the reclaimer ran; later callbacks ran: 8\n",
        None,
    );
}

/// The same misuse on two call_rcu threads at once: a callback on each
/// calls `rcu_barrier`. Each waited for the other thread, busy in its own
/// barrier, for ever (before: a silent hang after the first message; liburcu
/// deadlocks too). Each now skips a thread whose callback waits the same way,
/// and says so.
#[test]
fn barriers_in_callbacks_on_two_call_rcu_threads_both_return() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("barrier_in_two_callbacks", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "both barriers returned\n", "{}", out.stderr);
    assert!(
        out.stderr.contains("also waits in rcu_barrier()"),
        "no message:\n{}",
        out.stderr
    );
}

/// An rcu_head passed to call_rcu() again before its callback ran: on top
/// of its queue, the second call is refused; with other heads queued
/// between, the queue runs into a cycle, which is cut: every head still
/// reachable runs once (those queued before the head's first call are
/// lost, as liburcu loses heads too), the barrier returns, and later
/// callbacks and barriers work. Before: a head linked to itself ran for
/// ever, and `rcu_barrier` never returned (or a freeing callback freed
/// twice).
#[test]
fn an_rcu_head_queued_twice_runs_once_and_hangs_nothing() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("call_rcu_twice", &[], &["-lurcu-memb"]);
    for (gap, expected, message) in [
        (
            "0",
            "ran 3, at most 1 each\nlater: 4\n",
            "that is already queued",
        ),
        (
            "1",
            "ran 3, at most 1 each\nlater: 4\n",
            "was passed to call_rcu() again",
        ),
        (
            "10",
            "ran 12, at most 1 each\nlater: 4\n",
            "was passed to call_rcu() again",
        ),
    ] {
        let out = env.run_ours(&exe, &[gap]);
        assert_eq!(out.code, Some(0), "gap {gap}: {}", out.stderr);
        assert_eq!(out.stdout, expected, "gap {gap}: {}", out.stderr);
        assert!(
            out.stderr.contains(message),
            "gap {gap}: no message:\n{}",
            out.stderr
        );
    }
}

/// Built with `_LGPL_SOURCE`, a stray `rcu_read_unlock` takes the inlined
/// reader count below zero: the drop-in says so, sets it back to zero and
/// goes on (liburcu's `synchronize_rcu` on that thread then waits for
/// ever). Before, the thread was taken for one inside a section that
/// never ends: misleading errors, then an abort.
#[test]
fn a_stray_inlined_unlock_is_named_and_repaired() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("lgpl_unbalanced_unlock", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "synchronize_rcu returned\nanother thread's synchronize_rcu returned\n\
         callbacks run: 1\nunregistered\n",
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("rcu_read_unlock() was called more often than rcu_read_lock()"),
        "no message:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("inside a read-side"), "{}", out.stderr);
}

/// `call_rcu_data_free` / `free_all_cpu_call_rcu_data` inside a
/// read-side section while the call_rcu thread has a batch in hand (whose
/// grace period the section holds up): liburcu waits for ever; ours hung
/// too (and aborted for `free_all`). Both return, and every callback runs
/// once the section ends.
#[test]
fn freeing_call_rcu_data_inside_a_section_returns() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("crdp_free_in_section", &[], &["-lurcu-memb"]);
    for mode in ["one", "all"] {
        let out = env.run_ours(&exe, &[mode]);
        assert_eq!(out.code, Some(0), "{mode}: {}", out.stderr);
        assert_eq!(
            out.stdout, "freed inside the section\ncallbacks run: 2\n",
            "{mode}: {}",
            out.stderr
        );
    }
}

/// `call_rcu_before_fork` inside a read-side section while a call_rcu
/// thread has a batch in hand: liburcu's waits for ever without a word.
/// Ours says at once that the fork is prepared inside a section, and once
/// the thread has waited 2 s for the grace period that the section holds
/// up, ends the process naming the fix.
#[test]
fn fork_hooks_inside_a_section_say_why_and_never_hang() {
    let Some(env) = Env::get(&MEMB) else { return };
    env.assert_ours_prints(
        "fork_hooks_in_section",
        &["-lurcu-memb"],
        "told\nended by itself\n",
    );
}

/// A callback that frees its own `call_rcu_data`: `call_rcu_data_free`
/// waited for the thread to stop, that is for itself (before: a silent
/// hang, as with liburcu). It now returns, saying so, and the crdp is freed
/// once the callback returns; the rest of its batch and later callbacks run.
#[test]
fn a_callback_freeing_its_own_call_rcu_data_returns() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("free_in_own_callback", &[], &["-lurcu-memb"]);
    for how in ["uninstall", "keep"] {
        a_callback_frees_its_own(&env.run_ours(&exe, &[how]));
    }
}

/// [`a_callback_freeing_its_own_call_rcu_data_returns`]'s checks of a run.
fn a_callback_frees_its_own(out: &harness::Output) {
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout, "free returned; callbacks run: 4\n",
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("call_rcu_data_free() called from a callback of that call_rcu_data"),
        "no message:\n{}",
        out.stderr
    );
    // Not also told to uninstall it: its own thread has it installed, as
    // liburcu's has, not the program.
    assert!(
        !out.stderr.contains("set_thread_call_rcu_data(NULL)"),
        "{}",
        out.stderr
    );
}

/// A fork through the hooks while a `call_rcu` callback is about to call
/// `rcu_defer_barrier`: `call_rcu_before_fork` held the `defer_rcu` flush
/// lock while it waited for the call_rcu thread to finish its batch, whose
/// callback waited for that lock (before: a silent deadlock; liburcu's
/// hooks take no defer lock, and it completes).
#[test]
fn a_fork_waits_for_a_callback_flushing_defer_rcu() {
    same_as_liburcu("fork_during_defer_barrier_in_callback");
}

/// The fork hooks asked while the call_rcu thread runs a batch, 300
/// times: the thread answers the pause after the batch (before: it could
/// sleep with the pause pending, and `call_rcu_before_fork` waited for
/// good; liburcu's own `test_urcu_fork` hung so).
#[test]
fn a_pause_asked_during_a_batch_is_answered() {
    same_as_liburcu("pause_during_batch");
}

/// Forks through the hooks while other threads flood `call_rcu`: a fork
/// that finds a call_rcu_data's lock held by one of them (its push-back,
/// its wake-up of the call_rcu thread) must still give the child a working
/// `call_rcu` and `rcu_barrier` (before: `call_rcu_after_fork_child` waited
/// for that lock forever). Ours only: liburcu's child hangs here too.
#[test]
fn forks_during_a_call_rcu_flood_give_working_children() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("fork_during_call_rcu", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "100 children forked during a call_rcu flood ran call_rcu and rcu_barrier\n"
    );
}

/// A child forked without the fork hooks has no call_rcu thread: its
/// `rcu_barrier` aborts, naming the hooks, where liburcu hangs.
#[test]
fn a_barrier_in_a_child_forked_without_the_hooks_says_so() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("fork_without_hooks", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &[]);
    assert_eq!(out.stdout, "aborted\n", "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "[error] rcu-reclaim-urcu: rcu_barrier() in a child process forked without the fork \
             hooks"
        ),
        "{}",
        out.stderr
    );
}

/// A child forked without the fork hooks while another thread of the
/// parent was inside `rcu_read_lock()`: that reader does not exist in the
/// child, so the child's `synchronize_rcu` waits for good. liburcu hangs
/// silently; ours hangs too (the grace period never ends under the reader)
/// but says why within about a second, naming the hooks (before: only
/// after the 21 s stall timeout; the child's stderr was empty at 3 s).
#[test]
fn a_child_forked_without_the_hooks_under_a_reader_is_told_why_it_hangs() {
    same_as_liburcu("fork_without_hooks_reader");
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("fork_without_hooks_reader", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &["stderr"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let (fate, child_stderr) = out
        .stdout
        .split_once("--- child stderr\n")
        .unwrap_or((&out.stdout, ""));
    assert_eq!(fate, "hung\n");
    for needed in [
        "reader stall",
        "was forked from it without Rcu::prepare_fork()",
        "call_rcu_before_fork()",
        "call_rcu_after_fork_child()",
        "pthread_atfork()",
    ] {
        assert!(
            child_stderr.contains(needed),
            "the child's stderr does not say {needed:?}:\n{child_stderr}"
        );
    }
}

/// `synchronize_rcu`, `rcu_register_thread` and `rcu_unregister_thread`
/// between `call_rcu_before_fork` and `call_rcu_after_fork_parent` on the
/// forking thread, as liburcu allows (its hooks pause only the call_rcu
/// threads): the domain is let go for the call (before: the domain, held
/// stopped for the fork, panicked inside the exported function and the
/// program aborted). Same output as liburcu.
#[test]
fn grace_periods_between_the_fork_hooks_run() {
    same_as_liburcu_with("fork_window", &["sync"]);
}

/// Misuse between the fork hooks, where liburcu hangs without a word:
/// `call_rcu_before_fork` twice (before: ours hung too) is refused, saying
/// so; `rcu_barrier` (ours: a panic message, then a return) says why it
/// cannot wait and returns; the first `call_rcu` of the process, which
/// needs the `call_rcu_data` list the hooks hold (before: a silent hang),
/// and `synchronize_rcu` in the child before `call_rcu_after_fork_child`
/// (before: a panic) abort, naming the hooks.
#[test]
fn misuse_between_the_fork_hooks_is_reported() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("fork_window", &[], &["-lurcu-memb"]);
    for (mode, said) in [
        ("twice", "call_rcu_before_fork() called again before"),
        (
            "barrier",
            "rcu_barrier() called between call_rcu_before_fork()",
        ),
    ] {
        let out = env.run_ours(&exe, &[mode]);
        assert_eq!(out.code, Some(0), "{mode}: {}", out.stderr);
        assert!(
            out.stdout.ends_with("child 0, parent ran 2\n"),
            "{mode}: {}\n{}",
            out.stdout,
            out.stderr
        );
        assert!(out.stderr.contains(said), "{mode}: {}", out.stderr);
    }
    let out = env.run_ours(&exe, &["first"]);
    assert_eq!(out.code, None, "first: {}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "queueing\n");
    assert!(
        out.stderr.contains(
            "called between call_rcu_before_fork() and call_rcu_after_fork_parent() / \
             call_rcu_after_fork_child() on the thread that forks"
        ),
        "first: {}",
        out.stderr
    );
    let out = env.run_ours(&exe, &["child"]);
    assert_eq!(out.stdout, "child aborted\n", "child: {}", out.stderr);
    assert!(
        out.stderr
            .contains("in the child of fork() before call_rcu_after_fork_child()"),
        "child: {}",
        out.stderr
    );
}

/// `misuse MODE` against both libraries: both succeed with the same
/// output; returns ours's stderr.
fn misuse_same_as_liburcu(mode: &str) -> Option<String> {
    let env = Env::get(&MEMB)?;
    let exe = env.compile("misuse", &[], &["-lurcu-memb"]);
    let ours = env.run_ours(&exe, &[mode]);
    assert_eq!(ours.code, Some(0), "{mode} on ours: {}", ours.stderr);
    if env.real_liburcu.is_some() {
        let real = run_with_args(&exe, &[mode], None);
        assert_eq!(real.code, Some(0), "{mode} on liburcu: {}", real.stderr);
        assert_eq!(ours.stdout, real.stdout, "{mode}: the libraries differ");
    }
    Some(ours.stderr)
}

/// `call_rcu` from a signal handler, from the first call on: a handler
/// that interrupted this thread's own `call_rcu` (creating the default
/// call_rcu_data, or in push-back) waited for the lock it held (before: a
/// silent hang; liburcu completes). It now queues lock-free, and the
/// interrupted call hands the heads over.
#[test]
fn call_rcu_from_a_signal_handler_during_a_flood() {
    misuse_same_as_liburcu("signal");
}

/// A CPU number past `cpu_set_t` panicked in the call_rcu thread (before:
/// abort); liburcu runs the thread unbound, and so does ours, saying so.
#[test]
fn a_call_rcu_data_for_an_impossible_cpu_runs_unbound() {
    let Some(stderr) = misuse_same_as_liburcu("cpu_big") else {
        return;
    };
    assert!(
        stderr.contains("cannot bind a call_rcu thread to CPU 100000"),
        "{stderr}"
    );
}

/// An unbalanced `rcu_read_unlock` on a thread that never registered:
/// liburcu goes on, and ours too (before: abort), saying so.
#[test]
fn an_unbalanced_unlock_on_an_unregistered_thread_is_reported_not_fatal() {
    let Some(stderr) = misuse_same_as_liburcu("unlock_unreg") else {
        return;
    };
    assert!(
        stderr.contains("unbalanced unlock) on an unregistered thread"),
        "{stderr}"
    );
}

/// `call_rcu` with a NULL function (liburcu crashes on its call_rcu thread
/// later; ours dropped it silently): aborts at the call, saying why.
#[test]
fn call_rcu_with_a_null_function_aborts_with_the_reason() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("misuse", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &["null_func"]);
    assert_eq!(out.stdout, "queueing\n", "{}", out.stderr);
    assert_eq!(out.code, None, "not killed by SIGABRT: {}", out.stderr);
    assert!(
        out.stderr
            .contains("[error] rcu-reclaim-urcu: call_rcu() called with a NULL callback function"),
        "{}",
        out.stderr
    );
}

/// Freeing the thread's own, still installed call_rcu_data, then
/// `call_rcu` (liburcu crashes; ours used the freed one), and freeing one
/// twice (liburcu double-frees): each is reported and survived.
#[test]
fn freeing_an_installed_or_freed_call_rcu_data_is_reported() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("misuse", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &["free_mine"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "callbacks run: 1\n");
    assert!(
        out.stderr
            .contains("called on the calling thread's own call_rcu_data"),
        "{}",
        out.stderr
    );
    let out = env.run_ours(&exe, &["free_twice"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "second free returned\n");
    assert!(
        out.stderr.contains("on a call_rcu_data that is not live"),
        "{}",
        out.stderr
    );
}

#[test]
fn polled_grace_periods_and_extensions() {
    let Some(out) = run_extension("extensions") else {
        return;
    };
    assert_eq!(
        out.code,
        Some(0),
        "extensions failed:\n{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.stdout, "extensions ok\n");
}

/// `rcu_reclaim_memory_state()` in a 100 MiB cgroup before any
/// `call_rcu`: 0 at first, 2 once the program has written 88 MiB (over 85 %
/// of the limit). Before, the domain was bounded by the cgroup only when
/// the first `call_rcu` thread started: the answer stayed 0. Needs root
/// and a cgroup v1 memory hierarchy; says why and passes without running
/// where there is none.
#[test]
fn the_memory_state_reads_the_cgroup_before_any_call_rcu() {
    let Some(env) = Env::get(&MEMB) else { return };
    let include = format!("-I{}", env.crate_dir.join("include").display());
    let exe = env.compile("memory_state_in_cgroup", &[&include], &["-lurcu-memb"]);
    let Some(run) = env.run_ours_in_100_mib("state", &exe, &[]) else {
        return;
    };
    run.assert_lived("the program");
    assert_eq!(run.out.stdout, "before 0, after 2\n");
}

/// Threads that never called the library, whose pthread key destructor
/// (the key made once the library is set up, so that it runs after the
/// thread's thread-locals) takes a read-side section: the slot each one
/// registers there goes back at the thread's exit. Before, the
/// registration's thread-local, first set up inside that destructor,
/// never had its own destructor run: 200 threads kept 200 slots, and
/// every later grace period scanned them (after 20,000 such threads
/// `synchronize_rcu` took 1.4 ms instead of 0.4 us). Ours only: it reads
/// the domain's statistics (`rcu_reclaim.h`).
#[test]
fn sections_in_late_key_destructors_keep_no_slot() {
    let Some(env) = Env::get(&MEMB) else { return };
    let include = format!("-I{}", env.crate_dir.join("include").display());
    let exe = env.compile(
        "section_in_late_key_destructor",
        &[&include],
        &["-lurcu-memb"],
    );
    let out = env.run_ours(&exe, &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "slots kept by 200 exited threads: 0\n");
}

/// One `call_rcu_data` set for several CPUs, then
/// `free_all_cpu_call_rcu_data`: freed once, its callbacks all run, and
/// nothing said (before, its second free said the program had freed a
/// `call_rcu_data` that was not live). Ours only: liburcu frees it once
/// per CPU.
#[test]
fn one_call_rcu_data_on_several_cpus_is_freed_once() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("one_crdp_on_several_cpus", &[], &["-lurcu-memb"]);
    let out = env.run_ours(&exe, &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "callbacks run: 1000\n");
    assert!(!out.stderr.contains("[error]"), "{}", out.stderr);
}

/// `rcu_barrier` and `rcu_defer_barrier` from a `defer_rcu` callback
/// that the callback engine runs (deferred from another one past a full
/// queue) say what they cannot wait for and return, as from other
/// callbacks (before: a panic message naming the library's `barrier()`).
/// Ours only: liburcu hangs.
#[test]
fn barriers_in_a_defer_callback_run_by_the_engine_say_why() {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile("barrier_in_engine_defer_callback", &[], &["-lurcu-memb"]);
    for (arg, said) in [
        ("barrier", "rcu_barrier() called from a defer_rcu callback"),
        (
            "defer_barrier",
            "rcu_defer_barrier() called from a defer_rcu callback",
        ),
    ] {
        let out = env.run_ours(&exe, &[arg]);
        assert_eq!(out.code, Some(0), "{arg}: {}{}", out.stdout, out.stderr);
        assert_eq!(out.stdout, "done 1\n", "{arg}");
        assert!(out.stderr.contains(said), "{arg}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{arg}: {}", out.stderr);
    }
}

#[test]
fn exports_every_symbol_of_the_memb_abi() {
    let Some(env) = Env::get(&MEMB) else { return };
    let ours = harness::dynamic_symbols(&env.lib);
    let missing: Vec<_> = EXPORTS.iter().filter(|s| !ours.contains(**s)).collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
    // Everything the real library exports.
    if let Some(real) = &env.real_liburcu {
        let missing: Vec<_> = harness::dynamic_symbols(real)
            .into_iter()
            .filter(|s| !ours.contains(s))
            .collect();
        assert!(
            missing.is_empty(),
            "liburcu-memb.so.8 exports these, we do not: {missing:?}"
        );
    }
}

/// The flavor table's symbol has 0.13's size, liburcu's here: a program
/// built against it copies it at load without the loader's "has different
/// size in shared object" warning (0.14's two entries follow it in memory:
/// `c/extensions.c` calls them through it).
#[test]
fn the_flavor_tables_symbol_has_0_13s_size() {
    let Some(env) = Env::get(&MEMB) else { return };
    env.assert_flavor_table_has_0_13s_size("urcu_memb_flavor");
}

/// Every data symbol of liburcu-memb.so.8 (the grace-period word, the
/// thread-local reader block, `urcu_memb_has_sys_membarrier`, the flavor
/// table, the futex fallbacks' lock and condition) has liburcu's ELF type,
/// binding and size here: programs built with `_LGPL_SOURCE` copy the
/// first ones at load and address the reader block at liburcu's offsets.
#[test]
fn data_symbols_have_liburcus_type_binding_and_size() {
    let Some(env) = Env::get(&MEMB) else { return };
    env.assert_data_symbols_match_liburcu();
}

#[test]
fn soname_default_and_drop_in() {
    let Some(env) = Env::get(&MEMB) else { return };
    assert_eq!(harness::soname(&env.lib), Some(harness::current_soname()));
    assert_eq!(
        harness::soname(&env.dropin_dir.join("liburcu-memb.so.8")).as_deref(),
        Some("liburcu-memb.so.8")
    );
}

/// Runs the stress program `prog` with `args`, built with `cflags`,
/// against ours and, as `reference` says, against liburcu: each must exit
/// 0 (the program's watchdog turns a hang into exit 2) and, where both
/// ran, print the same verdicts.
fn stress(prog: &str, cflags: &[&str], args: &[&str], reference: Reference) {
    let Some(env) = Env::get(&MEMB) else { return };
    let exe = env.compile(prog, cflags, &["-lurcu-memb"]);
    let ours = env.run_ours(&exe, args);
    assert_eq!(
        ours.code,
        Some(0),
        "{prog} {cflags:?} {args:?} against rcu-reclaim-urcu failed:\n{}{}",
        ours.stdout,
        ours.stderr
    );
    if reference == Reference::Skip || env.real_liburcu.is_none() {
        return;
    }
    // Debian's liburcu is the yardstick, not the library under test. Where
    // it has been seen to hang now and then (handlers calling `call_rcu`
    // while the interrupted thread is inside liburcu's own locks: one clean
    // clone's CI run and one AddressSanitizer run), it gets a second try,
    // and two hangs in a row are noted and leave the comparison out.
    let tries = if reference == Reference::MayHang {
        2
    } else {
        1
    };
    for attempt in 1..=tries {
        let real = run_with_args(&exe, args, None);
        let hung = real.code == Some(2) && real.stderr.contains("HANG");
        if hung && attempt < tries {
            continue;
        }
        if hung && reference == Reference::MayHang {
            eprintln!(
                "note: {prog} hung {tries} times on Debian's liburcu (seen before \
                 on that library); compared against ours only"
            );
            return;
        }
        assert_eq!(real.code, Some(0), "{prog} on liburcu: {}", real.stderr);
        assert_eq!(ours.stdout, real.stdout, "{prog}: the libraries differ");
        return;
    }
}

/// What [`stress`] does with Debian's liburcu, where it is installed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reference {
    /// Run it too: it must pass and print what ours prints.
    Compare,
    /// Compare, but a hang of liburcu's (twice running) is noted, not failed.
    MayHang,
    /// Ours only: liburcu is known to fail this program.
    Skip,
}

/// Stress, 1 s: 8 threads mix `call_rcu`, `defer_rcu`, `synchronize_rcu`,
/// `rcu_barrier`, nested sections, per-thread `call_rcu_data` made and
/// freed, register/unregister churn, while another thread makes and frees
/// the per-CPU `call_rcu_data`: every callback runs exactly once. Then
/// with `_LGPL_SOURCE`, and (ours only: liburcu's registry keeps the dead
/// thread's TLS and crashes) with threads exiting registered, their
/// `call_rcu_data` still installed.
#[test]
fn stress_mixed_calls_run_every_callback_once() {
    stress("stress_mix", &[], &["8", "1"], Reference::Compare);
    stress(
        "stress_mix",
        &["-D_LGPL_SOURCE"],
        &["8", "1"],
        Reference::Compare,
    );
    stress(
        "stress_mix",
        &[],
        &["8", "1", "exit-registered"],
        Reference::Skip,
    );
}

/// Stress: callbacks that queue three more each (trees five deep), some
/// on per-thread `call_rcu_data` freed while their trees still grow, some
/// calling `synchronize_rcu`, while an unregistered thread loops on
/// `rcu_barrier`: every callback runs exactly once and the trees end.
#[test]
fn stress_callbacks_queueing_callbacks_end_and_run_once() {
    stress("stress_chain", &[], &[], Reference::Compare);
    stress("stress_chain", &["-D_LGPL_SOURCE"], &[], Reference::Compare);
}

/// Stress, 1 s: handlers that take a section and `call_rcu` interrupt
/// threads inside `create_call_rcu_data`, `call_rcu_data_free`,
/// `rcu_barrier`, `synchronize_rcu`, register/unregister and `defer_rcu`:
/// no hang, every callback once.
#[test]
fn stress_call_rcu_from_signal_handlers_during_churn() {
    stress("stress_signal_churn", &[], &[], Reference::MayHang);
}

/// `rcu_read_ongoing()` from handlers that interrupted `malloc` on threads
/// that never registered: first as the program's first liburcu call, then
/// on 100 short-lived threads. The domain is made as the library loads
/// (before: at the first call, which a handler could interrupt and wait
/// for; 4 runs in 10 hung), and the query touches no thread-local with a
/// destructor (before: it registered one, which allocates; 5 in 5 hung).
#[test]
fn read_ongoing_in_handlers_that_interrupted_malloc() {
    stress(
        "read_ongoing_in_handlers",
        &[],
        &["100"],
        Reference::MayHang,
    );
}

/// Stress, 1 s: two threads loop on `malloc`/`free` while the main thread
/// signals them and each handler queues a `call_rcu`, with a
/// `call_rcu_data` for every CPU and no default one: no handler waits for
/// the `malloc` lock its thread holds (the drop-in once created the
/// default from such a handler and hung, about once in 50 runs of
/// `stress_fork`), every callback runs once, and, as with liburcu, no
/// default `call_rcu_data` is created (no thread is started for one).
#[test]
fn stress_call_rcu_from_handlers_that_interrupted_malloc() {
    stress("signal_in_malloc", &[], &["1"], Reference::MayHang);
    stress(
        "signal_in_malloc",
        &["-D_LGPL_SOURCE"],
        &["1"],
        Reference::MayHang,
    );
}

/// Stress: 10 forks through the call_rcu hooks during floods on the
/// default, a per-thread and the per-CPU `call_rcu_data` and `defer_rcu`,
/// with handlers queueing `call_rcu`; each child uses `call_rcu`,
/// `defer_rcu`, a `call_rcu_data` of its own, `synchronize_rcu` and
/// `rcu_barrier` and sees its callbacks run once. Ours only: liburcu's
/// children hang (its call_rcu lock held at the fork).
#[test]
fn stress_forks_during_floods() {
    stress("stress_fork", &[], &["10"], Reference::Skip);
    stress("stress_fork", &["-D_LGPL_SOURCE"], &["10"], Reference::Skip);
}

/// Stress, about 2.5 s: 300 forks through the call_rcu hooks, 3 ms apart,
/// while four threads make, fill and free `call_rcu_data`s (what a freed
/// one still holds goes to the default), one runs `rcu_barrier`, and
/// handlers queue `call_rcu`s inside interrupted calls (handed over on
/// their way out). Each child's `rcu_barrier` must run every callback
/// whose `call_rcu` returned before the fork: before the fork hooks held
/// the hand-offs back, a chain in a thread's hands at the fork was lost in
/// the child (2 runs in 9 of this program). Ours only: Debian's liburcu
/// hung in 4 runs of 4.
#[test]
fn forks_lose_no_chain_being_handed_over() {
    stress("fork_during_handoff", &[], &["300"], Reference::Skip);
}

/// Stress, about 1 s: 200 forks, each with a `synchronize_rcu` between
/// `call_rcu_before_fork` and `fork` (as an atfork prepare handler may),
/// while a handler queues `call_rcu`s and a thread loops on
/// `rcu_barrier`: the barrier once waited for the fork's hand-off lock
/// inside a read-side section, and the grace period for it (a hang in
/// every run). Every callback runs once, as on liburcu.
#[test]
fn a_grace_period_in_the_fork_window_beside_barriers_and_handlers() {
    stress("sync_in_fork_window", &[], &["200"], Reference::MayHang);
}

/// Threads that end with their own `call_rcu_data` installed, freed by a
/// pthread key destructor of the program's that finds it with
/// `get_thread_call_rcu_data` (the key made after the drop-in's own):
/// each finds it, every callback runs once, no `call_rcu` thread is left
/// behind, as with liburcu. The drop-in's uninstall at a thread's end once
/// ran first (a Rust thread-local destructor): 20 of 20 found NULL.
#[test]
fn a_call_rcu_data_freed_in_a_key_destructor() {
    stress("crdp_freed_in_key_destructor", &[], &[], Reference::Compare);
}
