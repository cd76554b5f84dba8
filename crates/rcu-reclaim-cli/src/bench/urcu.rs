//! liburcu's memb flavor, through `csrc/urcu_bench.c` (built with the
//! `liburcu` feature). Readers register once per thread and take
//! `urcu_memb_read_lock`/`unlock`; retired versions are queued with
//! `urcu_memb_call_rcu` on the `rcu_head` embedded in each version, and
//! liburcu's call_rcu thread frees them after a grace period.

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
