//! The public grace-period API on [`Rcu`]: `synchronize`, expedited and
//! polled waits, and their [`Cookie`].

use crate::domain::{Rcu, WaitInstead};
use crate::gp::{bump, FastPath, WaitMode};

/// A snapshot of a domain's grace-period sequence, from [`Rcu::get_state`] or
/// [`Rcu::start_poll`]: [`Rcu::poll`] says whether a full grace period has
/// elapsed since it was taken.
///
/// ```
/// use rcu_reclaim::{Cookie, Rcu};
/// let rcu = Rcu::global();
/// assert!(rcu.poll(&Cookie::completed()));
/// let cookie = rcu.get_state();
/// rcu.synchronize();
/// assert!(rcu.poll(&cookie));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Cookie {
    seq: u64,
    domain: u64,
}

impl Cookie {
    /// A cookie that every domain reports as completed (the kernel's
    /// `get_completed_synchronize_rcu()`), for "nothing to wait for".
    ///
    /// ```
    /// use rcu_reclaim::{Cookie, Rcu};
    /// Rcu::global().cond_synchronize(Cookie::completed()); // returns at once
    /// ```
    pub const fn completed() -> Cookie {
        Cookie { seq: 0, domain: 0 }
    }

    /// The grace-period sequence value this cookie waits for.
    ///
    /// ```
    /// assert_eq!(rcu_reclaim::Cookie::completed().seq(), 0);
    /// ```
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Rcu {
    /// Waits until every read-side section of this domain that began before
    /// the call has ended. Concurrent callers share grace periods.
    ///
    /// The wait spins briefly, then yields, then parks until a reader leaving
    /// its section wakes it.
    ///
    /// # Panics
    /// Inside a read-side section of this domain (it would wait for itself).
    /// That includes an RCU callback or a deferred drop's destructor that
    /// [`run_callbacks`](Rcu::run_callbacks), reclaim, or another domain's
    /// [`barrier`](Rcu::barrier) ran on a thread inside such a section. So
    /// a callback should not wait for a grace period (see
    /// [`Rcu::in_callback`]): on a worker the wait completes but holds up
    /// the other callbacks of its node; run where the caller is inside a
    /// section of this domain it panics; and run by a barrier or reclaim
    /// called inside a section of another domain that it waits for, it
    /// waits for good. Queue follow-up work with [`call`](Rcu::call)
    /// instead.
    ///
    /// ```
    /// use rcu_reclaim::{Rcu, RcuCell};
    /// let cell = RcuCell::new(1u64);
    /// let old = cell.replace(Box::new(2));
    /// Rcu::global().synchronize();
    /// drop(old);
    /// ```
    #[track_caller]
    pub fn synchronize(&self) {
        if !self.try_synchronize() {
            self.assert_not_in_section("synchronize()", WaitInstead::Poll);
            unreachable!("rcu-reclaim: try_synchronize() refused outside any section");
        }
    }

    /// As [`synchronize`](Rcu::synchronize), but inside a read-side section
    /// of this domain (where `synchronize` panics) returns `false` and does
    /// nothing, for callers that report that misuse their own way (the
    /// liburcu drop-in prints liburcu's message and aborts). Returns `true`
    /// once the grace period has elapsed.
    ///
    /// With no thread registered as a reader it completes a grace period at
    /// once and reads no thread-local: the section check is made only when
    /// a reader is registered (a thread inside a section always is).
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// assert!(rcu.try_synchronize());
    /// let guard = rcu.read_lock();
    /// assert!(!rcu.try_synchronize()); // would wait for itself
    /// drop(guard);
    /// assert!(rcu.try_synchronize());
    /// ```
    pub fn try_synchronize(&self) -> bool {
        let gp = &self.inner().gp;
        let started = match gp.complete_now_if_no_reader() {
            FastPath::Completed => return true,
            FastPath::Started(target) => Some(target),
            FastPath::NotTried => None,
        };
        if self.in_read_section() {
            return false;
        }
        bump(&gp.counters.synchronize_calls);
        let target = started.unwrap_or_else(|| gp.snapshot());
        self.wait_for_seq(target, WaitMode::Normal);
        true
    }

    /// As [`synchronize`](Rcu::synchronize), for the shortest latency: the
    /// waiter spins and yields but never parks.
    ///
    /// # Panics
    /// Inside a read-side section of this domain.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let before = rcu.stats().gp_completed;
    /// rcu.synchronize_expedited();
    /// assert!(rcu.stats().gp_completed > before);
    /// ```
    #[track_caller]
    pub fn synchronize_expedited(&self) {
        self.assert_not_in_section("synchronize_expedited()", WaitInstead::Poll);
        bump(&self.inner().gp.counters.expedited_calls);
        let target = self.inner().gp.snapshot();
        self.wait_for_seq(target, WaitMode::Expedited);
    }

    /// A cookie for the current state: once [`poll`](Rcu::poll) returns
    /// `true` for it, a full grace period has elapsed since this call.
    /// Starts nothing; pair it with [`start_poll`](Rcu::start_poll) or a
    /// later `synchronize`.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let c = rcu.get_state();
    /// rcu.cond_synchronize(c);
    /// assert!(rcu.poll(&c));
    /// ```
    pub fn get_state(&self) -> Cookie {
        Cookie {
            seq: self.inner().gp.snapshot(),
            domain: self.id(),
        }
    }

    /// As [`get_state`](Rcu::get_state), and makes sure a grace period that
    /// completes the cookie will run without anyone calling `synchronize`
    /// (the domain's grace-period thread runs it). Never blocks; usable inside
    /// a read-side section.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let c = rcu.start_poll();
    /// while !rcu.poll(&c) {
    ///     std::thread::yield_now();
    /// }
    /// ```
    pub fn start_poll(&self) -> Cookie {
        let cookie = self.get_state();
        self.poll_and_request(&cookie);
        cookie
    }

    /// [`poll`](Rcu::poll), and when the cookie is not complete, makes sure
    /// a grace period that completes it will run (as
    /// [`start_poll`](Rcu::start_poll) does), so that a caller polling a
    /// cookie taken with [`get_state`](Rcu::get_state) (a [`Retired`]'s)
    /// in a loop sees it complete on an otherwise idle domain. Never
    /// blocks.
    ///
    /// [`Retired`]: crate::Retired
    #[track_caller]
    pub(crate) fn poll_and_request(&self, cookie: &Cookie) -> bool {
        if self.poll(cookie) {
            return true;
        }
        bump(&self.inner().gp.counters.poll_requests);
        #[cfg(not(loom))]
        self.inner().kthread.request(self.inner(), cookie.seq);
        false
    }

    /// Whether a full grace period has elapsed since `cookie` was taken.
    /// Never blocks.
    ///
    /// # Panics
    /// If `cookie` came from another domain.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let c = rcu.get_state();
    /// assert!(!rcu.poll(&c)); // nothing has run a grace period yet
    /// rcu.synchronize();
    /// assert!(rcu.poll(&c));
    /// ```
    #[track_caller]
    pub fn poll(&self, cookie: &Cookie) -> bool {
        self.check_cookie(cookie);
        self.inner().gp.done(cookie.seq)
    }

    /// The mutation check of the loom model of polled cookies: `poll` with
    /// a relaxed load of the sequence, which no longer orders the grace
    /// period's scan (and the readers' exits it acquired) before what the
    /// caller does next. Never use it: the model must fail with it.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn poll_relaxed_for_loom_mutation(&self, cookie: &Cookie) -> bool {
        self.check_cookie(cookie);
        self.inner().gp.done_relaxed(cookie.seq)
    }

    /// Waits for a grace period only if none has elapsed since `cookie`.
    ///
    /// # Panics
    /// Inside a read-side section of this domain while the cookie is not
    /// complete, or if `cookie` came from another domain.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::global();
    /// let c = rcu.get_state();
    /// rcu.synchronize();
    /// rcu.cond_synchronize(c); // returns at once: a grace period already passed
    /// ```
    #[track_caller]
    pub fn cond_synchronize(&self, cookie: Cookie) {
        self.cond_synchronize_for(cookie, "cond_synchronize()", WaitInstead::Poll);
    }

    /// [`cond_synchronize`](Rcu::cond_synchronize) on behalf of `call`,
    /// which a misuse panic names.
    #[track_caller]
    pub(crate) fn cond_synchronize_for(&self, cookie: Cookie, call: &str, instead: WaitInstead) {
        if self.poll(&cookie) {
            return;
        }
        self.assert_not_in_section(call, instead);
        bump(&self.inner().gp.counters.synchronize_calls);
        self.wait_for_seq(cookie.seq, WaitMode::Normal);
    }

    /// Grace periods this domain has completed so far: a cheap counter (one
    /// load), for monitoring and for tests that count the grace periods
    /// that end while something runs.
    ///
    /// ```
    /// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
    /// let before = rcu.completed_grace_periods();
    /// rcu.synchronize();
    /// assert!(rcu.completed_grace_periods() > before);
    /// ```
    pub fn completed_grace_periods(&self) -> u64 {
        self.inner().gp.completed()
    }

    #[track_caller]
    fn check_cookie(&self, cookie: &Cookie) {
        if cookie.domain != 0 && cookie.domain != self.id() {
            panic!(
                "rcu-reclaim: a Cookie of domain {} was passed to domain {}; poll a cookie on the \
                 Rcu that issued it",
                cookie.domain,
                self.id()
            );
        }
    }

    fn wait_for_seq(&self, target: u64, mode: WaitMode) {
        // A stall report of a section this thread holds in another domain
        // names this wait.
        #[cfg(not(loom))]
        let _marks = crate::reader::mark_waiting(self.id());
        self.inner().gp.wait_for_seq(target, mode);
    }
}
