//! `fsck.vexfs` (-n, -y, -p) on structure-aware mutants of the small base image, its
//! committed transaction replayed: see `vexfs_fuzz::fsck` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vexfs_fuzz::fsck(data));
