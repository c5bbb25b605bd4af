//! The searcher of `vexctl search-image` (open, searches at several ef and k, a filtered
//! search, paths) on structure-aware mutants of the small base image: see `vexfs_fuzz::search`
//! (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vexfs_fuzz::search(data));
