//! The garbage of a domain bounded by the memory limit of the process's
//! cgroup (see [`Rcu::bound_garbage`]).

use super::cgroup_usage::{cgroup_limit, CgroupLimit, InactiveFile};
use super::SourceError;
use crate::domain::Rcu;
use crate::reclaim::Watermarks;

/// Bounds `rcu`'s garbage by the memory limit of the process's cgroup
/// (the nearest that sets one, as [`budget_from_cgroup`](super::budget_from_cgroup)
/// finds it): retiring threads wait while the garbage is over half of what
/// would take the cgroup's usage (less its inactive page cache) to its
/// medium watermark, 85 % of the limit (see [`Rcu::bound_garbage`]).
/// Returns the limit; the error names the files tried when no cgroup sets
/// one. [`auto_pressure`](super::auto_pressure),
/// [`auto_pressure_for`](super::auto_pressure_for) and
/// [`budget_from_cgroup`](super::budget_from_cgroup) call it for the
/// domain they serve.
///
/// ```
/// let rcu = rcu_reclaim::Rcu::new(Default::default()).unwrap();
/// match rcu_reclaim::sources::bound_garbage_by_cgroup(&rcu) {
///     Ok(limit) => println!("garbage bounded by a limit of {limit} bytes"),
///     Err(e) => println!("not bounded: {e}"),
/// }
/// assert_eq!(rcu.garbage_bounded(), rcu_reclaim::sources::bound_garbage_by_cgroup(&rcu).is_ok());
/// ```
pub fn bound_garbage_by_cgroup(rcu: &Rcu) -> Result<usize, SourceError> {
    let CgroupLimit { limit, usage, .. } = cgroup_limit()?;
    let inactive = InactiveFile::beside(usage.path());
    let mark = Watermarks::from_limit(limit).low;
    rcu.bound_garbage(mark, move || {
        let used = super::bytes_usize(usage.read().ok()??);
        Some(used.saturating_sub(inactive.as_ref().map_or(0, InactiveFile::bytes)))
    });
    Ok(limit)
}

/// As [`bound_garbage_by_cgroup`], for a monitor or budget that serves
/// `rcu`: a process in no limited cgroup is told nothing (it has no limit
/// to keep to).
pub(crate) fn bound_garbage_if_limited(rcu: &Rcu) {
    if let Err(e) = bound_garbage_by_cgroup(rcu) {
        tracing::debug!("rcu-reclaim: garbage not bounded by a cgroup limit: {e}");
    }
}
