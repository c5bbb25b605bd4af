// SPDX-License-Identifier: GPL-2.0

//! Test-only module for the vexfs debug kernel: loading it reads one byte past a heap object from
//! Rust, which KASAN must report (`BUG: KASAN: slab-out-of-bounds`). It shows that rustc's KASAN
//! instrumentation reaches out-of-tree Rust modules such as vexfs.ko (tests/guest/002).

use kernel::prelude::*;

module! {
    type: Probe,
    name: "vexfs_probe_rs",
    author: "vexfs developers",
    description: "vexfs debug-kernel probe: a Rust out-of-bounds read for KASAN (tests only)",
    license: "GPL",
}

struct Probe;

impl kernel::Module for Probe {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let v = KVec::<u8>::with_capacity(24, GFP_KERNEL)?;
        let p = v.as_ptr();
        // SAFETY: none; this is the bug on purpose. Byte 24 lies in the kmalloc-32 slot that holds
        // the 24-byte buffer (so nothing else is touched) but past the buffer, which KASAN reports.
        let b = unsafe { core::ptr::read_volatile(p.wrapping_add(24)) };
        pr_info!("read {}\n", b);
        drop(v);
        Ok(Probe)
    }
}
