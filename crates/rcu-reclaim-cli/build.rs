//! Build script: compiles the liburcu shim (`csrc/urcu_bench.c`) for
//! `rcu-reclaim bench` when, and only when, the `liburcu` feature is on.
//! The default build needs no C compiler and no C library.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/urcu_bench.c");
    println!("cargo:rerun-if-changed=csrc/urcu_qsbr_bench.c");
    #[cfg(feature = "liburcu")]
    {
        // As the library's comparison shim: code generation of a C program
        // (PIE, initial-exec TLS for liburcu's reader word) rather than the
        // cc crate's default -fPIC, which reaches that word through the GOT.
        cc::Build::new()
            .file("csrc/urcu_bench.c")
            .file("csrc/urcu_qsbr_bench.c")
            .opt_level(2)
            .pic(false)
            .flag("-fPIE")
            .warnings(true)
            .extra_warnings(true)
            .compile("rcu_reclaim_urcu_bench");
        println!("cargo:rustc-link-lib=dylib=urcu-memb");
        // The QSBR flavor's symbols are prefixed (`urcu_qsbr_*`) apart from
        // the memb flavor's: both libraries link into one binary.
        println!("cargo:rustc-link-lib=dylib=urcu-qsbr");
    }
}
