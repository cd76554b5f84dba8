//! The C ABI, exercised by C programs of our own compiled against Debian's
//! liburcu-dev 0.13 `<urcu-qsbr.h>` (with and without `_LGPL_SOURCE`): each one runs
//! against the real `liburcu-qsbr.so.8` and against this library dropped in
//! as `liburcu-qsbr.so.8` through `LD_LIBRARY_PATH`, and must print the
//! same.
//!
//! The harness is the memb drop-in's (`rcu-reclaim-urcu/tests/harness`),
//! given this library's names. The tests build the cdylib themselves
//! (`cargo build -p rcu-reclaim-urcu-qsbr`, same profile and target
//! directory). They skip, saying why, where gcc, the liburcu-dev headers or
//! binutils are missing.

#[path = "../../rcu-reclaim-urcu/tests/harness/mod.rs"]
mod harness;

use harness::{run, run_with_args, Env, QSBR};

/// What this library exports beyond liburcu 0.13's: 0.14's polled pair.
const ADDED: &[&str] = &[
    "urcu_qsbr_start_poll_synchronize_rcu",
    "urcu_qsbr_poll_state_synchronize_rcu",
];

/// Builds `prog` with `cflags`, runs it against liburcu and against ours,
/// and checks both succeed with the same output.
fn same_as_liburcu_with(prog: &str, cflags: &[&str]) {
    let Some(env) = Env::get(&QSBR) else { return };
    // Linked against the drop-in (NEEDED: its SONAME, liburcu-qsbr.so.8).
    let exe = env.compile(prog, cflags, &["-lurcu-qsbr"]);
    let ours = env.run_ours(&exe, &[]);
    assert_eq!(
        ours.code,
        Some(0),
        "{prog} against rcu-reclaim-urcu-qsbr failed:\n{}{}",
        ours.stdout,
        ours.stderr
    );
    match &env.real_liburcu {
        Some(_) => {
            let real = run(&exe, None);
            assert_eq!(
                real.code,
                Some(0),
                "{prog} against liburcu-qsbr failed:\n{}",
                real.stderr
            );
            assert_eq!(
                ours.stdout, real.stdout,
                "{prog}: rcu-reclaim-urcu-qsbr and liburcu-qsbr differ"
            );
        }
        None => eprintln!("note: liburcu-qsbr.so.8 not found; {prog} ran against ours only"),
    }
    assert!(!ours.stdout.is_empty());
}

fn same_as_liburcu(prog: &str) {
    same_as_liburcu_with(prog, &[]);
}

#[test]
fn readers_report_quiescent_states_writers_poison_after_synchronize() {
    same_as_liburcu("readers_writers");
}

/// `errno` is the caller's after every call, as with liburcu-qsbr (before:
/// 0 after the first registration, `ENOENT` after the first `call_rcu`,
/// `ETIMEDOUT` after a quiescent state that paid a flood's push-back).
#[test]
fn calls_leave_errno_alone() {
    same_as_liburcu("errno_kept");
}

/// With `DEBUG_RCU`, `rcu_read_lock`/`unlock` are calls into the library
/// instead of empty inline functions.
#[test]
fn readers_writers_with_out_of_line_read_lock() {
    same_as_liburcu_with("readers_writers", &["-DDEBUG_RCU"]);
}

/// Readers hold what they read across a yield before their next quiescent
/// state: a grace period that ended early shows as poison.
#[test]
fn readers_holding_across_a_yield_never_see_poison() {
    same_as_liburcu("hold_across_yield");
}

/// A thread that exits online without unregistering: the grace period in
/// progress ends at its exit (it used to wait for the 21 s stall timeout,
/// parked on a futex word nothing woke). Ours only: liburcu waits for ever.
#[test]
fn a_thread_exiting_online_lets_the_grace_period_in_progress_end() {
    let Some(env) = Env::get(&QSBR) else { return };
    for flags in [&[][..], &["-D_LGPL_SOURCE"][..]] {
        let exe = env.compile("exit_online", flags, &["-lurcu-qsbr"]);
        let out = env.run_ours(&exe, &[]);
        assert_eq!(out.code, Some(0), "{flags:?}: {}", out.stderr);
        assert_eq!(out.stdout, "synchronize_rcu returned\n");
    }
}

/// Misuse in callbacks that deadlocks liburcu-qsbr (and did ours): a
/// callback freeing its own `call_rcu_data`, and callbacks on two
/// call_rcu threads each calling `rcu_barrier`. Ours returns, saying so.
#[test]
fn misuse_in_callbacks_returns_with_a_message() {
    let Some(env) = Env::get(&QSBR) else { return };
    let exe = env.compile("callback_misuse", &[], &["-lurcu-qsbr"]);
    for (mode, stdout, message) in [
        (
            "free",
            "free returned; callbacks run: 4\n",
            "call_rcu_data_free() called from a callback of that call_rcu_data",
        ),
        (
            "barriers",
            "both barriers returned\n",
            "also waits in rcu_barrier()",
        ),
    ] {
        let out = env.run_ours(&exe, &[mode]);
        assert_eq!(out.code, Some(0), "{mode}: {}", out.stderr);
        assert_eq!(out.stdout, stdout, "{mode}: {}", out.stderr);
        assert!(
            out.stderr.contains(message),
            "{mode}: no message:\n{}",
            out.stderr
        );
    }
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

/// A `call_rcu` flood of heavy objects from online QSBR threads in a
/// 100 MiB memory cgroup: 4 registered threads, online throughout, queue
/// heads of 4 KiB, then 16 KiB objects (a quiescent state every 64 calls),
/// for 2 s each. (64 KiB objects with a quiescent state every 8 calls
/// lived too, by hand, at 87-94 MiB: too near the limit for a test on a
/// loaded CI machine; every 64 calls, the 4 MiB a thread queues between
/// two quiescent states was killed one run in five.) An online thread cannot wait in `call_rcu` (no quiescent state):
/// over the push-back mark it owes the wait and pays it, offline, at its
/// next quiescent state. Before, it was not held back at all and the
/// program was OOM-killed at every size, as it is on liburcu-qsbr. Needs
/// root and a cgroup v1 memory hierarchy; says why and passes without
/// running where there is none.
#[test]
fn online_threads_flooding_call_rcu_with_heavy_objects_keep_to_the_cgroup_limit() {
    let Some(env) = Env::get(&QSBR) else { return };
    let exe = env.compile("flood_heavy", &[], &["-lurcu-qsbr"]);
    for (size, every) in [("4096", "64"), ("16384", "64")] {
        let Some(run) = env.run_ours_in_100_mib("qsbr-flood", &exe, &["4", "2", size, every])
        else {
            return;
        };
        run.assert_flood_lived_and_ran_all(&format!(
            "{size}-byte objects, a quiescent state every {every} calls"
        ));
    }
}

/// The same flood from a program built with `_LGPL_SOURCE`, whose inlined
/// quiescent states never pay a push-back: while memory is short each
/// `call_rcu` over the mark takes the wait's time itself (online). 4 KiB
/// objects peaked at 71-72 MiB; it was OOM-killed in every run before, as
/// it is on liburcu-qsbr. (16 KiB objects lived at 91-93 MiB: too near the
/// limit for a loaded CI machine.)
#[test]
fn lgpl_threads_flooding_call_rcu_with_heavy_objects_keep_to_the_cgroup_limit() {
    let Some(env) = Env::get(&QSBR) else { return };
    let exe = env.compile("flood_heavy", &["-D_LGPL_SOURCE"], &["-lurcu-qsbr"]);
    let Some(run) = env.run_ours_in_100_mib("qsbr-lgpl-flood", &exe, &["4", "2", "4096", "64"])
    else {
        return;
    };
    run.assert_flood_lived_and_ran_all(
        "4096-byte objects from _LGPL_SOURCE threads, a quiescent state every 64 calls",
    );
}

#[test]
fn offline_threads_never_block_synchronize_rcu() {
    same_as_liburcu("offline");
}

#[test]
fn call_rcu_flood_from_online_threads_then_barrier() {
    same_as_liburcu("call_rcu_flood");
}

/// `call_rcu` is no quiescent state, on its first call (which creates the
/// default `call_rcu_data`) or past the push-back mark: an online reader
/// holding a reference across it still holds up `synchronize_rcu`.
#[test]
fn call_rcu_from_an_online_reader_is_no_quiescent_state() {
    same_as_liburcu("call_rcu_online");
}

#[test]
fn defer_rcu_more_than_a_queue_then_barriers() {
    same_as_liburcu("defer");
}

/// A pthread key destructor of the program's frees its thread's object
/// with `defer_rcu` and unregisters, the key made once the library is set
/// up, so that it runs after the library's thread-locals and after std's
/// own thread-exit hook: every deferred call runs, as on liburcu-qsbr.
/// Ours aborted in every run ("use of std::thread::current() is not
/// possible after the thread's local data has been destroyed"): the call,
/// its queue gone, went to the domain's engine, whose first use on the
/// thread named it through std's handle, gone by then.
#[test]
fn defer_rcu_in_a_key_destructor_that_runs_after_the_librarys() {
    same_as_liburcu("defer_in_key_destructor");
    same_as_liburcu_with("defer_in_key_destructor", &["-D_LGPL_SOURCE"]);
}

#[test]
fn fork_with_pending_callbacks_from_an_online_thread() {
    same_as_liburcu("fork");
}

/// `synchronize_rcu` between `call_rcu_before_fork` and
/// `call_rcu_after_fork_parent` on the forking thread, as liburcu-qsbr
/// allows: the domain is let go for the wait (before: the domain, held
/// stopped for the fork, panicked inside the exported function and the
/// program aborted). Same output as liburcu.
#[test]
fn grace_periods_between_the_fork_hooks_run() {
    same_as_liburcu("fork_window");
}

/// liburcu-cds's `cds_lfht` on the QSBR drop-in, with and without
/// `_LGPL_SOURCE`: it reaches the flavor only through `urcu_qsbr_flavor`
/// (its resize worker registers and goes offline/online through the
/// table). Online readers never see a freed node during replaces, deletes
/// and resizes, and every node is freed once, as on liburcu-qsbr.
#[test]
fn cds_lfht_from_liburcu_cds_on_the_drop_in() {
    let Some(env) = Env::get(&QSBR) else { return };
    for cflags in [&[][..], &["-D_LGPL_SOURCE"][..]] {
        let exe = env.compile("lfht", cflags, &["-lurcu-cds", "-lurcu-qsbr"]);
        let ours = env.run_ours(&exe, &[]);
        assert_eq!(ours.code, Some(0), "{cflags:?}: {}", ours.stderr);
        assert_eq!(
            ours.stdout, "freed 40960 bad 0\n",
            "{cflags:?}: {}",
            ours.stderr
        );
        if env.real_liburcu.is_some() {
            let real = run(&exe, None);
            assert_eq!(real.code, Some(0), "{cflags:?} on liburcu: {}", real.stderr);
            assert_eq!(ours.stdout, real.stdout, "{cflags:?}");
        }
    }
}

/// `fork()` from a `call_rcu` callback with the hooks installed by
/// `pthread_atfork`: `call_rcu_before_fork` waited for the caller's own
/// call_rcu thread to pause (before: a silent hang, as on liburcu-qsbr, so
/// ours only). The child uses call_rcu and exits; the parent's callbacks
/// around the fork each run once.
#[test]
fn fork_from_a_call_rcu_callback() {
    let Some(env) = Env::get(&QSBR) else { return };
    env.assert_ours_prints(
        "fork_in_callback",
        &["-lurcu-qsbr"],
        "child exit status 0\ncallbacks around a fork in a callback: ok\n",
    );
}

/// A fork through the hooks while a `call_rcu` callback is about to call
/// `rcu_defer_barrier`: `call_rcu_before_fork` held the `defer_rcu` flush
/// lock while it waited for the call_rcu thread to finish its batch, whose
/// callback waited for that lock (before: a silent deadlock). Ours only:
/// liburcu-qsbr can deadlock here too (its online call_rcu thread waits
/// online for its defer mutex, whose holder waits for that thread).
#[test]
fn a_fork_waits_for_a_callback_flushing_defer_rcu() {
    let Some(env) = Env::get(&QSBR) else { return };
    let exe = env.compile(
        "fork_during_defer_barrier_in_callback",
        &[],
        &["-lurcu-qsbr"],
    );
    let out = env.run_ours(&exe, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "child: forked after the callback's barrier\n\
         parent: callback and deferred call ran: 2\n",
        "{}",
        out.stderr
    );
}

/// A call_rcu callback that reads RCU-protected data is protected until it
/// returns, as on liburcu-qsbr, whose call_rcu thread is online while it
/// invokes callbacks: `rcu_read_lock` is empty there (or inlined), so
/// nothing else protects it. The drop-in's call_rcu threads were no QSBR
/// readers (before: the callback read the poisoned old version, but with
/// `DEBUG_RCU`).
#[test]
fn call_rcu_callbacks_read_online_as_liburcus_call_rcu_thread() {
    for flags in [&[][..], &["-D_LGPL_SOURCE"][..], &["-DDEBUG_RCU"][..]] {
        same_as_liburcu_with("section_in_callback", flags);
    }
}

/// `call_rcu_data_free` of an idle call_rcu_data is no quiescent state:
/// an online reader that calls it inside its section still holds up a
/// writer's grace period (before: the drop-in went offline for the free,
/// and the reader read the writer's poison, every run).
#[test]
fn freeing_an_idle_call_rcu_data_online_is_no_quiescent_state() {
    for flags in [&[][..], &["-D_LGPL_SOURCE"][..]] {
        same_as_liburcu_with("crdp_free_online", flags);
    }
}

/// `rcu_defer_barrier`, `rcu_defer_barrier_thread` and
/// `rcu_defer_unregister_thread` with nothing queued are no quiescent
/// state, as liburcu skips their grace period (before: the drop-in went
/// offline for each, and the reader read the writer's poison).
#[test]
fn defer_barriers_with_nothing_queued_online_are_no_quiescent_state() {
    for flags in [&[][..], &["-D_LGPL_SOURCE"][..]] {
        same_as_liburcu_with("defer_barrier_online", flags);
    }
}

/// Programs built with `_LGPL_SOURCE`: `rcu_quiescent_state`,
/// `rcu_thread_offline`/`online` and `rcu_read_ongoing` are inlined and
/// read `urcu_qsbr_gp` and write `urcu_qsbr_reader` directly (before, the
/// loader refused them: undefined symbol `urcu_qsbr_gp`). A grace period
/// that missed an inlined quiescent state's absence shows as poison in
/// `readers_writers`.
#[test]
fn lgpl_source_programs_report_quiescent_states_inline() {
    same_as_liburcu("lgpl");
    same_as_liburcu_with("hold_across_yield", &["-D_LGPL_SOURCE"]);
    same_as_liburcu_with("readers_writers", &["-D_LGPL_SOURCE"]);
    same_as_liburcu_with("offline", &["-D_LGPL_SOURCE"]);
    same_as_liburcu_with("fork", &["-D_LGPL_SOURCE"]);
}

/// `synchronize_rcu` inside `rcu_read_lock` on an offline thread (built
/// with `DEBUG_RCU`, so the lock is a call): liburcu-qsbr does not protect
/// that section and returns; ours aborted. It now ends the section for the
/// wait, says so, and returns, printing what liburcu prints.
#[test]
fn synchronize_inside_a_lock_taken_offline_returns_with_a_message() {
    wait_inside_a_lock_taken_offline(
        "sync_in_offline_lock",
        "synchronize_rcu returned\n",
        "synchronize_rcu() called inside rcu_read_lock() on a thread that is not online",
    );
}

/// The same for `rcu_barrier`: liburcu-qsbr waits for the callback
/// queued in such a section; ours printed an error and returned before it
/// ran. It now waits too, the section ended meanwhile, saying so.
#[test]
fn barrier_inside_a_lock_taken_offline_waits_with_a_message() {
    wait_inside_a_lock_taken_offline(
        "barrier_in_offline_lock",
        "rcu_barrier waited\n",
        "rcu_barrier() called inside rcu_read_lock() on a thread that is not online",
    );
}

/// Runs `misuse.c`'s `mode` (built with `DEBUG_RCU`) on ours: it exits 0,
/// prints `stdout` and says `message` on stderr; Debian's, where
/// installed, prints the same.
fn wait_inside_a_lock_taken_offline(mode: &str, stdout: &str, message: &str) {
    let Some(env) = Env::get(&QSBR) else { return };
    let exe = env.compile("misuse", &["-DDEBUG_RCU"], &["-lurcu-qsbr"]);
    let ours = env.run_ours(&exe, &[mode]);
    assert_eq!(ours.code, Some(0), "{}", ours.stderr);
    assert_eq!(ours.stdout, stdout);
    assert!(ours.stderr.contains(message), "{}", ours.stderr);
    if env.real_liburcu.is_some() {
        let real = run_with_args(&exe, &[mode], None);
        assert_eq!(real.code, Some(0), "{}", real.stderr);
        assert_eq!(real.stdout, ours.stdout);
    }
}

/// Registering twice and unregistering a thread never registered
/// (liburcu asserts): ours goes on, saying so.
#[test]
fn registering_twice_or_unregistering_unregistered_is_reported() {
    let Some(env) = Env::get(&QSBR) else { return };
    let exe = env.compile("misuse", &[], &["-lurcu-qsbr"]);
    for (mode, out_line, msg) in [
        (
            "register_twice",
            "registered twice\n",
            "rcu_register_thread() called on a thread that is already registered",
        ),
        (
            "unregister_unregistered",
            "unregistered without registering\n",
            "rcu_unregister_thread() called on a thread that is not registered",
        ),
    ] {
        let out = env.run_ours(&exe, &[mode]);
        assert_eq!(out.code, Some(0), "{mode}: {}", out.stderr);
        assert_eq!(out.stdout, out_line, "{mode}");
        assert!(out.stderr.contains(msg), "{mode}: {}", out.stderr);
    }
}

#[test]
fn exports_the_qsbr_abi_of_liburcu_0_13() {
    let Some(env) = Env::get(&QSBR) else { return };
    let ours = harness::dynamic_symbols(&env.lib);
    for s in ADDED {
        assert!(ours.contains(*s), "{s} is not exported");
    }
    if let Some(real) = &env.real_liburcu {
        let real = harness::dynamic_symbols(real);
        let mut missing: Vec<_> = real.iter().filter(|s| !ours.contains(*s)).collect();
        missing.sort();
        assert!(
            missing.is_empty(),
            "liburcu-qsbr.so.8 exports these, we do not: {missing:?}"
        );
        let mut extra: Vec<_> = ours
            .iter()
            .filter(|s| !ADDED.contains(&s.as_str()) && !real.contains(*s))
            .collect();
        extra.sort();
        assert!(
            extra.is_empty(),
            "we export these, liburcu-qsbr.so.8 does not: {extra:?}"
        );
    }
}

/// As the memb drop-in's: 0.13's size for `urcu_qsbr_flavor`, 0.14's
/// polled pair after it.
#[test]
fn the_flavor_table_has_0_13s_size_and_0_14s_pair_after_it() {
    let Some(env) = Env::get(&QSBR) else { return };
    env.assert_flavor_table_has_0_13s_size("urcu_qsbr_flavor");
    let path = std::ffi::CString::new(env.lib.to_str().unwrap()).unwrap();
    // SAFETY: loads the drop-in (its initialisers only set up its state)
    // and reads its table's 16 words and two symbols' addresses.
    unsafe {
        let lib = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!lib.is_null());
        let table = libc::dlsym(lib, c"urcu_qsbr_flavor".as_ptr()).cast::<*const libc::c_void>();
        assert!(!table.is_null());
        for (i, name) in [
            (0, c"urcu_qsbr_read_lock"),
            (3, c"urcu_qsbr_quiescent_state"),
            (14, c"urcu_qsbr_start_poll_synchronize_rcu"),
            (15, c"urcu_qsbr_poll_state_synchronize_rcu"),
        ] {
            assert_eq!(
                *table.add(i),
                libc::dlsym(lib, name.as_ptr()).cast_const(),
                "{name:?}"
            );
        }
    }
}

/// As the memb drop-in's: every data symbol of liburcu-qsbr.so.8
/// (`urcu_qsbr_gp`, the thread-local `urcu_qsbr_reader`, the flavor table,
/// the futex fallbacks' lock and condition) has liburcu's ELF type, binding
/// and size here.
#[test]
fn data_symbols_have_liburcus_type_binding_and_size() {
    let Some(env) = Env::get(&QSBR) else { return };
    env.assert_data_symbols_match_liburcu();
}

#[test]
fn soname_default_and_drop_in() {
    let Some(env) = Env::get(&QSBR) else { return };
    assert_eq!(harness::soname(&env.lib), Some(harness::current_soname()));
    assert_eq!(
        harness::soname(&env.dropin_dir.join("liburcu-qsbr.so.8")).as_deref(),
        Some("liburcu-qsbr.so.8")
    );
}

/// Stress, 1 s: two online threads loop on `malloc`/`free` (reporting
/// quiescent states) while the main thread, offline, signals them and each
/// handler queues a `call_rcu`, with a `call_rcu_data` for every CPU and
/// no default one: no handler waits for the `malloc` lock its thread
/// holds, every callback runs once, and no default `call_rcu_data` is
/// created, as with liburcu-qsbr.
#[test]
fn call_rcu_from_handlers_that_interrupted_malloc() {
    same_as_liburcu("signal_in_malloc_qsbr");
}

/// The memb drop-in's `read_ongoing_in_handlers`: `rcu_read_ongoing()`
/// from handlers that interrupted `malloc` on threads never registered
/// (before: 3 runs in 5 hung as the first call, 5 in 5 on fresh threads).
#[test]
fn read_ongoing_in_handlers_that_interrupted_malloc() {
    same_as_liburcu("read_ongoing_in_handlers_qsbr");
}

/// Stress, about 1 s: 200 forks, each with a `synchronize_rcu` in the fork
/// window, beside an online thread's handler queueing `call_rcu`s and a
/// thread looping on `rcu_barrier`: the barrier once waited, online, for
/// the fork's hand-off lock (a hang in every run). Every callback once.
#[test]
fn a_grace_period_in_the_fork_window_beside_barriers_and_handlers() {
    same_as_liburcu("sync_in_fork_window_qsbr");
}

/// Stress, 1 s: readers announce quiescent states, go offline and online
/// around sleeps, `synchronize_rcu` and `rcu_barrier`, re-register; 3
/// updaters replace pointers (`call_rcu` or `synchronize_rcu` then free,
/// poisoning) and make and free per-thread `call_rcu_data`: no poison
/// seen, every callback once. Also with `_LGPL_SOURCE`, and (ours only:
/// liburcu-qsbr's registry keeps the dead thread) with readers exiting
/// online.
#[test]
fn stress_online_offline_with_call_rcu_floods() {
    same_as_liburcu("stress_online_offline");
    same_as_liburcu_with("stress_online_offline", &["-D_LGPL_SOURCE"]);
    let Some(env) = Env::get(&QSBR) else { return };
    let exe = env.compile("stress_online_offline", &[], &["-lurcu-qsbr"]);
    let out = env.run_ours(&exe, &["1", "exit-online"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "poison seen: 0\nqsbr: ok\n");
}

/// A thread built with `_LGPL_SOURCE` never pays a push-back at its
/// (inlined) quiescent states: it keeps at most one call's wait, so its
/// `rcu_unregister_thread` beside threads still flooding `call_rcu` is
/// prompt. Before, it paid there the waits of every call over the mark of
/// its life (seconds).
#[test]
fn an_lgpl_thread_that_flooded_unregisters_promptly_beside_a_flood() {
    same_as_liburcu_with("lgpl_unregister_beside_flood", &[]);
}
