//! Our extensions, declared in `include/rcu_reclaim.h`: pressure signals,
//! the backlog, `run_callbacks` for a reclaimer, statistics as JSON.

use std::ffi::{c_char, CString};
use std::os::raw::{c_int, c_long};
use std::sync::Mutex;

use rcu_reclaim::pressure::{NodeMask, PressureGuard};

use rcu_reclaim_urcu_common::call_rcu::{self, RcuFunc, RcuHead};
use rcu_reclaim_urcu_common::defer;

use crate::{rcu, Memb};

/// Pressure signals started from C, by node (`-1`: all nodes).
static PRESSURE: Mutex<Vec<(c_int, PressureGuard)>> = Mutex::new(Vec::new());

fn check_node(node: c_int) -> Option<usize> {
    let nodes = rcu().topology().nodes();
    match usize::try_from(node) {
        Ok(n) if n < nodes => Some(n),
        _ => None,
    }
}

/// Signals memory pressure on NUMA `node` (`-1`: every node) until the
/// matching `rcu_reclaim_pressure_end`. Returns 0, or `-EINVAL` for a node
/// out of range.
#[no_mangle]
pub extern "C" fn rcu_reclaim_pressure_start(node: c_int) -> c_int {
    let guard = if node == -1 {
        rcu().pressure_start_all()
    } else {
        match check_node(node) {
            Some(n) => rcu().pressure_start(n),
            None => return -libc::EINVAL,
        }
    };
    PRESSURE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((node, guard));
    0
}

/// Ends one pressure signal started on `node`. Returns 0, or `-EINVAL` if
/// none is active there.
#[no_mangle]
pub extern "C" fn rcu_reclaim_pressure_end(node: c_int) -> c_int {
    let guard = {
        let mut list = PRESSURE.lock().unwrap_or_else(|p| p.into_inner());
        match list.iter().rposition(|(n, _)| *n == node) {
            Some(i) => list.swap_remove(i).1,
            None => return -libc::EINVAL,
        }
    };
    guard.end();
    0
}

/// Callbacks queued with `call_rcu`/`defer_rcu` and not yet invoked.
#[no_mangle]
pub extern "C" fn rcu_reclaim_pending() -> usize {
    rcu().pending() + call_rcu::backlog().0 + defer::pending()
}

/// Bytes the pending callbacks will free, as declared through
/// `rcu_reclaim_call_rcu_sized` (plain `call_rcu` declares 0).
#[no_mangle]
pub extern "C" fn rcu_reclaim_pending_bytes() -> usize {
    rcu().pending_bytes() + call_rcu::backlog().1
}

/// How short memory is for the domain (`Rcu::memory_state`): 0 plenty, 1
/// short (a pressure signal, or the usage of the process's memory cgroup
/// over three quarters of 85 % of its limit), 2 over that 85 % mark. For
/// a program's own queues, to hold their producers back as `call_rcu`
/// does.
#[no_mangle]
pub extern "C" fn rcu_reclaim_memory_state() -> c_int {
    use rcu_reclaim::pressure::MemoryState;
    match call_rcu::memory_state::<crate::Memb>() {
        MemoryState::Plenty => 0,
        MemoryState::Short => 1,
        MemoryState::OverMark => 2,
    }
}

/// `call_rcu`, declaring the bytes `func` will free, so the backlog and
/// pressure decisions see them.
///
/// # Safety
/// As `call_rcu`.
#[no_mangle]
pub unsafe extern "C" fn rcu_reclaim_call_rcu_sized(
    head: *mut RcuHead,
    func: Option<RcuFunc>,
    bytes: usize,
) {
    let func = call_rcu::checked_func(head, func, "rcu_reclaim_call_rcu_sized");
    // SAFETY: the caller's contract is `call_rcu`'s, which is `queue`'s.
    unsafe { call_rcu::queue::<Memb>(head, func, bytes) };
}

/// For a memory reclaimer: frees what RCU can on `node` (`-1`: every node)
/// at `priority` 12 (gentle: run what is ready) to 0 (desperate: wait for a
/// grace period and run everything), on the calling thread; what the
/// call_rcu threads hold is taken, waited for (one grace period) and invoked
/// here too, and so is what every thread's `defer_rcu` queue holds, so all
/// of it has run when it returns. Returns how many callbacks the engine
/// released for running plus the `call_rcu` callbacks and `defer_rcu`
/// entries run here (each of them has run by the time it returns), or
/// `-EINVAL` for a node or priority out of range. Do not call it inside a
/// read-side section or from a callback.
#[no_mangle]
pub extern "C" fn rcu_reclaim_run_callbacks(node: c_int, priority: c_int) -> c_long {
    let Ok(priority) = u8::try_from(priority) else {
        return -(libc::EINVAL as c_long);
    };
    if priority > 12 {
        return -(libc::EINVAL as c_long);
    }
    let mask = if node == -1 {
        NodeMask::all()
    } else {
        match check_node(node) {
            Some(n) => NodeMask::node(n),
            None => return -(libc::EINVAL as c_long),
        }
    };
    let Some(report) = crate::no_unwind(|| rcu().run_callbacks(&mask, priority)) else {
        return 0;
    };
    // Inside a section, or on a call_rcu thread, waiting for the call_rcu
    // threads could wait for the caller (a callback that synchronizes, or
    // another call_rcu thread waiting here too): what the engine ran is
    // reported, and the threads invoke it on their own.
    let (mut here, mut deferred) = (0, 0);
    if !crate::in_read_section() && !call_rcu::on_crdp_thread() {
        here = call_rcu::wait_all_drained(true).1;
        deferred = defer::drain_here::<Memb>();
    }
    (report.invoked + here + deferred) as c_long
}

/// The domain's statistics as a JSON object (a NUL-terminated string the
/// caller frees with `rcu_reclaim_free_string`), or NULL on failure.
#[no_mangle]
pub extern "C" fn rcu_reclaim_stats_json() -> *mut c_char {
    let Ok(json) = serde_json::to_string(&rcu().stats()) else {
        return std::ptr::null_mut();
    };
    CString::new(json).map_or(std::ptr::null_mut(), CString::into_raw)
}

/// Frees a string returned by `rcu_reclaim_stats_json` (NULL is ignored).
///
/// # Safety
/// `s` came from `rcu_reclaim_stats_json` and is freed once.
#[no_mangle]
pub unsafe extern "C" fn rcu_reclaim_free_string(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: per the contract, `s` came from `CString::into_raw`.
        drop(unsafe { CString::from_raw(s) });
    }
}
