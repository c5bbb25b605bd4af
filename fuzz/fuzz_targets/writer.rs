//! The offline writer (journal replay, create, SET, REMOVE, mkdir, commit) on
//! structure-aware mutants of the small base image: see `vexfs_fuzz::writer` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vexfs_fuzz::writer(data));
