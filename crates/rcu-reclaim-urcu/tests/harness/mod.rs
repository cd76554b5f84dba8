//! Shared by the C ABI tests of both drop-ins (`rcu-reclaim-urcu`, and
//! `rcu-reclaim-urcu-qsbr`, whose tests include this file): finds the
//! tools, builds the library and its drop-in copy, compiles and runs the C
//! programs.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A drop-in library under test: its package, its file and SONAME as
/// cargo builds it, and the liburcu library it stands in for.
pub struct Lib {
    /// The cargo package that builds it.
    pub package: &'static str,
    /// The cdylib's file name under `target/<profile>`.
    pub file: &'static str,
    /// Its SONAME unless `soname_var` changed it.
    pub default_soname: &'static str,
    /// The environment variable its build.rs takes the SONAME from.
    pub soname_var: &'static str,
    /// The liburcu library it replaces (`liburcu-memb.so.8`).
    pub dropin: &'static str,
    /// The name `-l` links against (`liburcu-memb.so`).
    pub link_name: &'static str,
    /// A header of liburcu-dev the C programs include.
    pub header: &'static str,
}

/// The memb drop-in (`rcu-reclaim-urcu`).
#[allow(dead_code)] // each test binary uses one of the two
pub const MEMB: Lib = Lib {
    package: "rcu-reclaim-urcu",
    file: "librcu_reclaim_urcu.so",
    default_soname: "librcu_reclaim_urcu.so",
    soname_var: "RCU_RECLAIM_URCU_SONAME",
    dropin: "liburcu-memb.so.8",
    link_name: "liburcu-memb.so",
    header: "urcu.h",
};

/// The QSBR drop-in (`rcu-reclaim-urcu-qsbr`).
#[allow(dead_code)] // each test binary uses one of the two
pub const QSBR: Lib = Lib {
    package: "rcu-reclaim-urcu-qsbr",
    file: "librcu_reclaim_urcu_qsbr.so",
    default_soname: "librcu_reclaim_urcu_qsbr.so",
    soname_var: "RCU_RECLAIM_URCU_QSBR_SONAME",
    dropin: "liburcu-qsbr.so.8",
    link_name: "liburcu-qsbr.so",
    header: "urcu-qsbr.h",
};

/// The library this test binary tests (set by `Env::get`).
static LIB: OnceLock<&'static Lib> = OnceLock::new();

pub struct Env {
    pub crate_dir: PathBuf,
    /// `librcu_reclaim_urcu.so` (or `_qsbr`) as cargo built it.
    pub lib: PathBuf,
    /// Holds our library as `liburcu-memb.so.8` (or `-qsbr`; SONAME patched
    /// to match) and `liburcu-memb.so` for linking.
    pub dropin_dir: PathBuf,
    /// Debian's `liburcu-memb.so.8` (or `-qsbr`), if installed.
    pub real_liburcu: Option<PathBuf>,
    work: PathBuf,
    cc: String,
}

impl Env {
    /// The environment, set up once per test binary; `None` (with the reason
    /// printed) where a tool is missing.
    pub fn get(lib: &'static Lib) -> Option<&'static Env> {
        static ENV: OnceLock<Result<Env, String>> = OnceLock::new();
        let _ = LIB.set(lib);
        assert_eq!(
            LIB.get().unwrap().package,
            lib.package,
            "one library per test binary"
        );
        match ENV.get_or_init(|| Env::setup(lib)) {
            Ok(env) => Some(env),
            Err(why) => {
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    fn setup(lib_of: &'static Lib) -> Result<Env, String> {
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
        // One directory per test process: both drop-ins' test binaries
        // share `CARGO_TARGET_TMPDIR`, and two processes at once (a runner
        // with a process per test, two `cargo test`s sharing the target
        // directory) each wiped one shared `c_abi` directory the other's
        // programs and drop-in lived in ("start the C program: No such
        // file", or the real liburcu loaded in place of the drop-in).
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_abi");
        let prefix = format!("{}-", lib_of.package);
        remove_dead_processes_dirs(&root, &prefix);
        let work = root.join(format!("{prefix}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).expect("create the test directory");
        // The headers: compile a probe that includes them.
        let probe = work.join("probe.c");
        std::fs::write(
            &probe,
            format!(
                "#include <{}>\nint main(void) {{ return 0; }}\n",
                lib_of.header
            ),
        )
        .unwrap();
        let ok = Command::new(&cc)
            .args(["-fsyntax-only"])
            .arg(&probe)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("liburcu-dev headers not found (apt-get install liburcu-dev)".into());
        }
        let lib = build_library(lib_of);
        let dropin_dir = work.join("dropin");
        std::fs::create_dir_all(&dropin_dir).unwrap();
        let bytes = std::fs::read(&lib).expect("read the library");
        let patched = patch_soname(bytes, &current_soname(), lib_of.dropin);
        std::fs::write(dropin_dir.join(lib_of.dropin), &patched).unwrap();
        std::fs::write(dropin_dir.join(lib_of.link_name), &patched).unwrap();
        let real = Command::new(&cc)
            .arg(format!("-print-file-name={}", lib_of.dropin))
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

    /// Builds `prog` (no extra flags) against `libs`, runs it on ours
    /// alone, and checks that it exits 0 printing exactly `expected`: for
    /// programs liburcu is known to fail (it hangs or crashes there).
    /// Returns the run, for checks of its standard error.
    #[allow(dead_code)] // each test binary uses its own subset
    pub fn assert_ours_prints(&self, prog: &str, libs: &[&str], expected: &str) -> Output {
        let exe = self.compile(prog, &[], libs);
        let out = self.run_ours(&exe, &[]);
        assert_eq!(out.code, Some(0), "{prog}: {}\n{}", out.stdout, out.stderr);
        assert_eq!(out.stdout, expected, "{prog}: {}", out.stderr);
        out
    }

    /// Runs `exe` with `args` against the drop-in, checking that the
    /// loader picked it (not Debian's library).
    pub fn run_ours(&self, exe: &Path, args: &[&str]) -> Output {
        self.run_ours_in(exe, args, None)
    }

    /// As [`run_ours`](Env::run_ours), in the cgroup `cgroup` (a
    /// directory of a cgroup hierarchy) from its first instruction when
    /// given.
    pub fn run_ours_in(&self, exe: &Path, args: &[&str], cgroup: Option<&Path>) -> Output {
        let out = run_cmd(exe, args, Some(&self.dropin_dir), cgroup);
        assert!(
            out.loaded_ours,
            "{}: the drop-in was not the library the loader picked:\n{}",
            exe.display(),
            out.trace
        );
        out
    }

    /// Runs `exe` with `args` against the drop-in in a fresh cgroup v1
    /// whose memory limit is 100 MiB (`tag` names it), from its first
    /// instruction: its output, and whether the OOM killer ended it. `None`
    /// (the reason printed) where no such cgroup can be made: no v1
    /// memory hierarchy, or not root.
    pub fn run_ours_in_100_mib(&self, tag: &str, exe: &Path, args: &[&str]) -> Option<CgroupRun> {
        let root = Path::new("/sys/fs/cgroup/memory");
        if !root.join("cgroup.procs").exists() {
            println!(
                "skipped: no cgroup v1 memory hierarchy at {}",
                root.display()
            );
            return None;
        }
        let dir = root.join(format!("rcu-reclaim-urcu-{tag}-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&dir) {
            println!(
                "skipped: cannot create {} ({e}); run as root",
                dir.display()
            );
            return None;
        }
        let limited = std::fs::write(
            dir.join("memory.limit_in_bytes"),
            (100u64 << 20).to_string(),
        );
        let out = limited.map(|()| self.run_ours_in(exe, args, Some(&dir)));
        let oom = std::fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
        let peak = std::fs::read_to_string(dir.join("memory.max_usage_in_bytes"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        for _ in 0..50 {
            if std::fs::remove_dir(&dir).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = out.unwrap_or_else(|e| panic!("cannot set the limit of {}: {e}", dir.display()));
        let killed = oom
            .lines()
            .any(|l| l.starts_with("oom_kill ") && !l.ends_with(" 0"));
        Some(CgroupRun {
            out,
            killed,
            oom,
            peak,
        })
    }

    /// Compiles `tests/c/<prog>.c` (no `_LGPL_SOURCE`) with `libs`, once
    /// per test binary for each set of flags.
    pub fn compile(&self, prog: &str, cflags: &[&str], libs: &[&str]) -> PathBuf {
        let src = self.crate_dir.join("tests/c").join(format!("{prog}.c"));
        // One executable per set of flags: tests build the same program
        // with different ones at the same time.
        let flags: String = cflags
            .iter()
            .flat_map(|f| f.chars().filter(char::is_ascii_alphanumeric))
            .collect();
        let exe = self.work.join(if flags.is_empty() {
            prog.to_string()
        } else {
            format!("{prog}-{flags}")
        });
        // Tests that run the same program compile it at the same time:
        // one of them ran the executable while another's linker rewrote
        // it (`Permission denied`, or a half-written file). The first
        // compiles it, under the lock; the others wait and reuse it.
        static COMPILED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
        let mut compiled = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
        if compiled.contains(&exe) {
            return exe;
        }
        let out = Command::new(&self.cc)
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-pthread"])
            .args(cflags)
            // Headers shared by both drop-ins' programs (`stress.h`) live
            // beside the memb drop-in's.
            .arg(format!(
                "-I{}",
                self.crate_dir.join("../rcu-reclaim-urcu/tests/c").display()
            ))
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
        compiled.push(exe.clone());
        exe
    }
}

/// Removes the directories `<prefix><pid>` under `root` that earlier test
/// processes, no longer running, left. A live process's is kept (or one
/// whose pid was reused: it is only left behind).
fn remove_dead_processes_dirs(root: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether `dir` is named like a target triple of this machine's
/// architecture and OS (`x86_64-unknown-linux-gnu`).
fn names_this_machine(dir: &str) -> bool {
    let mut parts = dir.split('-');
    parts.next() == Some(std::env::consts::ARCH)
        && dir.matches('-').count() >= 2
        && parts.any(|p| p == std::env::consts::OS)
}

/// The SONAME the library was built with.
pub fn current_soname() -> String {
    let lib = LIB.get().expect("Env::get ran");
    std::env::var(lib.soname_var).unwrap_or_else(|_| lib.default_soname.into())
}

/// Builds the cdylib with the profile, target directory and target of
/// this test binary (`target/<profile>/deps/c_abi-*`, or
/// `target/<triple>/<profile>/deps/c_abi-*` when built with `--target`, as
/// sanitizer builds are: see `.ci/asan`) and returns its path.
fn build_library(lib: &Lib) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lies in <target>/<profile>/deps");
    let mut target_dir = profile_dir.parent().expect("<target>/<profile>");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", lib.package, "--lib"]);
    // Cargo marks the root of a target directory with CACHEDIR.TAG (when
    // it creates the directory) and `.rustc_info.json` (at every build); a
    // directory below it named like this machine's triple
    // (`x86_64-unknown-linux-gnu`: its architecture first, its OS in it)
    // holding the profile is a `--target` build's. (Newer cargo marks
    // that directory with CACHEDIR.TAG too, so the mark cannot tell it
    // from a target directory; a target directory below another, such as
    // `target/urcu-dropin-old`, is not named like a triple. A root that
    // existed before cargo first built into it, as `target/asan` does
    // where it also holds `target/asan/asan`, has no CACHEDIR.TAG: the
    // drop-in was then built without `--target`, its proc macros with the
    // sanitizer, and every C test failed to load it.)
    if let (Some(root), Some(triple)) = (
        target_dir.parent(),
        target_dir.file_name().and_then(|n| n.to_str()),
    ) {
        let marked = ["CACHEDIR.TAG", ".rustc_info.json"]
            .iter()
            .any(|mark| root.join(mark).exists());
        if marked && names_this_machine(triple) {
            cmd.arg("--target").arg(triple);
            target_dir = root;
        }
    }
    cmd.arg("--target-dir")
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
    assert!(status.success(), "cargo build -p {} failed", lib.package);
    let file = profile_dir.join(lib.file);
    assert!(file.exists(), "{} missing after the build", file.display());
    file
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

/// The size `nm -D -S` gives the dynamic symbol `name` of `lib`, if any.
pub fn symbol_size(lib: &Path, name: &str) -> Option<u64> {
    let out = Command::new("nm")
        .args(["-D", "-S", "--defined-only"])
        .arg(lib)
        .output()
        .expect("run nm");
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let f: Vec<_> = l.split_whitespace().collect();
        (f.len() == 4 && f[3] == name)
            .then(|| u64::from_str_radix(f[1], 16).ok())
            .flatten()
    })
}

/// The defined data symbols (ELF type `OBJECT` or `TLS`) among the dynamic
/// symbols of a shared library, each with its type, binding and size
/// (`readelf --dyn-syms -W`): what a program built against liburcu's
/// headers copies at load (copy relocations) or addresses in its static
/// TLS block, by liburcu's sizes.
pub fn data_symbols(lib: &Path) -> std::collections::BTreeMap<String, (String, String, u64)> {
    let out = Command::new("readelf")
        .args(["--dyn-syms", "-W"])
        .arg(lib)
        .output()
        .expect("run readelf");
    assert!(
        out.status.success(),
        "readelf --dyn-syms {} failed",
        lib.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // Num: Value Size Type Bind Vis Ndx Name
            let f: Vec<_> = l.split_whitespace().collect();
            if f.len() < 8 || f[6] == "UND" || !matches!(f[3], "OBJECT" | "TLS") {
                return None;
            }
            let size = f[2]
                .strip_prefix("0x")
                .map_or_else(|| f[2].parse().ok(), |h| u64::from_str_radix(h, 16).ok())?;
            let name = f[7].split('@').next().unwrap_or(f[7]).to_string();
            Some((name, (f[3].to_string(), f[4].to_string(), size)))
        })
        .collect()
}

impl Env {
    /// Asserts that every data symbol of the real library (where it is
    /// installed) is defined by ours with the same ELF type, binding and
    /// size: a smaller one is copied short into the program at load (the
    /// loader warns "has different size"), a different thread-local block
    /// puts the inlined read side's counter elsewhere.
    pub fn assert_data_symbols_match_liburcu(&self) {
        let Some(real) = &self.real_liburcu else {
            eprintln!("skipped: no liburcu library to compare with");
            return;
        };
        let theirs = data_symbols(real);
        assert!(
            !theirs.is_empty(),
            "no data symbols found in {}",
            real.display()
        );
        let ours = data_symbols(&self.lib);
        let differ: Vec<_> = theirs
            .iter()
            .filter(|(name, want)| ours.get(*name) != Some(*want))
            .map(|(name, want)| format!("{name}: liburcu {want:?}, ours {:?}", ours.get(name)))
            .collect();
        assert!(
            differ.is_empty(),
            "data symbols that differ from {}: {differ:#?}",
            real.display()
        );
    }

    /// Asserts that the flavor table `name` has 0.13's size (fourteen
    /// pointers), as liburcu's own has where it is installed: a program
    /// built against it copies the table at load without the loader's
    /// "has different size in shared object" warning.
    pub fn assert_flavor_table_has_0_13s_size(&self, name: &str) {
        assert_eq!(symbol_size(&self.lib, name), Some(14 * 8), "{name}");
        if let Some(real) = &self.real_liburcu {
            assert_eq!(symbol_size(real, name), Some(14 * 8), "liburcu's {name}");
        }
    }
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

/// A run in a memory cgroup (`Env::run_ours_in_100_mib`).
pub struct CgroupRun {
    pub out: Output,
    /// Whether the cgroup's OOM killer ended it.
    pub killed: bool,
    /// The cgroup's `memory.oom_control`, for messages.
    pub oom: String,
    /// The cgroup's peak usage, in bytes.
    pub peak: u64,
}

impl CgroupRun {
    /// Fails, naming `what`, unless the program exited with 0 and the
    /// cgroup's OOM killer left it alone.
    pub fn assert_lived(&self, what: &str) {
        assert!(
            !self.killed && self.out.code == Some(0),
            "{what}: exit {:?}, {}\n{}",
            self.out.code,
            self.oom,
            self.out.stderr
        );
    }

    /// For `flood_heavy.c`: prints what `what`'s run measured, then fails
    /// unless it lived ([`assert_lived`](Self::assert_lived)) and ran every
    /// callback it queued (its line: "R M calls/s, RUN of CALLED callbacks
    /// run, peak rss P MB").
    pub fn assert_flood_lived_and_ran_all(&self, what: &str) {
        let out = &self.out;
        println!(
            "{what}: {} cgroup peak {} bytes",
            out.stdout.trim(),
            self.peak
        );
        self.assert_lived(what);
        let counts: Vec<&str> = out
            .stdout
            .split(", ")
            .nth(1)
            .unwrap_or("")
            .split(' ')
            .collect();
        assert!(
            counts.len() > 2 && counts[0] == counts[2] && counts[0] != "0",
            "{what}: not every callback ran: {}",
            out.stdout
        );
    }
}

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Whether the loader resolved `liburcu-memb.so.8` (or `-qsbr`) to the
    /// drop-in.
    pub loaded_ours: bool,
    /// The loader's resolution (`LD_TRACE_LOADED_OBJECTS`), for messages.
    pub trace: String,
}

/// How long one C program may run before it counts as hung.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Every thread's backtrace in process `pid`, from gdb if it is installed
/// (for a hung C program's report: which library, where it waits), or why
/// there is none.
fn thread_stacks(pid: u32) -> String {
    // Under `timeout`: gdb must not hang the report in turn.
    let gdb = Command::new("timeout")
        .args(["60", "gdb", "-batch", "-nx", "-p", &pid.to_string()])
        .args(["-ex", "thread apply all bt"])
        .stdin(Stdio::null())
        .output();
    match gdb {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {
            String::from_utf8_lossy(&o.stdout).into_owned()
        }
        Ok(o) if o.status.success() => "(gdb printed none: the program had just ended)".into(),
        Ok(o) => format!(
            "(gdb could not attach: {})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("(no backtrace: gdb did not start: {e})"),
    }
}

/// Runs `exe`, against the drop-in in `dropin` if given (else against
/// whatever the loader finds: Debian's liburcu).
pub fn run(exe: &Path, dropin: Option<&Path>) -> Output {
    run_with_args(exe, &[], dropin)
}

/// As [`run`], with command-line arguments.
pub fn run_with_args(exe: &Path, args: &[&str], dropin: Option<&Path>) -> Output {
    run_cmd(exe, args, dropin, None)
}

/// As [`run_with_args`], in the cgroup `cgroup` when given: a shell moves
/// itself there, then runs `exe` in its place.
fn run_cmd(exe: &Path, args: &[&str], dropin: Option<&Path>, cgroup: Option<&Path>) -> Output {
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
    let name = LIB.get().expect("Env::get ran").dropin;
    let loaded_ours = dropin.is_some_and(|d| {
        trace
            .lines()
            .any(|l| l.contains(&format!("{name} => {}", d.display())))
    });
    let mut cmd = match cgroup {
        Some(dir) => {
            let mut sh = Command::new("/bin/sh");
            sh.args(["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\""])
                .arg(dir)
                .arg(exe);
            sh
        }
        None => Command::new(exe),
    };
    cmd.args(args);
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
            let stacks = thread_stacks(child.id());
            let _ = child.kill();
            let _ = child.wait();
            let library = match dropin {
                Some(dir) => format!("the drop-in in {}", dir.display()),
                None => "the system's liburcu".to_string(),
            };
            panic!(
                "{} {args:?} on {library} hung (killed after {TIMEOUT:?})\n\
                 stdout:\n{}\nstderr:\n{}\nits threads at the kill:\n{stacks}",
                exe.display(),
                out_t.join().unwrap_or_default(),
                err_t.join().unwrap_or_default(),
            );
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
