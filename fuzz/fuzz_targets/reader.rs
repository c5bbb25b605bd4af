//! The offline reader (the tree from the root, files, vector slots, paths, lookups) on
//! structure-aware mutants of the small base image: see `vexfs_fuzz::reader` (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vexfs_fuzz::reader(data));
