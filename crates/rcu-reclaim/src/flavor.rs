//! The flavors: how readers and writers order their memory accesses, and
//! the writer's half of each pairing.

use std::fmt;
use std::sync::atomic::Ordering;

use crate::sync::fence;

/// How readers and writers order their memory accesses.
///
/// ```
/// use rcu_reclaim::{Config, Flavor, Rcu};
/// let rcu = Rcu::new(Config::new().flavor(Flavor::Mb)).unwrap();
/// assert_eq!(rcu.flavor(), Flavor::Mb);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Flavor {
    /// The outermost `read_lock` is a plain store and a compiler fence; each
    /// grace period pays one `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`,
    /// which makes the readers' compiler fences full fences. The default where
    /// the kernel offers the command (Linux 4.14 and later).
    Memb,
    /// Readers issue a full fence on entry and exit; no system call on the
    /// writer side. The fallback where `membarrier` is unavailable.
    Mb,
    /// Quiescent-state-based (liburcu's `urcu-qsbr`): a thread registered
    /// with [`Rcu::register_qsbr_thread`](crate::Rcu::register_qsbr_thread)
    /// reads with no instruction at all and reports quiescent states; a
    /// grace period waits until every online registered thread has reported
    /// one. Writers issue a fence, no system call. Never detected: only
    /// chosen with [`Config::flavor`](crate::Config::flavor). Guards from
    /// [`Rcu::read_lock`](crate::Rcu::read_lock) work on such a domain too,
    /// at the mb flavor's cost. See [`QsbrThread`](crate::QsbrThread).
    ///
    /// ```
    /// use rcu_reclaim::{Config, Flavor, Rcu};
    /// let rcu = Rcu::new(Config::new().flavor(Flavor::Qsbr)).unwrap();
    /// assert_eq!(rcu.flavor(), Flavor::Qsbr);
    /// assert_eq!(rcu.flavor().to_string(), "qsbr");
    /// ```
    Qsbr,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Memb => "memb",
            Flavor::Mb => "mb",
            Flavor::Qsbr => "qsbr",
        })
    }
}

/// Parses the name [`Display`](fmt::Display) gives (`memb`, `mb`, `qsbr`;
/// any case), e.g. from an environment variable or a configuration file;
/// anything else is [`Error::InvalidConfig`](crate::Error::InvalidConfig),
/// naming the flavors.
///
/// ```
/// use rcu_reclaim::{Config, Flavor, Rcu};
/// let flavor: Flavor = "mb".parse().unwrap();
/// let rcu = Rcu::new(Config::new().flavor(flavor)).unwrap();
/// assert_eq!(rcu.flavor().to_string().parse::<Flavor>(), Ok(Flavor::Mb));
/// let err = "fast".parse::<Flavor>().unwrap_err();
/// assert!(err.to_string().contains("memb, mb or qsbr"), "{err}");
/// ```
impl std::str::FromStr for Flavor {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "memb" => Ok(Flavor::Memb),
            "mb" => Ok(Flavor::Mb),
            "qsbr" => Ok(Flavor::Qsbr),
            _ => Err(crate::Error::InvalidConfig(format!(
                "unknown flavor {s:?}: use memb, mb or qsbr (or leave the flavor unset for the \
                 best one the kernel offers)"
            ))),
        }
    }
}

/// The writer's half of the read-side barrier pairing.
pub(crate) fn writer_barrier(flavor: Flavor) {
    match flavor {
        #[cfg(not(loom))]
        Flavor::Memb => crate::sys::membarrier_private_expedited(),
        _ => fence(Ordering::SeqCst),
    }
}

/// The reader's half of the pairing (the read side's fences, and the
/// callback queues' owner fence that mirrors it): a compiler fence for memb,
/// which the writer's `membarrier` turns into a full fence on every thread;
/// a full fence otherwise.
///
/// Under Miri the memb flavor fences as mb does: Miri has no `membarrier`,
/// and the writer's stand-in (`sys::membarrier`, a SeqCst fence on the
/// writer alone) orders nothing on the readers' side, so a compiler fence
/// here would let Miri run executions the kernel rules out and report
/// use-after-frees that cannot happen.
#[inline(always)]
pub(crate) fn reader_fence(flavor: Flavor) {
    match flavor {
        #[cfg(not(miri))]
        Flavor::Memb => std::sync::atomic::compiler_fence(Ordering::SeqCst),
        _ => fence(Ordering::SeqCst),
    }
}
