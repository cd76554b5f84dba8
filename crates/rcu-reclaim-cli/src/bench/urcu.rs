//! liburcu's memb flavor, through `csrc/urcu_bench.c` (built with the
//! `liburcu` feature). Readers register once per thread and take
//! `urcu_memb_read_lock`/`unlock`; retired versions are queued with
//! `urcu_memb_call_rcu` on the `rcu_head` embedded in each version, and
//! liburcu's call_rcu thread frees them after a grace period.
//!
//! [`UrcuQsbr`] is liburcu's QSBR flavor the same way, through
//! `csrc/urcu_qsbr_bench.c`: its sections are empty, and the thread
//! reports `urcu_qsbr_quiescent_state` between operations.

use std::marker::PhantomData;
use std::os::raw::c_ulong;

use super::Contender;
use crate::dcache::{Backend, Node, RcuHead};

extern "C" {
    fn bench_urcu_register_thread();
    fn bench_urcu_unregister_thread();
    fn bench_urcu_read_lock();
    fn bench_urcu_read_unlock();
    fn bench_urcu_call_rcu(head: *mut RcuHead, func: unsafe extern "C" fn(*mut RcuHead));
    fn bench_urcu_barrier();
    fn bench_urcu_head_size() -> c_ulong;
}

/// liburcu's state is per process; this is only a name for it.
pub struct Urcu;

impl Urcu {
    pub fn new() -> Result<Urcu, String> {
        // SAFETY: a pure function of the C shim.
        let size = unsafe { bench_urcu_head_size() } as usize;
        if size != std::mem::size_of::<RcuHead>() {
            return Err(format!(
                "liburcu's struct rcu_head is {size} bytes, the bench expects {}; \
                 rebuild without --features liburcu",
                std::mem::size_of::<RcuHead>()
            ));
        }
        Ok(Urcu)
    }
}

/// A thread's registration as a liburcu reader (not `Send`: it belongs
/// to the thread that made it).
pub struct Registration(PhantomData<*const ()>);

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: registered in `local` on this thread (the type is not
        // Send), and no section is open: guards borrow the registration.
        unsafe { bench_urcu_unregister_thread() };
    }
}

/// An open liburcu read-side section.
pub struct Section<'a>(PhantomData<&'a Registration>);

impl Drop for Section<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: pairs with the lock taken in `pin` on this thread.
        unsafe { bench_urcu_read_unlock() };
    }
}

/// Frees a version once liburcu's grace period has elapsed.
///
/// # Safety
/// `head` is the `head` field of a node from `Node::boxed` that was queued
/// with call_rcu exactly once.
unsafe extern "C" fn free_node(head: *mut RcuHead) {
    // `head` is the first field of the `repr(C)` node (`UnsafeCell` is
    // `repr(transparent)`), and was derived from the node's own pointer.
    // SAFETY: the function's contract.
    unsafe { Node::free(head.cast::<Node>()) };
}

impl Backend for Urcu {
    const NAME: &'static str = "liburcu-memb";
    type Local<'a> = Registration;
    type Guard<'a> = Section<'a>;

    fn local(&self) -> Registration {
        // SAFETY: registers the calling thread; `Registration` unregisters
        // it on the same thread.
        unsafe { bench_urcu_register_thread() };
        Registration(PhantomData)
    }

    #[inline]
    fn pin<'a>(&'a self, _: &'a Registration) -> Section<'a> {
        // SAFETY: the thread is registered (the registration is borrowed).
        unsafe { bench_urcu_read_lock() };
        Section(PhantomData)
    }

    unsafe fn retire(&self, _: &Section<'_>, node: *mut Node, _bytes: usize) {
        // SAFETY: `node` is live (the caller retires it once, after
        // unlinking it); the pointer to its `head` keeps the node's
        // provenance (no reference is made), and liburcu calls `free_node`
        // with it once, after a grace period.
        unsafe {
            let head = std::ptr::addr_of_mut!((*node).head).cast::<RcuHead>();
            bench_urcu_call_rcu(head, free_node);
        }
    }

    fn finish(self) {
        // SAFETY: called on a thread outside any section.
        unsafe { bench_urcu_barrier() };
    }
}

impl Contender for Urcu {}

extern "C" {
    fn bench_urcu_qsbr_register_thread();
    fn bench_urcu_qsbr_unregister_thread();
    fn bench_urcu_qsbr_quiescent_state();
    fn bench_urcu_qsbr_thread_offline();
    fn bench_urcu_qsbr_thread_online();
    fn bench_urcu_qsbr_call_rcu(head: *mut RcuHead, func: unsafe extern "C" fn(*mut RcuHead));
    fn bench_urcu_qsbr_barrier();
    fn bench_urcu_qsbr_head_size() -> c_ulong;
}

/// liburcu's QSBR flavor (per process, like the memb one).
pub struct UrcuQsbr;

impl UrcuQsbr {
    pub fn new() -> Result<UrcuQsbr, String> {
        // SAFETY: a pure function of the C shim.
        let size = unsafe { bench_urcu_qsbr_head_size() } as usize;
        if size != std::mem::size_of::<RcuHead>() {
            return Err(format!(
                "liburcu-qsbr's struct rcu_head is {size} bytes, the bench expects {}; \
                 rebuild without --features liburcu",
                std::mem::size_of::<RcuHead>()
            ));
        }
        Ok(UrcuQsbr)
    }
}

/// A thread's registration as a liburcu-qsbr reader, online while it
/// exists (not `Send`: it belongs to the thread that made it).
pub struct QsbrRegistration(PhantomData<*const ()>);

impl Drop for QsbrRegistration {
    fn drop(&mut self) {
        // SAFETY: registered in `local` on this thread (the type is not
        // Send); no section is open (guards borrow the registration).
        unsafe { bench_urcu_qsbr_unregister_thread() };
    }
}

/// A liburcu-qsbr read-side section: empty, as `urcu_qsbr_read_lock` is.
pub struct QsbrSection<'a>(PhantomData<&'a QsbrRegistration>);

impl Backend for UrcuQsbr {
    const NAME: &'static str = "liburcu-qsbr";
    type Local<'a> = QsbrRegistration;
    type Guard<'a> = QsbrSection<'a>;

    fn local(&self) -> QsbrRegistration {
        // SAFETY: registers the calling thread (online); `QsbrRegistration`
        // unregisters it on the same thread.
        unsafe { bench_urcu_qsbr_register_thread() };
        QsbrRegistration(PhantomData)
    }

    #[inline]
    fn pin<'a>(&'a self, _: &'a QsbrRegistration) -> QsbrSection<'a> {
        // An online QSBR thread is in a section until its next quiescent
        // state: nothing to do (liburcu's read lock is empty too).
        QsbrSection(PhantomData)
    }

    unsafe fn retire(&self, _: &QsbrSection<'_>, node: *mut Node, _bytes: usize) {
        // SAFETY: as `Urcu::retire`: `node` is live and retired once;
        // liburcu calls `free_node` with its `head` once, after a grace
        // period (which waits for this thread's next quiescent state).
        unsafe {
            let head = std::ptr::addr_of_mut!((*node).head).cast::<RcuHead>();
            bench_urcu_qsbr_call_rcu(head, free_node);
        }
    }

    #[inline]
    fn quiescent_state(&self, _: &mut QsbrRegistration) {
        // SAFETY: the thread is registered (the registration is borrowed
        // mutably: no section of it is open).
        unsafe { bench_urcu_qsbr_quiescent_state() };
    }

    fn offline_while<R>(&self, _: &mut QsbrRegistration, f: impl FnOnce() -> R) -> R {
        struct Online;
        impl Drop for Online {
            fn drop(&mut self) {
                // SAFETY: the thread is registered and was put offline below.
                unsafe { bench_urcu_qsbr_thread_online() };
            }
        }
        // SAFETY: the thread is registered and holds no section (the
        // registration is borrowed mutably).
        unsafe { bench_urcu_qsbr_thread_offline() };
        let _online = Online;
        f()
    }

    fn finish(self) {
        // SAFETY: called on the bench's main thread, which is not registered.
        unsafe { bench_urcu_qsbr_barrier() };
    }
}

impl Contender for UrcuQsbr {}
