//! The waits a retire may make, or owe: the pressure throttle, the garbage
//! bound's headroom and the call backlog, each paid at once outside a
//! read-side section, and owed by a section (paid as it ends, through
//! `pay_owed_throttle`) inside one.

use std::cell::Cell;

use super::in_callback;
use crate::clock::epoch_ms;
use crate::domain::Rcu;

/// Garbage, in bytes, past which a retire that owes its wait because it
/// runs inside its own section says so (once per domain)...
#[cfg(not(loom))]
const OWN_SECTION_WARN_BYTES: usize = 16 << 20;

/// ...once that section has owed its waits this long, in milliseconds
/// (a writer's short sections under pressure each owe and soon pay).
#[cfg(not(loom))]
const OWN_SECTION_WARN_MS: usize = 200;

impl Rcu {
    /// While a pressure signal is held, a retire that booked memory waits
    /// for garbage to be freed (the pressure throttle) outside a read-side
    /// section; inside one (waiting would hold up the very grace periods
    /// it waits for) the section owes the wait, paid when it ends. Returns
    /// whether a signal was held.
    #[cfg(not(loom))]
    pub(super) fn wait_under_pressure(&self) -> bool {
        let inner = self.inner();
        let cbs = &inner.callbacks;
        if cbs.pressure.total() == 0 {
            return false;
        }
        self.wait_or_owe(
            |kick| {
                cbs.throttle_under_pressure(&inner.gp, kick);
                true
            },
            || cbs.pressure_throttle_due(),
        );
        true
    }

    /// Under a memory limit the domain knows or while a pressure signal is
    /// held, a `call` that books no bytes waits while too many entries are
    /// outstanding (`Callbacks::wait_for_call_backlog`), outside a
    /// read-side section; inside one the section owes the wait, as under
    /// pressure. Without a limit or a signal: two loads.
    #[cfg(not(loom))]
    pub(super) fn wait_for_call_backlog(&self) {
        let inner = self.inner();
        let cbs = &inner.callbacks;
        if !cbs.has_headroom() && cbs.pressure.total() == 0 {
            return;
        }
        self.wait_or_owe(
            |kick| cbs.wait_for_call_backlog(&inner.gp, kick),
            || cbs.call_backlog_due(),
        );
    }

    /// Under a memory limit the domain knows (`headroom.rs`), a retire
    /// that booked memory waits while the garbage is over the limit's
    /// allowance, outside a read-side section; inside one the section owes
    /// the wait, as under pressure. Returns whether it waited.
    #[cfg(not(loom))]
    pub(super) fn wait_for_headroom(&self) -> bool {
        let inner = self.inner();
        let cbs = &inner.callbacks;
        if !cbs.has_headroom() {
            return false;
        }
        self.wait_or_owe(
            |kick| {
                // SAFETY: `current_slot` returns this thread's slot, alive
                // while the thread is registered (for as long as this call
                // runs).
                let local = unsafe { &(*self.current_slot()).local };
                cbs.bound_own_garbage(&inner.gp, local, kick)
            },
            || cbs.over_headroom().is_some(),
        )
    }

    /// Outside a read-side section (its own or a foreign one) runs `wait`,
    /// given the kick that starts the grace-period machinery, and returns
    /// what it returns (whether it waited); inside one, where waiting
    /// would hold up the very grace periods it waits for, the section owes
    /// the wait (paid when it ends) if `due` says one is due, and this
    /// returns `false`.
    #[cfg(not(loom))]
    pub(super) fn wait_or_owe(
        &self,
        wait: impl FnOnce(&dyn Fn()) -> bool,
        due: impl FnOnce() -> bool,
    ) -> bool {
        if !self.in_read_section() && !self.foreign_reader_in_section() {
            return wait(&|| self.start_background(true));
        }
        if due() {
            let again = self.owe_throttle();
            if !self
                .inner()
                .callbacks
                .own_section_warned
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                self.note_owing_in_own_section(again);
            }
        }
        false
    }

    /// Times how long this thread's section (or online QSBR stretch) has
    /// owed its waits (`again`: it owed already), and past
    /// [`OWN_SECTION_WARN_MS`] warns ([`warn_retiring_in_own_section`](Self::warn_retiring_in_own_section)): a
    /// section that retires now and then under pressure and soon ends is
    /// the normal case, one that goes on retiring for that long holds up
    /// what it retires.
    #[cfg(not(loom))]
    pub(super) fn note_owing_in_own_section(&self, again: Option<bool>) {
        thread_local! {
            /// The domain and the time (`epoch_ms`) at which this thread's
            /// current section first owed a wait.
            static OWING_SINCE: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
        }
        let Some(again) = again else { return };
        let now = epoch_ms();
        let _ = OWING_SINCE.try_with(|since| {
            let (id, at) = since.get();
            if !again || id != self.id() {
                since.set((self.id(), now));
            } else if now.saturating_sub(at) >= OWN_SECTION_WARN_MS {
                self.warn_retiring_in_own_section();
            }
        });
    }

    /// Once per domain, when a thread that retires inside a read-side
    /// section (or on an online QSBR registration) would have waited for
    /// garbage to be freed because memory is short, for
    /// [`OWN_SECTION_WARN_MS`] in one section, and
    /// [`OWN_SECTION_WARN_BYTES`] or more wait for a grace period: says
    /// that its own section holds them up. A thread that stores in a loop
    /// under a guard (or never reports a quiescent state) otherwise grows
    /// the garbage until the process is killed for memory, silently (a new
    /// user's program was, at 100 MiB in a 128 MiB cgroup).
    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    pub(super) fn warn_retiring_in_own_section(&self) {
        let pending = self.pending_bytes();
        let cbs = &self.inner().callbacks;
        if pending < OWN_SECTION_WARN_BYTES
            || cbs
                .own_section_warned
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let name = crate::reader::current_thread_name();
        let (where_, fix) = if crate::reader::qsbr_only_section_in(self.id()) {
            (
                format!(
                    "on an online QSBR registration that has not reported a quiescent state to \
                     a grace period for {OWN_SECTION_WARN_MS} ms or more (a quiescent_state() \
                     call reports only once a grace period has begun)"
                ),
                "call quiescent_state() between retires (between events), and put the thread \
                 offline (offline_while) where it waits",
            )
        } else {
            (
                "inside a read-side section".to_string(),
                "retire outside sections: drop the guard before RcuCell::store, \
                 RcuHashMap::insert or remove, defer_drop",
            )
        };
        crate::sys::warn_loud(&format!(
            "rcu-reclaim: memory is short and thread '{name}' retires {where_} in domain {}, \
             where it cannot wait for garbage to be freed: {pending} bytes wait for a grace \
             period, and no grace period can end while its section lasts, so they grow until \
             it ends; {fix}",
            self.id()
        ));
    }

    /// Marks the read-side section this thread is in as owing the
    /// pressure throttle: a guard or raw section pays when its outermost
    /// guard drops, an online QSBR registration when it next goes offline
    /// (at its next quiescent state, `thread_offline`,
    /// `offline_while`). A section opened by foreign code (liburcu's
    /// inline read lock) owes nothing: its end is not seen here.
    ///
    /// Returns whether that section (or online stretch) owed already:
    /// `None` when it owes nothing (a foreign section).
    #[cfg(not(loom))]
    pub(super) fn owe_throttle(&self) -> Option<bool> {
        let owed = crate::reader::owe_throttle_in(self.id());
        if owed.is_none()
            && self.flavor() == crate::Flavor::Qsbr
            && crate::reader::qsbr_online_in(self.id())
        {
            return Some(crate::reader::owe_qsbr(self.registry()));
        }
        owed
    }

    /// Pays a wait of the pressure throttle owed by a section that has just
    /// ended (see `owe_throttle`).
    #[cfg(not(loom))]
    #[cold]
    pub(crate) fn pay_owed_throttle(&self) {
        pay_owed_throttle(self.inner(), crate::reader::Payer::SectionEnd);
    }
}

/// Pays a wait of the pressure throttle owed by a section of the domain
/// `inner` that has just ended (`Rcu::owe_throttle`), where the thread is
/// in no other section of that domain (its own, a QSBR registration's, a
/// foreign one), callback or reclaim. The domain's hook for the reader
/// layer (`Registry::pay_owed`), which cannot name the domain.
#[cfg(not(loom))]
#[cold]
pub(crate) fn pay_owed_throttle(
    inner: &std::sync::Arc<crate::domain::Inner>,
    payer: crate::reader::Payer,
) {
    let id = inner.id;
    // Work an online QSBR registration owes besides (a budget's direct
    // reclaim), with the payer counted offline: it looks whether the
    // thread is in a section again, and owes it again if so.
    if let Some(work) = crate::reader::take_owed_work() {
        /// Marks the payer online again when dropped, also if `work` (the
        /// caller's code: a budget's usage function, shrinkers, the OOM
        /// handler) panics: the registration comes back online, and calls
        /// that wait must go on seeing it in a section.
        struct MarkOnline(u64);
        impl Drop for MarkOnline {
            fn drop(&mut self) {
                crate::reader::qsbr_mark_online(self.0);
            }
        }
        let _marked = (payer == crate::reader::Payer::QsbrOffline).then(|| {
            crate::reader::qsbr_mark_offline(id);
            MarkOnline(id)
        });
        work();
    }
    // A QSBR registration paying at a quiescent state was put offline for
    // the wait, though the domain's marks still count it online; another
    // online registration of this thread in the domain would hold up the
    // very grace periods the wait is for.
    let online = || {
        let payer_counted = usize::from(payer == crate::reader::Payer::QsbrOffline);
        crate::reader::qsbr_online_count_in(id) > payer_counted
    };
    if crate::reader::nesting_in(id) > 0
        || online()
        || crate::reader::in_section_after_registrations(&inner.registry)
        || crate::reader::foreign_in_section(id)
        || in_callback()
        || crate::sync::NO_RECLAIM.with(Cell::get)
    {
        return;
    }
    let kick = || {
        inner.callbacks.workers.ensure_started(inner);
        inner.kthread.kick(inner);
    };
    let bounded = inner.callbacks.has_headroom() && {
        // SAFETY: `current_slot` returns this thread's slot, alive while
        // the thread is registered (for as long as this call runs).
        let local = unsafe { &(*crate::reader::current_slot(id, &inner.registry)).local };
        inner.callbacks.bound_own_garbage(&inner.gp, local, &kick)
    };
    if inner.callbacks.pressure.total() > 0 {
        inner.callbacks.throttle_under_pressure(&inner.gp, &kick);
    } else if !bounded {
        inner.callbacks.wait_held_up(&inner.gp, &kick);
    }
    // Owed by a `call` that booked no bytes, maybe.
    inner.callbacks.wait_for_call_backlog(&inner.gp, &kick);
}
