//! # rcu-reclaim-urcu-common
//!
//! The half of rcu-reclaim's liburcu drop-ins that does not depend on the
//! flavor: `call_rcu` and the `call_rcu_data` family, `rcu_barrier`, the
//! `defer_rcu` family, the fork hooks, the pointer helpers, and the C each
//! drop-in compiles in (`csrc/`: liburcu's data layout, its futex
//! fallbacks, and `struct rcu_flavor_struct` with the flavor's functions).
//! It is written once, here, and used by
//! `rcu-reclaim-urcu` (`liburcu-memb.so.8`) and `rcu-reclaim-urcu-qsbr`
//! (`liburcu-qsbr.so.8`); it has no stable API of its own.
//!
//! A drop-in implements [`Flavor`] (its domain, and what its read side
//! means for a wait) and expands [`export_flavor!`] once, which defines the
//! C symbols (`urcu_<flavor>_call_rcu`, ...) in the drop-in's own cdylib:
//! nothing here is `#[no_mangle]`, so each library exports only its own
//! flavor's names. The state (the `call_rcu_data` list, the `defer_rcu`
//! queues, the fork hooks) is in statics: each cdylib that links this crate
//! has its own copy, for its one flavor, so a program that loads both
//! drop-ins gets two independent sets, as with liburcu's two libraries.
//!
//! Every function here is called from C: none unwinds. Misuse that liburcu
//! reports and survives prints an `[error]` line and returns; misuse that
//! would deadlock or corrupt prints the reason and aborts.

pub mod call_rcu;
mod crdp;
pub mod defer;
pub mod fork;
mod fork_window;
pub mod ignored_registrations;
pub mod pointer;
pub mod poll;

use rcu_reclaim::Rcu;

pub use crdp::{CallRcuData, RcuFunc, RcuHead};
pub use defer::DeferFunc;
pub use fork::UrcuAtfork;

/// What a drop-in tells the shared code about its flavor.
///
/// Every wait for a grace period made by the shared code (a full
/// `defer_rcu` queue flushed on its thread, `rcu_barrier`,
/// `rcu_defer_barrier`, push-back in `call_rcu`, `call_rcu_before_fork`)
/// runs inside [`offline_while`](Flavor::offline_while), after a check of
/// [`in_read_section`](Flavor::in_read_section); `call_rcu`, which liburcu
/// allows inside read-side sections, never puts an [`online`](Flavor::online)
/// thread offline (its push-back is owed instead, and paid at the thread's
/// next quiescent state: see [`Flavor::push_back_owed`]).
pub trait Flavor: 'static {
    /// The domain behind every exported function.
    fn rcu() -> &'static Rcu;

    /// Whether the calling thread is inside a read-side section that a wait
    /// for a grace period would wait for, and that it cannot leave for the
    /// wait (memb: any section; QSBR: a section taken while not online,
    /// since an online thread goes offline for the wait).
    fn in_read_section() -> bool;

    /// Runs `f`, which may wait for grace periods, with the calling thread
    /// not holding them up (QSBR: offline for the call if it is online, as
    /// liburcu-qsbr's `synchronize_rcu` does; memb: just `f()`). The caller
    /// checked [`in_read_section`](Flavor::in_read_section) first.
    fn offline_while<R>(f: impl FnOnce() -> R) -> R;

    /// Runs `f` (a wait that `what` names) with the sections that
    /// [`in_read_section`](Flavor::in_read_section) reports ended for the
    /// wait and entered again after, saying so, where liburcu gives such
    /// sections no protection and its wait returns (QSBR: sections taken
    /// while not online); `None` where it cannot (memb: the section
    /// protects what it reads, and liburcu refuses the wait).
    fn outside_sections<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
        let _ = (what, f);
        None
    }

    /// Whether the calling thread is an online QSBR reader: inside a
    /// read-side section from one quiescent state to the next, which
    /// [`offline_while`](Flavor::offline_while) would end. Calls that
    /// liburcu allows inside read-side sections (`call_rcu`) must not put
    /// such a thread offline, even for a moment: that is a quiescent state,
    /// after which the references it read may be freed under it. Memb:
    /// never.
    fn online() -> bool {
        false
    }

    /// Called when `call_rcu` on an [`online`](Flavor::online) thread
    /// found the backlog over the push-back mark and recorded the wait as
    /// owed (`call_rcu::owes_push_back`): the flavor makes the thread's
    /// next quiescent state take the path that pays it
    /// (`call_rcu::pay_owed_push_back`). Returns whether it does: `false`
    /// for a thread whose quiescent states never reach the library (a QSBR
    /// program built with `_LGPL_SOURCE`), whose `call_rcu` then takes the
    /// wait's time itself while memory is short. Memb: never called.
    fn push_back_owed() -> bool {
        true
    }

    /// Called first by `call_rcu_before_fork`, before the domain is
    /// stopped for the fork (a QSBR drop-in drops the caller's registration
    /// here: the domain's `prepare_fork` must not run on an online thread).
    /// It also finishes the flavor's set-up done once on first use (such as
    /// handing the domain the inlined readers' words), which another thread
    /// may be in the middle of: the child would wait for it for ever.
    fn before_fork() {}

    /// Called last by `call_rcu_after_fork_parent` and
    /// `call_rcu_after_fork_child` (a QSBR drop-in restores the caller's
    /// registration here).
    fn after_fork() {}

    /// Called once on each `call_rcu` thread as it starts (after it took a
    /// slot of [`rcu`](Flavor::rcu)), before any callback runs: registers
    /// it the way liburcu's own `call_rcu` thread is registered
    /// (`rcu_register_thread`), so that grace periods wait for the
    /// sections its callbacks read in however the program enters them
    /// (inlined by `_LGPL_SOURCE`, or QSBR's empty `rcu_read_lock`). It
    /// leaves a QSBR thread offline: see
    /// [`callback_thread_online`](Flavor::callback_thread_online).
    fn register_callback_thread() {}

    /// Called on a `call_rcu` thread before it invokes a batch, after the
    /// batch's grace period (QSBR: online, as liburcu's `call_rcu` thread
    /// is while its callbacks run: what they read stays protected until
    /// the batch is done).
    fn callback_thread_online() {}

    /// Called on a `call_rcu` thread once a batch is invoked (QSBR:
    /// offline again, for its waits, as liburcu's thread goes offline
    /// between batches).
    fn callback_thread_offline() {}
}

/// liburcu's `urcu_common_wake_up_gp` on a flavor's `urcu_*_gp.futex`: if
/// a grace period is parked on the word (-1), stores 0 and wakes it with a
/// plain (not process-private) `FUTEX_WAKE`, as liburcu's inlined read side
/// does (the domain parks there: `Rcu::publish_foreign_futex`).
///
/// ```
/// use std::sync::atomic::{AtomicI32, Ordering};
/// let word = AtomicI32::new(-1);
/// rcu_reclaim_urcu_common::wake_parked_grace_period(&word);
/// assert_eq!(word.load(Ordering::Relaxed), 0);
/// ```
pub fn wake_parked_grace_period(futex: &std::sync::atomic::AtomicI32) {
    use std::sync::atomic::Ordering;
    if futex.load(Ordering::Relaxed) == -1 {
        futex.store(0, Ordering::Relaxed);
        // SAFETY: FUTEX_WAKE on a live, aligned 32-bit word; it only uses
        // the address as a key.
        unsafe {
            libc::syscall(libc::SYS_futex, futex.as_ptr(), libc::FUTEX_WAKE, 1);
        }
    }
}

/// Prints `msg` as liburcu prints its errors and aborts the process: for
/// misuse after which continuing would deadlock or free memory in use.
#[cold]
pub fn die(msg: &str) -> ! {
    eprintln!("[error] rcu-reclaim-urcu: {msg}");
    std::process::abort()
}

/// Runs `f` (a wait for a grace period) with `depth` of the calling
/// thread's raw read-side sections of `rcu` ended, and enters them again
/// after, also if `f` unwinds: for a section liburcu does not protect (an
/// unregistered or offline thread's), which would make the wait wait for
/// itself.
pub fn with_raw_sections_ended<R>(rcu: &Rcu, depth: usize, f: impl FnOnce() -> R) -> R {
    for _ in 0..depth {
        let _ = rcu.read_unlock_raw();
    }
    /// Enters the sections again.
    struct Again<'a>(&'a Rcu, usize);
    impl Drop for Again<'_> {
        fn drop(&mut self) {
            for _ in 0..self.1 {
                self.0.read_lock_raw();
            }
        }
    }
    let _again = Again(rcu, depth);
    f()
}

/// Runs `f` (a thread's registration or unregistration) with every
/// signal blocked on the calling thread, restoring its mask after, also
/// if `f` unwinds. A handler that takes a read-side section while the
/// thread is halfway through registering (liburcu's own read side copes:
/// its section only touches the thread's counter) would re-enter the
/// registration's state here (its thread-local list, the domain being
/// made) and abort or deadlock; liburcu's docs ask programs to block
/// signals around registration, and this does it for them. Two
/// `pthread_sigmask` calls per registration.
pub fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    rcu_reclaim::__with_signals_blocked(f)
}

/// The memb drop-in's flavor, over the global domain: for unit tests of
/// the shared code.
#[cfg(test)]
pub(crate) struct TestMemb;

#[cfg(test)]
impl Flavor for TestMemb {
    fn rcu() -> &'static rcu_reclaim::Rcu {
        rcu_reclaim::Rcu::global()
    }
    fn in_read_section() -> bool {
        rcu_reclaim::Rcu::global().in_read_section()
    }
    fn offline_while<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// The blocked-signal masks (`SigBlk` in `/proc`) of this process's
/// threads named `name`: for tests that the library's threads block the
/// program's signals.
#[cfg(test)]
pub(crate) fn blocked_masks_of(name: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = entry.expect("a task").path();
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue; // exited meanwhile
        };
        if comm.trim() != name {
            continue;
        }
        let hex = status.lines().find_map(|l| l.strip_prefix("SigBlk:"));
        out.push(u64::from_str_radix(hex.expect("SigBlk").trim(), 16).expect("hex"));
    }
    out
}

/// Asserts that every thread named `name` (at least one) blocks the
/// signals a program handles.
#[cfg(test)]
pub(crate) fn assert_threads_block_signals(name: &str) {
    // A Rust thread names itself once it runs: wait for it.
    let start = std::time::Instant::now();
    let mut masks = blocked_masks_of(name);
    while masks.is_empty() && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(2));
        masks = blocked_masks_of(name);
    }
    assert!(!masks.is_empty(), "no thread named {name}");
    for sig in [
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGINT,
        libc::SIGTERM,
    ] {
        for m in &masks {
            assert!(
                m & (1 << (sig - 1)) != 0,
                "a {name} thread leaves signal {sig} unblocked: {m:#x}"
            );
        }
    }
}

/// Runs `f` and gives the caller its `errno` back as it found it, also if
/// `f` unwinds. liburcu's functions leave `errno` alone; here the library's
/// first use (which reads `/sys`, setting it to 0), a `call_rcu_data`'s
/// creation (which looks for the cgroup's memory files: `ENOENT`) and a
/// `call_rcu` held back under a flood (a futex wait that times out:
/// `ETIMEDOUT`) changed it, under a program that reads `errno` after such a
/// call, or whose signal handler calls `call_rcu` while the code it
/// interrupted is about to read it.
pub fn keeping_errno<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the saved value back.
    struct Restore(std::os::raw::c_int);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: the calling thread's `errno`, always valid.
            unsafe { *libc::__errno_location() = self.0 };
        }
    }
    // SAFETY: as above.
    let _restore = Restore(unsafe { *libc::__errno_location() });
    f()
}

/// [`keeping_errno`] for a function that reports a failure through `errno`
/// (a non-zero return): `errno` is given back only on success.
pub fn keeping_errno_on_success(f: impl FnOnce() -> std::os::raw::c_int) -> std::os::raw::c_int {
    // SAFETY: the calling thread's `errno`, always valid.
    let saved = unsafe { *libc::__errno_location() };
    let ret = f();
    if ret == 0 {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = saved };
    }
    ret
}

/// Runs `f`, turning a panic of the library (misuse it detected and already
/// described through the panic hook) into `None`, so nothing unwinds into C.
pub fn no_unwind<R>(f: impl FnOnce() -> R) -> Option<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// Defines, in the calling crate, the C symbols that every flavor of
/// liburcu 0.13 exports with its own prefix and that this crate implements
/// once: `urcu_<p>_call_rcu`, `urcu_<p>_barrier`, the `call_rcu_data`
/// family, the `call_rcu` fork hooks, the `defer_rcu` family and the
/// liburcu-cds fork-hook registration, for the prefix `$p` (`"memb"`,
/// `"qsbr"`) over the [`Flavor`] `$f`; and, with `pointer_helpers`, the
/// flavor-independent `rcu_*_sym` pointer helpers (each of liburcu's flavor
/// libraries exports them too). Expand it once, in a module of its own:
/// the Rust names (`call_rcu`, `barrier`, ...) are what the flavor table
/// refers to.
#[macro_export]
macro_rules! export_flavor {
    ($p:literal, $f:ty) => {
        $crate::export_flavor!(@common $p, $f);
    };
    ($p:literal, $f:ty, pointer_helpers) => {
        $crate::export_flavor!(@common $p, $f);

        #[doc = "`rcu_dereference` (`urcu/pointer.h` without `_LGPL_SOURCE`)."]
        #[export_name = "rcu_dereference_sym"]
        pub extern "C" fn rcu_dereference_sym(p: *mut ::std::ffi::c_void) -> *mut ::std::ffi::c_void {
            $crate::pointer::dereference(p)
        }

        #[doc = "`rcu_set_pointer`: publishes `v` in `*p` (release); returns `v`."]
        #[doc = ""]
        #[doc = "# Safety"]
        #[doc = "`p` points to an aligned pointer-sized word accessed atomically."]
        #[export_name = "rcu_set_pointer_sym"]
        pub unsafe extern "C" fn rcu_set_pointer_sym(
            p: *mut *mut ::std::ffi::c_void,
            v: *mut ::std::ffi::c_void,
        ) -> *mut ::std::ffi::c_void {
            // SAFETY: the caller's contract is `set_pointer`'s.
            unsafe { $crate::pointer::set_pointer(p, v) }
        }

        #[doc = "`rcu_xchg_pointer`: stores `v`, returns the old value (full barrier)."]
        #[doc = ""]
        #[doc = "# Safety"]
        #[doc = "As `rcu_set_pointer_sym`."]
        #[export_name = "rcu_xchg_pointer_sym"]
        pub unsafe extern "C" fn rcu_xchg_pointer_sym(
            p: *mut *mut ::std::ffi::c_void,
            v: *mut ::std::ffi::c_void,
        ) -> *mut ::std::ffi::c_void {
            // SAFETY: the caller's contract is `xchg_pointer`'s.
            unsafe { $crate::pointer::xchg_pointer(p, v) }
        }

        #[doc = "`rcu_cmpxchg_pointer`: stores `new` if `*p` is `old`; returns what it found."]
        #[doc = ""]
        #[doc = "# Safety"]
        #[doc = "As `rcu_set_pointer_sym`."]
        #[export_name = "rcu_cmpxchg_pointer_sym"]
        pub unsafe extern "C" fn rcu_cmpxchg_pointer_sym(
            p: *mut *mut ::std::ffi::c_void,
            old: *mut ::std::ffi::c_void,
            new: *mut ::std::ffi::c_void,
        ) -> *mut ::std::ffi::c_void {
            // SAFETY: the caller's contract is `cmpxchg_pointer`'s.
            unsafe { $crate::pointer::cmpxchg_pointer(p, old, new) }
        }
    };
    (@common $p:literal, $f:ty) => {
        use ::std::os::raw::{c_int, c_ulong};
        use $crate::{CallRcuData, DeferFunc, RcuFunc, RcuHead, UrcuAtfork};

        #[doc = concat!("`urcu_", $p, "_call_rcu`: schedules `func(head)` after a grace period.")]
        #[doc = ""]
        #[doc = "# Safety"]
        #[doc = "`head` is valid and untouched by the caller until `func` runs."]
        #[export_name = concat!("urcu_", $p, "_call_rcu")]
        pub unsafe extern "C" fn call_rcu(head: *mut RcuHead, func: Option<RcuFunc>) {
            $crate::keeping_errno(|| {
                let func = $crate::call_rcu::checked_func(head, func, "call_rcu");
                // SAFETY: the caller's contract is `queue`'s.
                unsafe { $crate::call_rcu::queue::<$f>(head, func, 0) };
            })
        }

        #[doc = concat!("`urcu_", $p, "_barrier` (`rcu_barrier`): waits until every callback queued before the call has run.")]
        #[export_name = concat!("urcu_", $p, "_barrier")]
        pub extern "C" fn barrier() {
            $crate::keeping_errno(|| {
                $crate::call_rcu::barrier::<$f>();
            })
        }

        #[doc = concat!("`urcu_", $p, "_create_call_rcu_data`: a crdp with its own thread (bound to `cpu_affinity` if >= 0).")]
        #[export_name = concat!("urcu_", $p, "_create_call_rcu_data")]
        pub extern "C" fn create_call_rcu_data(flags: c_ulong, cpu_affinity: c_int) -> *mut CallRcuData {
            $crate::keeping_errno(|| {
                $crate::call_rcu::create_call_rcu_data::<$f>(flags, cpu_affinity)
            })
        }

        #[doc = concat!("`urcu_", $p, "_call_rcu_data_free`: stops a crdp's thread and frees it; what it holds goes to the default crdp.")]
        #[doc = ""]
        #[doc = "# Safety"]
        #[doc = "`crdp` came from `create_call_rcu_data`, is installed nowhere, a grace period has passed since it was removed, and it is freed once."]
        #[export_name = concat!("urcu_", $p, "_call_rcu_data_free")]
        pub unsafe extern "C" fn call_rcu_data_free(crdp: *mut CallRcuData) {
            $crate::keeping_errno(|| {
                // SAFETY: the caller's contract is `call_rcu_data_free`'s.
                unsafe { $crate::call_rcu::call_rcu_data_free::<$f>(crdp) }
            })
        }

        #[doc = concat!("`urcu_", $p, "_get_default_call_rcu_data`: the default crdp (created on first use).")]
        #[export_name = concat!("urcu_", $p, "_get_default_call_rcu_data")]
        pub extern "C" fn get_default_call_rcu_data() -> *mut CallRcuData {
            $crate::keeping_errno(|| {
                $crate::call_rcu::get_default_call_rcu_data::<$f>()
            })
        }

        #[doc = concat!("`urcu_", $p, "_get_cpu_call_rcu_data`: the crdp installed for `cpu`, or NULL.")]
        #[export_name = concat!("urcu_", $p, "_get_cpu_call_rcu_data")]
        pub extern "C" fn get_cpu_call_rcu_data(cpu: c_int) -> *mut CallRcuData {
            $crate::call_rcu::get_cpu_call_rcu_data(cpu)
        }

        #[doc = concat!("`urcu_", $p, "_get_thread_call_rcu_data`: the crdp installed for the calling thread, or NULL.")]
        #[export_name = concat!("urcu_", $p, "_get_thread_call_rcu_data")]
        pub extern "C" fn get_thread_call_rcu_data() -> *mut CallRcuData {
            $crate::call_rcu::get_thread_call_rcu_data()
        }

        #[doc = concat!("`urcu_", $p, "_get_call_rcu_data`: the crdp `call_rcu` uses on this thread now.")]
        #[export_name = concat!("urcu_", $p, "_get_call_rcu_data")]
        pub extern "C" fn get_call_rcu_data() -> *mut CallRcuData {
            $crate::keeping_errno(|| {
                $crate::call_rcu::get_call_rcu_data::<$f>()
            })
        }

        #[doc = concat!("`urcu_", $p, "_set_thread_call_rcu_data`: installs `crdp` (or NULL) for the calling thread.")]
        #[export_name = concat!("urcu_", $p, "_set_thread_call_rcu_data")]
        pub extern "C" fn set_thread_call_rcu_data(crdp: *mut CallRcuData) {
            $crate::call_rcu::set_thread_call_rcu_data(crdp)
        }

        #[doc = concat!("`urcu_", $p, "_set_cpu_call_rcu_data`: installs `crdp` for `cpu`: 0, `-EINVAL` or `-EEXIST` (with `errno`).")]
        #[export_name = concat!("urcu_", $p, "_set_cpu_call_rcu_data")]
        pub extern "C" fn set_cpu_call_rcu_data(cpu: c_int, crdp: *mut CallRcuData) -> c_int {
            $crate::keeping_errno_on_success(|| {
                $crate::call_rcu::set_cpu_call_rcu_data::<$f>(cpu, crdp)
            })
        }

        #[doc = concat!("`urcu_", $p, "_create_all_cpu_call_rcu_data`: a crdp for every CPU that has none; 0 on success.")]
        #[export_name = concat!("urcu_", $p, "_create_all_cpu_call_rcu_data")]
        pub extern "C" fn create_all_cpu_call_rcu_data(flags: c_ulong) -> c_int {
            $crate::keeping_errno_on_success(|| {
                $crate::call_rcu::create_all_cpu_call_rcu_data::<$f>(flags)
            })
        }

        #[doc = concat!("`urcu_", $p, "_free_all_cpu_call_rcu_data`: uninstalls and frees every per-CPU crdp.")]
        #[export_name = concat!("urcu_", $p, "_free_all_cpu_call_rcu_data")]
        pub extern "C" fn free_all_cpu_call_rcu_data() {
            $crate::keeping_errno(|| {
                $crate::call_rcu::free_all_cpu_call_rcu_data::<$f>()
            })
        }

        #[doc = concat!("`urcu_", $p, "_get_call_rcu_thread`: the thread that invokes `crdp`'s callbacks.")]
        #[doc = ""]
        #[doc = "# Safety"]
        #[doc = "`crdp` is a live crdp from this library."]
        #[export_name = concat!("urcu_", $p, "_get_call_rcu_thread")]
        pub unsafe extern "C" fn get_call_rcu_thread(crdp: *mut CallRcuData) -> ::libc::pthread_t {
            // SAFETY: the caller's contract is `get_call_rcu_thread`'s.
            unsafe { $crate::call_rcu::get_call_rcu_thread(crdp) }
        }

        #[doc = concat!("`urcu_", $p, "_call_rcu_before_fork`: quiesces RCU before `fork()`.")]
        #[export_name = concat!("urcu_", $p, "_call_rcu_before_fork")]
        pub extern "C" fn call_rcu_before_fork() {
            $crate::keeping_errno(|| {
                $crate::fork::before_fork::<$f>()
            })
        }

        #[doc = concat!("`urcu_", $p, "_call_rcu_after_fork_parent`: resumes RCU in the parent.")]
        #[export_name = concat!("urcu_", $p, "_call_rcu_after_fork_parent")]
        pub extern "C" fn call_rcu_after_fork_parent() {
            $crate::keeping_errno(|| {
                $crate::fork::after_fork_parent::<$f>()
            })
        }

        #[doc = concat!("`urcu_", $p, "_call_rcu_after_fork_child`: makes RCU and call_rcu usable in the child.")]
        #[export_name = concat!("urcu_", $p, "_call_rcu_after_fork_child")]
        pub extern "C" fn call_rcu_after_fork_child() {
            $crate::keeping_errno(|| {
                $crate::fork::after_fork_child::<$f>()
            })
        }

        #[doc = concat!("`urcu_", $p, "_register_rculfhash_atfork`: registers liburcu-cds's fork hooks.")]
        #[doc = ""]
        #[doc = "# Safety"]
        #[doc = "`atfork` stays valid until unregistered."]
        #[export_name = concat!("urcu_", $p, "_register_rculfhash_atfork")]
        pub unsafe extern "C" fn register_rculfhash_atfork(atfork: *mut UrcuAtfork) {
            // SAFETY: the caller's contract is `register_rculfhash_atfork`'s.
            unsafe { $crate::fork::register_rculfhash_atfork(atfork) }
        }

        #[doc = concat!("`urcu_", $p, "_unregister_rculfhash_atfork`: drops one registration of liburcu-cds's fork hooks.")]
        #[doc = ""]
        #[doc = "# Safety"]
        #[doc = "Pairs with a registration."]
        #[export_name = concat!("urcu_", $p, "_unregister_rculfhash_atfork")]
        pub unsafe extern "C" fn unregister_rculfhash_atfork(atfork: *mut UrcuAtfork) {
            // SAFETY: the caller's contract is `unregister_rculfhash_atfork`'s.
            unsafe { $crate::fork::unregister_rculfhash_atfork(atfork) }
        }

        #[doc = concat!("`urcu_", $p, "_defer_rcu`: runs `fct(p)` after a grace period.")]
        #[doc = ""]
        #[doc = "# Safety"]
        #[doc = "`fct` may be called with `p` on another thread after a grace period."]
        #[export_name = concat!("urcu_", $p, "_defer_rcu")]
        pub unsafe extern "C" fn defer_rcu(fct: Option<DeferFunc>, p: *mut ::std::ffi::c_void) {
            $crate::keeping_errno(|| {
                let Some(fct) = fct else {
                    $crate::die("defer_rcu() called with a NULL function: liburcu would call NULL \
                                 after the grace period; pass the function that frees the object");
                };
                // SAFETY: the caller's contract is `defer_rcu`'s.
                unsafe { $crate::defer::defer_rcu::<$f>(fct, p) }
            })
        }

        #[doc = concat!("`urcu_", $p, "_defer_register_thread`: creates the calling thread's `defer_rcu` queue; 0.")]
        #[export_name = concat!("urcu_", $p, "_defer_register_thread")]
        pub extern "C" fn defer_register_thread() -> c_int {
            $crate::keeping_errno(|| {
                $crate::defer::register_thread::<$f>()
            })
        }

        #[doc = concat!("`urcu_", $p, "_defer_unregister_thread`: runs what the thread deferred and drops its queue.")]
        #[export_name = concat!("urcu_", $p, "_defer_unregister_thread")]
        pub extern "C" fn defer_unregister_thread() {
            $crate::keeping_errno(|| {
                $crate::defer::unregister_thread::<$f>()
            })
        }

        #[doc = concat!("`urcu_", $p, "_defer_barrier`: runs everything deferred before the call, by any thread.")]
        #[export_name = concat!("urcu_", $p, "_defer_barrier")]
        pub extern "C" fn defer_barrier() {
            $crate::keeping_errno(|| {
                $crate::defer::barrier::<$f>()
            })
        }

        #[doc = concat!("`urcu_", $p, "_defer_barrier_thread`: runs what this thread deferred.")]
        #[export_name = concat!("urcu_", $p, "_defer_barrier_thread")]
        pub extern "C" fn defer_barrier_thread() {
            $crate::keeping_errno(|| {
                $crate::defer::barrier_thread::<$f>()
            })
        }

        #[doc = concat!("`urcu_", $p, "_defer_exit`: accepted for compatibility; nothing to tear down.")]
        #[export_name = concat!("urcu_", $p, "_defer_exit")]
        pub extern "C" fn defer_exit() {}
    };
}
