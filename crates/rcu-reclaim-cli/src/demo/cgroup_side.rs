//! `demo --cgroup-limit`: each side runs in a child process inside a fresh
//! memory cgroup with a hard limit, so the kernel's own OOM killer is the
//! judge. The child streams its samples as JSON lines; the parent reads the
//! cgroup's peak usage and OOM-kill count, and removes the cgroup on every
//! exit path (it is a guard).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcu_reclaim::sources::{CgroupPaths, MemoryEvents, V1_MEMORY_ROOT, V2_ROOT};
use serde::{Deserialize, Serialize};

use crate::demo::{mode_name, CgroupOutcome, DemoConfig, Sample, SideReport};
use crate::stdout::errln;

/// A memory cgroup this process created; removed when dropped.
pub struct MemCgroup {
    dir: PathBuf,
    v2: bool,
    /// What the command still does without --cgroup-limit, for messages.
    without: &'static str,
}

/// Removes the cgroups under `parent` that an earlier run of this program
/// left behind when it was killed (`rcu-reclaim-demo-<pid>-…`,
/// `rcu-reclaim-cache-<pid>-…`): its process is gone and no process is
/// left in them. Others are left as they are.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = ["rcu-reclaim-demo-", "rcu-reclaim-cache-"]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        let dir = entry.path();
        let empty = fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty());
        let gone = pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists();
        if gone && empty && fs::remove_dir(&dir).is_ok() {
            errln!(
                "rcu-reclaim: removed {}, left by a killed run",
                dir.display()
            );
        }
    }
}

/// What `demo` still does without --cgroup-limit (see [`MemCgroup::create`]).
const DEMO_WITHOUT: &str = "the in-process --budget still applies";

/// Why `--cgroup-limit` cannot run here, and what to do instead (`without`:
/// what the command still does without it).
fn unavailable(why: String, without: &str) -> String {
    format!(
        "--cgroup-limit: {why}; run as root on a machine with the memory cgroup controller, \
         or drop --cgroup-limit ({without})"
    )
}

impl MemCgroup {
    /// Creates a fresh cgroup `name` with a hard memory limit of `limit`
    /// bytes (and no swap to escape to): cgroup v2 where the unified
    /// hierarchy has the memory controller, else cgroup v1. `without` says,
    /// in the messages, what the command still does without --cgroup-limit.
    pub fn create(name: &str, limit: usize, without: &'static str) -> Result<MemCgroup, String> {
        let own = CgroupPaths::for_this_process().unwrap_or_default();
        let v2_root = Path::new(V2_ROOT);
        let v2_ok = fs::read_to_string(v2_root.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"));
        let v1_root = Path::new(V1_MEMORY_ROOT);
        let (parent, v2) = if v2_ok {
            (v2_root.to_path_buf(), true)
        } else if v1_root.join("cgroup.procs").exists() {
            let own_dir = own
                .v1_memory
                .map(|p| v1_root.join(p.trim_start_matches('/')))
                .filter(|d| d.join("cgroup.procs").exists());
            (own_dir.unwrap_or_else(|| v1_root.to_path_buf()), false)
        } else {
            return Err(unavailable(
                format!(
                    "no memory cgroup here (no memory controller in {}/cgroup.subtree_control, \
                     no v1 hierarchy at {V1_MEMORY_ROOT})",
                    V2_ROOT
                ),
                without,
            ));
        };
        remove_stale(&parent);
        let dir = parent.join(name);
        fs::create_dir(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "--cgroup-limit: {} already exists (left by a run that was killed, whose \
                     processes may still run in it): end the processes listed in its \
                     cgroup.procs, then rmdir it",
                    dir.display()
                )
            } else {
                unavailable(format!("cannot create {} ({e})", dir.display()), without)
            }
        })?;
        let cg = MemCgroup { dir, v2, without };
        let (limit_file, swap_file, swap_value) = if v2 {
            ("memory.max", "memory.swap.max", "0".to_string())
        } else {
            (
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                limit.to_string(),
            )
        };
        cg.write(limit_file, &limit.to_string())?;
        if cg.dir.join(swap_file).exists() {
            cg.write(swap_file, &swap_value)?;
        }
        Ok(cg)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let path = self.dir.join(file);
        fs::write(&path, value).map_err(|e| {
            let why = format!("cannot write {value} to {} ({e})", path.display());
            unavailable(why, self.without)
        })
    }

    /// "v1" or "v2".
    pub fn version(&self) -> &'static str {
        if self.v2 {
            "v2"
        } else {
            "v1"
        }
    }

    /// The cgroup's peak usage, where the kernel reports it.
    pub fn peak(&self) -> Option<usize> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        MemoryEvents::read(self.dir.join(file)).map_or(0, |e| e.oom_kill)
    }

    /// `cgroup.procs`, opened for the child to join before it execs.
    pub(crate) fn procs(&self) -> Result<File, String> {
        let path = self.dir.join("cgroup.procs");
        OpenOptions::new().write(true).open(&path).map_err(|e| {
            unavailable(
                format!("cannot open {} ({e})", path.display()),
                self.without,
            )
        })
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // The child has exited; the kernel may take a moment to let go.
        for _ in 0..100 {
            if fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        errln!("rcu-reclaim: could not remove {}", self.dir.display());
    }
}

/// One line the child prints.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildLine {
    Sample(Sample),
    Report(Box<SideReport>),
}

/// The child's side of the protocol: run one side, streaming samples.
pub fn child_main(cfg: &DemoConfig, aware: bool) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    let mut emit = |line: &ChildLine| {
        // A closed pipe means the parent is gone: nothing left to tell.
        let _ = serde_json::to_writer(&mut out, line);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    };
    let mut report = crate::demo::run_side(cfg, aware, &mut |s| emit(&ChildLine::Sample(*s)))?;
    report.samples.clear(); // already streamed
    emit(&ChildLine::Report(Box::new(report)));
    Ok(())
}

/// Set by SIGINT, SIGTERM or SIGHUP (the terminal or the ssh session
/// closed) while a child runs: the parent kills the child, removes the
/// cgroup and stops, rather than dying with the cgroup left.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Whether SIGINT, SIGTERM or SIGHUP came since [`catch_interrupts`].
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Routes SIGINT, SIGTERM and SIGHUP to `INTERRUPTED` (once), except a
/// signal this process was started with ignored: `nohup` ignores SIGHUP, and
/// a shell ignores SIGINT in its background jobs, so that the run outlives
/// the terminal or a Ctrl-C meant for the script, as a run without
/// --cgroup-limit does.
pub(crate) fn catch_interrupts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: sigaction(2) with no new action only reads the current
            // one into `old`, a zeroed sigaction of our own.
            let ignored = unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction == libc::SIG_IGN
            };
            if ignored {
                continue;
            }
            // SAFETY: a zeroed sigaction with a handler that only stores to
            // an atomic (async-signal-safe); SA_RESTART keeps reads going.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_interrupt as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    });
}

/// Makes the child that `cmd` spawns join the cgroup whose `cgroup.procs`
/// is open as `procs` (see [`enter_cgroup_child`]), before it execs.
pub(crate) fn join_cgroup_at_exec(cmd: &mut Command, procs: i32) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec; it only
    // makes async-signal-safe system calls and allocates nothing.
    unsafe {
        cmd.pre_exec(move || enter_cgroup_child(procs, parent));
    }
}

/// What a child started in a cgroup runs between fork and exec: it asks to
/// be killed when its parent dies (so a parent killed with SIGKILL, or by
/// a CI timeout, leaves no child running; the next run removes the empty
/// cgroup), then joins the cgroup by writing its pid to `fd`. Only
/// async-signal-safe calls; nothing is allocated.
fn enter_cgroup_child(fd: i32, parent: libc::pid_t) -> std::io::Result<()> {
    // SAFETY: `prctl(PR_SET_PDEATHSIG)` and `getppid` are plain system
    // calls with no memory arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The parent died before the request took effect: no signal comes.
        if libc::getppid() != parent {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        write_pid(fd, libc::getpid())
    }
}

/// Writes `pid` in decimal to `fd` without allocating (runs between fork
/// and exec).
fn write_pid(fd: i32, pid: i32) -> std::io::Result<()> {
    let mut buf = [0u8; 12];
    let mut i = buf.len();
    let mut n = pid.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // SAFETY: `buf[i..]` is a valid, initialised byte range and `fd` is an
    // open descriptor the parent owns until the child has exec'd.
    let r = unsafe { libc::write(fd, buf[i..].as_ptr().cast(), buf.len() - i) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs one side in a child process inside a fresh cgroup limited to
/// `limit` bytes. `on_sample` sees the child's samples as they arrive.
pub fn run_in_cgroup(
    cfg: &DemoConfig,
    aware: bool,
    limit: usize,
    on_sample: &mut dyn FnMut(&Sample),
) -> Result<SideReport, String> {
    catch_interrupts();
    let name = format!(
        "rcu-reclaim-demo-{}-{}",
        std::process::id(),
        mode_name(aware)
    );
    let cg = MemCgroup::create(&name, limit, DEMO_WITHOUT)?;
    let procs = cg.procs()?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["demo", "--child", "--side", mode_name(aware)])
        .args(["--duration", &cfg.duration.as_secs_f64().to_string()])
        .args(["--budget", &cfg.budget_for(aware).to_string()])
        .args(["--readers", &cfg.readers.to_string()])
        .args(["--writers", &cfg.writers.to_string()])
        .args(["--keys", &cfg.keys.to_string()])
        .args(["--payload-min", &cfg.payload_min.to_string()])
        .args(["--payload-max", &cfg.payload_max.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    join_cgroup_at_exec(&mut cmd, procs.as_raw_fd());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the {} child in {name}: {e}", mode_name(aware)))?;
    drop(procs);
    // Never hang: a child past its time (plus a minute) is killed. The
    // watchdog kills only under the lock, before `reading` is cleared, and
    // the child is reaped only after: it never signals a reused pid.
    let reading = Arc::new(Mutex::new(true));
    let timed_out = Arc::new(AtomicBool::new(false));
    let pid = child.id() as i32;
    let deadline = Instant::now() + cfg.duration + Duration::from_secs(60);
    let watchdog = {
        let (reading, timed_out) = (reading.clone(), timed_out.clone());
        thread::spawn(move || loop {
            {
                let still = reading.lock().unwrap_or_else(|p| p.into_inner());
                if !*still {
                    return;
                }
                if Instant::now() > deadline {
                    timed_out.store(true, Ordering::Relaxed);
                    // SAFETY: kill(2) on our own child, not yet reaped
                    // (reaping waits for `reading` to be cleared).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
            }
            thread::sleep(Duration::from_millis(100));
        })
    };
    let mut samples = Vec::new();
    let mut report = None;
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<ChildLine>(&line) {
            Ok(ChildLine::Sample(s)) => {
                on_sample(&s);
                samples.push(s);
            }
            Ok(ChildLine::Report(r)) => report = Some(*r),
            Err(_) => {} // not ours (e.g. a library's own output)
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            let _ = child.kill();
            break;
        }
    }
    *reading.lock().unwrap_or_else(|p| p.into_inner()) = false;
    let _ = watchdog.join();
    let status = loop {
        // Stdout closed: the child is exiting (or closed it and hangs).
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() > deadline => {
                timed_out.store(true, Ordering::Relaxed);
                let _ = child.kill();
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for the child: {e}")),
        }
    };
    let timed_out = timed_out.load(Ordering::Relaxed);
    if INTERRUPTED.load(Ordering::Relaxed) {
        drop(cg); // removed before we stop
        return Err("interrupted: the child was stopped and its cgroup removed".into());
    }
    let oom_kills = cg.oom_kills();
    let killed = status.signal() == Some(libc::SIGKILL);
    let exit = describe_exit(status, timed_out, oom_kills);
    let outcome = CgroupOutcome {
        version: cg.version().to_string(),
        limit,
        peak_usage: cg.peak(),
        oom_killed: killed && oom_kills > 0,
        oom_kills,
        exit,
    };
    let mut report = match report {
        Some(r) if status.success() => r,
        _ => SideReport::from_samples(aware, samples.clone()),
    };
    report.samples = samples;
    report.cgroup = Some(outcome);
    Ok(report)
}

/// How a child in a memory cgroup ended, in words: past its time, its exit
/// code, the OOM killer (a SIGKILL while the cgroup counted an OOM kill),
/// or another signal.
pub fn describe_exit(status: std::process::ExitStatus, timed_out: bool, oom_kills: u64) -> String {
    match (status.code(), status.signal()) {
        _ if timed_out => "killed: ran past its time".to_string(),
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(libc::SIGKILL)) if oom_kills > 0 => "killed by the OOM killer".to_string(),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "unknown".to_string(),
    }
}
