//! Build script: compiles the liburcu comparison shim (`csrc/urcu_shim.c`)
//! when, and only when, the `liburcu` feature is on. The default build needs
//! no C compiler and no C library.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/urcu_shim.c");
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_LIBURCU");
    if std::env::var_os("CARGO_FEATURE_LIBURCU").is_some() {
        build_shim();
    }
    readme_doctests();
}

/// The README's examples run as doc tests: the workspace's README in a
/// checkout, the copy `cargo package` puts beside the manifest in a package.
fn readme_doctests() {
    println!("cargo::rustc-check-cfg=cfg(readme_doctests)");
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    for readme in [dir.join("../../README.md"), dir.join("README.md")] {
        if readme.is_file() {
            println!("cargo:rerun-if-changed={}", readme.display());
            println!("cargo:rustc-env=RCU_RECLAIM_README={}", readme.display());
            println!("cargo:rustc-cfg=readme_doctests");
            return;
        }
    }
}

/// Compiles the shim against Debian's liburcu-dev (`_LGPL_SOURCE`, so the
/// read-side primitives are inlined into the shim's loops) and links the
/// memb flavor.
#[cfg(feature = "liburcu")]
fn build_shim() {
    cc::Build::new()
        .file("csrc/urcu_shim.c")
        .opt_level(2)
        // Code generation of a C program (Debian's gcc builds PIE): liburcu's
        // TLS reader word is then reached with the initial-exec model and
        // its globals directly. The cc crate's default, -fPIC, would go
        // through the GOT and redo the TLS address computation at every
        // access, charging liburcu ~7 extra instructions per pair. The shim
        // is only ever linked into the benches' executables (Rust builds
        // them as PIE).
        .pic(false)
        .flag("-fPIE")
        .warnings(true)
        .extra_warnings(true)
        .compile("rcu_reclaim_urcu_shim");
    // Everything the shim calls out of line (`urcu_memb_register_thread`,
    // `urcu_memb_synchronize_rcu`, the `urcu_memb_reader` TLS block and
    // `urcu_memb_gp`) lives in liburcu-memb.so, which needs no other urcu
    // library.
    println!("cargo:rustc-link-lib=dylib=urcu-memb");
}

#[cfg(not(feature = "liburcu"))]
fn build_shim() {
    unreachable!("CARGO_FEATURE_LIBURCU is set only with the liburcu feature");
}
