//! Sets the shared library's SONAME: `librcu_reclaim_urcu_qsbr.so` by
//! default, or the value of `RCU_RECLAIM_URCU_QSBR_SONAME`
//! (`liburcu-qsbr.so.8` makes the library a drop-in for liburcu's QSBR
//! flavor; see the README). Compiles `csrc/lgpl_reader.c` (the data that
//! programs built with `_LGPL_SOURCE` read and write directly) and exports
//! its symbols (`lgpl_reader.map`, beside rustc's own version script).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RCU_RECLAIM_URCU_QSBR_SONAME");
    let soname = std::env::var("RCU_RECLAIM_URCU_QSBR_SONAME")
        .unwrap_or_else(|_| "librcu_reclaim_urcu_qsbr.so".to_string());
    let valid = !soname.is_empty()
        && soname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !valid {
        panic!(
            "RCU_RECLAIM_URCU_QSBR_SONAME={soname:?} is not a library file name (letters, \
             digits, '.', '_', '+', '-'); use e.g. RCU_RECLAIM_URCU_QSBR_SONAME=liburcu-qsbr.so.8"
        );
    }
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");

    println!("cargo:rerun-if-changed=csrc/lgpl_reader.c");
    println!("cargo:rerun-if-changed=lgpl_reader.map");
    let common = std::env::var("DEP_RCU_RECLAIM_URCU_COMMON_INCLUDE")
        .expect("rcu-reclaim-urcu-common's build script gives its C's path");
    println!("cargo:rerun-if-changed={common}/compat_futex.h");
    println!("cargo:rerun-if-changed={common}/urcu_layout.h");
    println!("cargo:rerun-if-changed={common}/flavor_table.h");
    cc::Build::new()
        .file("csrc/lgpl_reader.c")
        .include(&common)
        .opt_level(2)
        .warnings(true)
        .compile("rcu_reclaim_urcu_qsbr_lgpl");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/lgpl_reader.map");
}
