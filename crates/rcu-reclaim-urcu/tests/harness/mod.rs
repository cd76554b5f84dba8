//! Shared by the C ABI tests: finds the tools, builds the library and its
//! drop-in copy, compiles and runs the C programs.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every symbol the issue lists (liburcu 0.13's memb ABI for programs built
/// without `_LGPL_SOURCE`, 0.14's polled pair) plus our extensions.
pub const EXPORTS: &[&str] = &[
    "urcu_memb_read_lock",
    "urcu_memb_read_unlock",
    "urcu_memb_read_ongoing",
    "urcu_memb_register_thread",
    "urcu_memb_unregister_thread",
    "urcu_memb_synchronize_rcu",
    "urcu_memb_init",
    "urcu_memb_call_rcu",
    "urcu_memb_barrier",
    "urcu_memb_create_call_rcu_data",
    "urcu_memb_call_rcu_data_free",
    "urcu_memb_get_default_call_rcu_data",
    "urcu_memb_get_cpu_call_rcu_data",
    "urcu_memb_get_thread_call_rcu_data",
    "urcu_memb_get_call_rcu_data",
    "urcu_memb_set_thread_call_rcu_data",
    "urcu_memb_set_cpu_call_rcu_data",
    "urcu_memb_create_all_cpu_call_rcu_data",
    "urcu_memb_free_all_cpu_call_rcu_data",
    "urcu_memb_get_call_rcu_thread",
    "urcu_memb_call_rcu_before_fork",
    "urcu_memb_call_rcu_after_fork_parent",
    "urcu_memb_call_rcu_after_fork_child",
    "urcu_memb_defer_rcu",
    "urcu_memb_defer_register_thread",
    "urcu_memb_defer_unregister_thread",
    "urcu_memb_defer_barrier",
    "urcu_memb_defer_barrier_thread",
    "urcu_memb_defer_exit",
    "urcu_memb_flavor",
    "urcu_memb_register_rculfhash_atfork",
    "urcu_memb_unregister_rculfhash_atfork",
    "rcu_dereference_sym",
    "rcu_set_pointer_sym",
    "rcu_xchg_pointer_sym",
    "rcu_cmpxchg_pointer_sym",
    "urcu_memb_start_poll_synchronize_rcu",
    "urcu_memb_poll_state_synchronize_rcu",
    "rcu_reclaim_pressure_start",
    "rcu_reclaim_pressure_end",
    "rcu_reclaim_pending",
    "rcu_reclaim_pending_bytes",
    "rcu_reclaim_call_rcu_sized",
    "rcu_reclaim_run_callbacks",
    "rcu_reclaim_stats_json",
    "rcu_reclaim_free_string",
];

/// The library's SONAME unless `RCU_RECLAIM_URCU_SONAME` changed it.
pub const DEFAULT_SONAME: &str = "librcu_reclaim_urcu.so";
const DROPIN: &str = "liburcu-memb.so.8";

pub struct Env {
    pub crate_dir: PathBuf,
    /// `librcu_reclaim_urcu.so` as cargo built it.
    pub lib: PathBuf,
    /// Holds our library as `liburcu-memb.so.8` (SONAME patched to match)
    /// and `liburcu-memb.so` for linking.
    pub dropin_dir: PathBuf,
    /// Debian's `liburcu-memb.so.8`, if installed.
    pub real_liburcu: Option<PathBuf>,
    work: PathBuf,
    cc: String,
}

impl Env {
    /// The environment, set up once per test binary; `None` (with the reason
    /// printed) where a tool is missing.
    pub fn get() -> Option<&'static Env> {
        static ENV: OnceLock<Result<Env, String>> = OnceLock::new();
        match ENV.get_or_init(Env::setup) {
            Ok(env) => Some(env),
            Err(why) => {
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    fn setup() -> Result<Env, String> {
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        for (tool, arg) in [
            (cc.as_str(), "--version"),
            ("nm", "--version"),
            ("readelf", "--version"),
        ] {
            if !Command::new(tool)
                .arg(arg)
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return Err(format!("{tool} not found (install gcc and binutils)"));
            }
        }
        let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_abi");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).expect("create the test directory");
        // The headers: compile a probe that includes them.
        let probe = work.join("probe.c");
        std::fs::write(&probe, "#include <urcu.h>\nint main(void) { return 0; }\n").unwrap();
        let ok = Command::new(&cc)
            .args(["-fsyntax-only"])
            .arg(&probe)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("liburcu-dev headers not found (apt-get install liburcu-dev)".into());
        }
        let lib = build_library();
        let dropin_dir = work.join("dropin");
        std::fs::create_dir_all(&dropin_dir).unwrap();
        let bytes = std::fs::read(&lib).expect("read the library");
        let patched = patch_soname(bytes, &current_soname(), DROPIN);
        std::fs::write(dropin_dir.join(DROPIN), &patched).unwrap();
        std::fs::write(dropin_dir.join("liburcu-memb.so"), &patched).unwrap();
        let real = Command::new(&cc)
            .arg(format!("-print-file-name={DROPIN}"))
            .output()
            .ok()
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.is_absolute() && p.exists());
        Ok(Env {
            crate_dir,
            lib,
            dropin_dir,
            real_liburcu: real,
            work,
            cc,
        })
    }

    /// Compiles `tests/c/<prog>.c` (no `_LGPL_SOURCE`) with `libs`.
    pub fn compile(&self, prog: &str, cflags: &[&str], libs: &[&str]) -> PathBuf {
        let src = self.crate_dir.join("tests/c").join(format!("{prog}.c"));
        let exe = self.work.join(prog);
        let out = Command::new(&self.cc)
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-pthread"])
            .args(cflags)
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .arg(format!("-L{}", self.dropin_dir.display()))
            .args(libs)
            .output()
            .expect("run the C compiler");
        assert!(
            out.status.success(),
            "compiling {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    }
}

/// The SONAME the library was built with.
pub fn current_soname() -> String {
    std::env::var("RCU_RECLAIM_URCU_SONAME").unwrap_or_else(|_| DEFAULT_SONAME.into())
}

/// Builds the cdylib with the profile and target directory of this test
/// binary (`target/<profile>/deps/c_abi-*`) and returns its path.
fn build_library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lies in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "rcu-reclaim-urcu",
        "--lib",
        "--target-dir",
    ])
    .arg(target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => panic!("unexpected test binary path {}", exe.display()),
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p rcu-reclaim-urcu failed");
    let lib = profile_dir.join("librcu_reclaim_urcu.so");
    assert!(lib.exists(), "{} missing after the build", lib.display());
    lib
}

/// Rewrites the SONAME string in the dynamic string table (a test-only
/// stand-in for building with `RCU_RECLAIM_URCU_SONAME=liburcu-memb.so.8`,
/// which would rebuild the crate): `to` must not be longer than `from`.
fn patch_soname(mut bytes: Vec<u8>, from: &str, to: &str) -> Vec<u8> {
    assert!(
        to.len() <= from.len(),
        "cannot lengthen the SONAME in place"
    );
    let needle: Vec<u8> = [&[0u8][..], from.as_bytes(), &[0]].concat();
    let mut replacement = vec![0u8; needle.len()];
    replacement[1..1 + to.len()].copy_from_slice(to.as_bytes());
    let mut found = 0;
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        let at = i + pos;
        bytes[at..at + needle.len()].copy_from_slice(&replacement);
        found += 1;
        i = at + needle.len() - 1;
    }
    assert!(found > 0, "SONAME {from} not found in the library");
    bytes
}

/// The defined dynamic symbols of a shared library (`nm -D`).
pub fn dynamic_symbols(lib: &Path) -> HashSet<String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib)
        .output()
        .expect("run nm");
    assert!(out.status.success(), "nm -D {} failed", lib.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .collect()
}

/// The SONAME recorded in a shared library (`readelf -d`).
pub fn soname(lib: &Path) -> Option<String> {
    let out = Command::new("readelf").arg("-d").arg(lib).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("(SONAME)"))?;
    let start = line.find('[')? + 1;
    let end = line.rfind(']')?;
    Some(line[start..end].to_string())
}

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Whether the loader resolved `liburcu-memb.so.8` to the drop-in.
    pub loaded_ours: bool,
    /// The loader's resolution (`LD_TRACE_LOADED_OBJECTS`), for messages.
    pub trace: String,
}

/// How long one C program may run before it counts as hung.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `exe`, against the drop-in in `dropin` if given (else against
/// whatever the loader finds: Debian's liburcu).
pub fn run(exe: &Path, dropin: Option<&Path>) -> Output {
    let env_of = |cmd: &mut Command| {
        cmd.env_remove("LD_LIBRARY_PATH");
        if let Some(dir) = dropin {
            cmd.env("LD_LIBRARY_PATH", dir);
        }
    };
    let mut trace_cmd = Command::new(exe);
    env_of(&mut trace_cmd);
    let trace = trace_cmd
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let loaded_ours = dropin.is_some_and(|d| {
        trace
            .lines()
            .any(|l| l.contains(&format!("{DROPIN} => {}", d.display())))
    });
    let mut cmd = Command::new(exe);
    env_of(&mut cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the C program");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the C program") {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} hung (killed after {TIMEOUT:?})", exe.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code(),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
        loaded_ours,
        trace,
    }
}
