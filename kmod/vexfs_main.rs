//! vexfs: a Linux filesystem whose files carry vector embeddings.
//!
//! The crate root of the kernel module. The on-disk format comes from the shared core crate
//! (`core/`), compiled in as source so that every structure has one definition; the VFS
//! operation tables live in `glue.c` and call the `vexfs_rs_*` functions of [`ops`].
//!
//! The module's own files, bottom up: `ffi` (the C declarations); `vfs`, `buf` and `pins`
//! (each C object wrapped once: with `ops`, the only code with `unsafe`); `index`, `sb`,
//! `inode`, `namei`, `vector`, `ioctl` and `mount` (the filesystem's logic, safe code over
//! those wrappers); `ops` (the entry points glue.c calls, converting its pointers once).

#![allow(unreachable_pub)]

use kernel::prelude::*;

// The shared core, compiled in as source: the same files the tools build.
#[allow(dead_code)]
#[path = "../core/src/abi.rs"]
mod abi;
#[allow(dead_code)]
#[path = "../core/src/crc32c.rs"]
mod crc32c;
#[allow(dead_code)]
#[path = "../core/src/dir_index.rs"]
mod dir_index;
#[allow(dead_code)]
#[path = "../core/src/distance.rs"]
mod distance;
#[allow(dead_code)]
#[path = "../core/src/embed.rs"]
mod embed;
#[allow(dead_code)]
#[path = "../core/src/error.rs"]
mod error;
#[allow(dead_code)]
#[path = "../core/src/extent_tree.rs"]
mod extent_tree;
#[allow(dead_code)]
#[path = "../core/src/file_extents.rs"]
mod file_extents;
#[allow(dead_code)]
#[path = "../core/src/format/mod.rs"]
mod format;
#[allow(dead_code)]
#[path = "../core/src/hnsw.rs"]
mod hnsw;
#[allow(dead_code)]
#[path = "../core/src/index_error.rs"]
mod index_error;
#[allow(dead_code)]
#[path = "../core/src/io.rs"]
mod io;
#[allow(dead_code)]
#[path = "../core/src/journal.rs"]
mod journal;
#[allow(dead_code)]
#[path = "../core/src/pq.rs"]
mod pq;
#[allow(dead_code)]
#[path = "../core/src/sq8.rs"]
mod sq8;
#[allow(dead_code)]
#[path = "../core/src/vindex.rs"]
mod vindex;

mod buf;
mod errors;
mod ffi;
mod index;
mod inode;
mod ioctl;
mod mount;
mod namei;
mod ops;
mod pins;
mod sb;
mod txn;
mod vector;
mod vfs;
mod xattr;

module! {
    type: Vexfs,
    name: "vexfs",
    author: "vexfs developers",
    description: "vexfs: a filesystem with in-kernel vector search",
    license: "GPL",
}

struct Vexfs;

impl kernel::Module for Vexfs {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: called once at module load; registers the filesystem type of glue.c.
        kernel::error::to_result(unsafe { ffi::vexfs_c_register() })?;
        Ok(Vexfs)
    }
}

impl Drop for Vexfs {
    fn drop(&mut self) {
        // SAFETY: the filesystem was registered in `init`; no vexfs is mounted (the module
        // is pinned by every mount).
        unsafe { ffi::vexfs_c_unregister() };
    }
}
