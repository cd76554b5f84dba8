//! Where deferred drops live until their grace period ends: the 4 KiB bulk
//! pages and the allocator behind them.
//!
//! [`Rcu::defer_drop`](crate::Rcu::defer_drop) appends two words to the
//! calling thread's bulk page; a full page ([`BULK_PAGE_SIZE`]) is handed to
//! the domain and freed page by page after a grace period. Pages come from a
//! [`PageAllocator`], [`SystemPageAllocator`] unless
//! [`Config::page_allocator`](crate::Config::page_allocator) names another.
//!
//! Use this module to observe or limit the pages RCU allocates (a custom
//! [`PageAllocator`]), or to retire values from code that must not allocate
//! ([`without_page_allocation`]: a retire that would need a fresh page
//! waits for a grace period and drops at once instead, or queues a callback
//! inside a read-side section).
//!
//! ```
//! use rcu_reclaim::pages::{without_page_allocation, BULK_PAGE_SIZE};
//! use rcu_reclaim::Rcu;
//!
//! assert_eq!(BULK_PAGE_SIZE, 4096);
//! let rcu = Rcu::global();
//! without_page_allocation(|| rcu.defer_drop(Box::new(7u64)));
//! rcu.barrier();
//! ```

pub use crate::callbacks::{
    without_page_allocation, PageAllocator, SystemPageAllocator, BULK_PAGE_SIZE,
};
