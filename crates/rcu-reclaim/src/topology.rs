//! CPUs and NUMA nodes: read from `/sys/devices/system/node`, or synthetic
//! so per-node behaviour can be exercised on a one-node machine.
//!
//! Callback queues are sharded per CPU and grouped per NUMA node; pressure
//! (`pressure::NodeMask`) and reclaim are per node. Use
//! [`Topology`] to see what a domain detected
//! ([`Rcu::topology`](crate::Rcu::topology)), or to give a domain a
//! synthetic one ([`Config::topology`](crate::Config::topology)).
//!
//! ```
//! use rcu_reclaim::topology::Topology;
//! use rcu_reclaim::{Config, Rcu};
//!
//! let rcu = Rcu::new(Config::new().topology(Topology::synthetic(2, 2))).unwrap();
//! assert_eq!(rcu.topology().nodes(), 2);
//! assert!(Topology::detect().cpus() >= 1);
//! ```

use std::cell::Cell;
use std::fmt;
use std::fs;
use std::path::Path;

/// Which CPUs exist and which NUMA node each belongs to.
///
/// Callback queues are sharded per CPU and grouped per node; a CPU number
/// reported by the kernel beyond the topology's range is folded into it
/// (`cpu % cpus()`), so a synthetic topology works on any machine.
///
/// ```
/// use rcu_reclaim::topology::Topology;
/// let t = Topology::synthetic(4, 2);
/// assert_eq!(t.cpus(), 8);
/// assert_eq!(t.nodes(), 4);
/// assert_eq!(t.node_of(5), 2);
/// assert_eq!(t.cpus_of(3), &[6, 7]);
/// ```
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Topology {
    node_of_cpu: Vec<usize>,
    cpus_of_node: Vec<Vec<usize>>,
}

impl Topology {
    /// `nodes` nodes of `cpus_per_node` CPUs each, numbered node by node.
    /// Zero counts are raised to one.
    ///
    /// # Panics
    /// If `nodes * cpus_per_node` overflows `usize`.
    ///
    /// ```
    /// let t = rcu_reclaim::topology::Topology::synthetic(2, 3);
    /// assert_eq!(t.node_of(4), 1);
    /// ```
    pub fn synthetic(nodes: usize, cpus_per_node: usize) -> Topology {
        let (nodes, per) = (nodes.max(1), cpus_per_node.max(1));
        // Unchecked, a product past `usize::MAX` wrapped in release builds
        // (to zero CPUs for `synthetic(1 << 32, 1 << 32)`, and a division
        // by zero on the first `call`).
        let cpus = nodes.checked_mul(per).unwrap_or_else(|| {
            panic!(
                "rcu-reclaim: Topology::synthetic({nodes}, {per}): nodes * cpus_per_node \
                 overflows usize; use counts the machine could have"
            )
        });
        Topology {
            node_of_cpu: (0..cpus).map(|c| c / per).collect(),
            cpus_of_node: (0..nodes)
                .map(|n| (n * per..(n + 1) * per).collect())
                .collect(),
        }
    }

    /// The machine's topology from `/sys/devices/system/node/node*/cpulist`;
    /// where that is unreadable, one node holding every available CPU.
    ///
    /// ```
    /// let t = rcu_reclaim::topology::Topology::detect();
    /// assert!(t.cpus() >= 1 && t.nodes() >= 1);
    /// ```
    pub fn detect() -> Topology {
        Self::from_sysfs(Path::new("/sys/devices/system/node")).unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            Topology::synthetic(1, cpus)
        })
    }

    fn from_sysfs(dir: &Path) -> Option<Topology> {
        let mut nodes: Vec<(usize, Vec<usize>)> = Vec::new();
        for entry in fs::read_dir(dir).ok()? {
            let entry = entry.ok()?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_prefix("node")) else {
                continue;
            };
            let Ok(id) = id.parse::<usize>() else {
                continue;
            };
            let list = fs::read_to_string(entry.path().join("cpulist")).ok()?;
            nodes.push((id, parse_cpulist(&list)?));
        }
        Self::from_node_cpus(nodes)
    }

    /// Builds a topology from `(node id, cpus)` pairs (node ids and CPU
    /// numbers compacted to dense ranges).
    fn from_node_cpus(mut nodes: Vec<(usize, Vec<usize>)>) -> Option<Topology> {
        nodes.retain(|(_, cpus)| !cpus.is_empty());
        if nodes.is_empty() {
            return None;
        }
        nodes.sort();
        let max_cpu = nodes.iter().flat_map(|(_, c)| c.iter()).max().copied()?;
        let mut node_of_cpu = vec![usize::MAX; max_cpu + 1];
        for (dense, (_, cpus)) in nodes.iter().enumerate() {
            for &c in cpus {
                node_of_cpu[c] = dense;
            }
        }
        // CPUs missing from every node list (offline holes) go to node 0.
        for n in node_of_cpu.iter_mut().filter(|n| **n == usize::MAX) {
            *n = 0;
        }
        let mut cpus_of_node = vec![Vec::new(); nodes.len()];
        for (cpu, &node) in node_of_cpu.iter().enumerate() {
            cpus_of_node[node].push(cpu);
        }
        Some(Topology {
            node_of_cpu,
            cpus_of_node,
        })
    }

    /// Number of CPUs (callback shards).
    ///
    /// ```
    /// assert_eq!(rcu_reclaim::topology::Topology::synthetic(1, 3).cpus(), 3);
    /// ```
    pub fn cpus(&self) -> usize {
        self.node_of_cpu.len()
    }

    /// Number of NUMA nodes.
    ///
    /// ```
    /// assert_eq!(rcu_reclaim::topology::Topology::synthetic(2, 1).nodes(), 2);
    /// ```
    pub fn nodes(&self) -> usize {
        self.cpus_of_node.len()
    }

    /// The node of `cpu` (folded into range).
    ///
    /// ```
    /// assert_eq!(rcu_reclaim::topology::Topology::synthetic(2, 2).node_of(3), 1);
    /// ```
    pub fn node_of(&self, cpu: usize) -> usize {
        self.node_of_cpu[cpu % self.cpus()]
    }

    /// The CPUs of `node`; empty for a node that does not exist.
    ///
    /// ```
    /// let t = rcu_reclaim::topology::Topology::synthetic(2, 2);
    /// assert_eq!(t.cpus_of(0), &[0, 1]);
    /// assert!(t.cpus_of(9).is_empty());
    /// ```
    pub fn cpus_of(&self, node: usize) -> &[usize] {
        self.cpus_of_node.get(node).map_or(&[], Vec::as_slice)
    }

    /// The shard the calling thread should use: its current CPU (or the
    /// override set with `override_current_cpu`, a `testing` hook) folded into range.
    pub(crate) fn current_cpu(&self) -> usize {
        let cpu = CPU_OVERRIDE.with(Cell::get).unwrap_or_else(sched_getcpu);
        cpu % self.cpus()
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("cpus", &self.cpus())
            .field("nodes", &self.cpus_of_node)
            .finish()
    }
}

/// The CPU the calling thread runs on (0 if the kernel cannot say).
#[cfg(not(miri))]
fn sched_getcpu() -> usize {
    // SAFETY: sched_getcpu takes no arguments; it returns -1 on error.
    let c = unsafe { libc::sched_getcpu() };
    usize::try_from(c).unwrap_or(0)
}

/// Miri has no `sched_getcpu`: each thread gets a CPU of its own, numbered
/// in the order threads first ask, so per-CPU sharding (and the stealing
/// between shards) is still exercised.
#[cfg(miri)]
fn sched_getcpu() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static CPU: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    CPU.with(|c| *c)
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
fn parse_cpulist(s: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (
                    a.trim().parse::<usize>().ok()?,
                    b.trim().parse::<usize>().ok()?,
                );
                if b < a || b - a > 1 << 16 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    Some(cpus)
}

thread_local! {
    static CPU_OVERRIDE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Makes the calling thread act as if it ran on `cpu` (or on its real CPU
/// again with `None`) when it queues callbacks, so per-CPU and per-node
/// behaviour can be driven deterministically in tests and simulations.
///
/// A test hook, only with the `testing` feature: not for production.
///
/// ```
/// use rcu_reclaim::topology::{override_current_cpu, Topology};
/// use rcu_reclaim::{Config, Rcu};
/// let rcu = Rcu::new(Config::new().topology(Topology::synthetic(4, 1))).unwrap();
/// override_current_cpu(Some(3));
/// rcu.call_sized(|| {}, 64); // with bytes: on CPU 3's shard at once
/// override_current_cpu(None);
/// assert_eq!(rcu.pending_on_node(3), 1);
/// rcu.barrier();
/// ```
#[cfg(feature = "testing")]
pub fn override_current_cpu(cpu: Option<usize>) {
    CPU_OVERRIDE.with(|c| c.set(cpu));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpulists_parse() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpulist("5"), Some(vec![5]));
        assert_eq!(parse_cpulist(""), Some(vec![]));
        assert_eq!(parse_cpulist("3-1"), None);
        assert_eq!(parse_cpulist("a-b"), None);
        assert_eq!(parse_cpulist("0-99999999"), None);
    }

    #[test]
    fn node_lists_become_dense() {
        let t =
            Topology::from_node_cpus(vec![(1, vec![2, 3]), (0, vec![0, 1]), (4, vec![])]).unwrap();
        assert_eq!(t.nodes(), 2);
        assert_eq!(t.cpus_of(1), &[2, 3]);
        assert_eq!(t.node_of(2), 1);
        // A hole (cpu 2 missing) is folded into node 0.
        let t = Topology::from_node_cpus(vec![(0, vec![0, 1]), (1, vec![3])]).unwrap();
        assert_eq!(t.node_of(2), 0);
        assert_eq!(t.cpus(), 4);
        assert!(Topology::from_node_cpus(vec![]).is_none());
    }

    #[test]
    fn this_machine_is_detected() {
        let t = Topology::detect();
        assert!(t.cpus() >= 1);
        assert!(t.current_cpu() < t.cpus());
    }
}
