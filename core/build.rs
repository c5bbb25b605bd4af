//! Compiles the C distance kernels (csrc/) for userspace builds, i.e. only with the `std`
//! feature: the kernel module compiles the same files through Kbuild, and when core is compiled
//! into the kernel as source this script does not run at all.
//!
//! Flags match the kernel build (Kbuild): clang, -O2, -ffp-contract=off (no FMA unless
//! written), -ffreestanding (so <immintrin.h> needs no libc header, as under -nostdinc),
//! SSE2 for the scalar and SSE2 files, AVX2+FMA for the AVX2 file, AVX-512 F/BW/VL besides
//! those for the AVX-512 file. Same compiler, same flags
//! and a fixed reduction order give the same bits on both sides.

use std::env;

const COMMON: &[&str] = &["-ffp-contract=off", "-ffreestanding", "-fno-fast-math"];

fn build(name: &str, files: &[&str], isa: &[&str]) {
    let mut b = cc::Build::new();
    b.compiler("clang").opt_level(2).warnings(true).extra_warnings(true);
    for f in COMMON.iter().chain(isa) {
        b.flag(f);
    }
    for f in files {
        b.file(f);
    }
    b.compile(name);
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for f in
        ["distance.h", "distance_scalar.c", "distance_sse2.c", "distance_avx2.c", "distance_avx512.c", "distance_pq.c"]
    {
        println!("cargo:rerun-if-changed=csrc/{f}");
    }
    if env::var_os("CARGO_FEATURE_STD").is_none() {
        return;
    }
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch == "x86_64" {
        build(
            "vexfs_dist_sse2",
            &["csrc/distance_scalar.c", "csrc/distance_sse2.c", "csrc/distance_pq.c"],
            &["-msse2"],
        );
        build("vexfs_dist_avx2", &["csrc/distance_avx2.c"], &["-msse2", "-mavx2", "-mfma"]);
        build(
            "vexfs_dist_avx512",
            &["csrc/distance_avx512.c"],
            &["-msse2", "-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl"],
        );
    } else {
        build("vexfs_dist_scalar", &["csrc/distance_scalar.c", "csrc/distance_pq.c"], &[]);
    }
}
