//! Tells the drop-ins where the C they share lies (`csrc/`: liburcu's data
//! layout and its futex fallbacks, which programs built with `_LGPL_SOURCE`
//! reach and name): they read it
//! as `DEP_RCU_RECLAIM_URCU_COMMON_INCLUDE` and compile it into their own
//! library, which exports it.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:include={dir}/csrc");
}
