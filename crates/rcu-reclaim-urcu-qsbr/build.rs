//! Sets the shared library's SONAME: `librcu_reclaim_urcu_qsbr.so` by
//! default, or the value of `RCU_RECLAIM_URCU_QSBR_SONAME`
//! (`liburcu-qsbr.so.8` makes the library a drop-in for liburcu's QSBR
//! flavor; see the README).

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
}
