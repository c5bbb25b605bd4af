//! Mounting and unmounting: what fill_super checks and builds, and what put_super writes.

use crate::buf::Buf;
use crate::format::inode::MAX_FILE_SIZE;
use crate::format::journal::{JournalSuper, JOURNAL_CLEAN};
use crate::format::superblock::{Region, Superblock, MAGIC, ROOT_INO, STATE_ERRORS};
use crate::format::BLOCK_SIZE;
use crate::index::IndexState;
use crate::sb::{NewSuperBlock, SbInfo, SuperBlock};
use kernel::prelude::*;

/// Validates the superblock and journal of the device, builds the mount's state (the index
/// state included), counts free space, reads the root inode and marks the filesystem as
/// mounted on disk (not clean). Every refusal is logged, `silent` or not: a mount that names
/// vexfs wants to know why. Errors: `EINVAL` (not vexfs, unsupported, device too small or
/// without 4096-byte blocks), `EUCLEAN` (corrupt), `EIO`, `ENOMEM`.
pub fn fill_super(sb: &NewSuperBlock, _silent: bool) -> Result {
    let Ok(dev) = sb.set_block_size() else {
        pr_err!("vexfs ({}): device cannot use {}-byte blocks\n", sb.name(), BLOCK_SIZE);
        return Err(EINVAL);
    };
    let device_blocks = sb.device_bytes() / BLOCK_SIZE as u64;
    let disk = {
        let b = Buf::read(dev, 0)?;
        Superblock::decode(b.data()).map_err(|e| dev.report(e))?
    };
    disk.validate(device_blocks).map_err(|e| dev.report(e))?;
    let journal = disk.region(Region::Journal);
    let js = JournalSuper::decode(Buf::read(dev, journal.start)?.data(), journal.start, journal.blocks, &disk.uuid)
        .map_err(|e| dev.report(e))?;
    if js.flags & JOURNAL_CLEAN == 0 {
        return Err(dev.corrupt("journal: live records without the RECOVER feature", js.next_lsn));
    }
    if disk.state & STATE_ERRORS != 0 {
        pr_warn!("vexfs ({}): mounting a filesystem with errors; run fsck.vexfs\n", dev.name());
    }
    let index = IndexState::new(dev, &disk)?;
    let info = SbInfo::new(disk, index)?;
    sb.set_limits(MAGIC, MAX_FILE_SIZE);
    sb.fill(info, |mounted| {
        mounted.lock().recount()?;
        let root = crate::inode::iget(mounted, ROOT_INO as u64)?;
        if !root.is_dir() {
            drop(root);
            return Err(mounted.corrupt("root inode is not a directory", ROOT_INO as u64));
        }
        sb.set_root(root)?;
        mounted.lock().write_super(false, true)
    })
}

/// Unmount (put_super, after the last inode is evicted): unpins the index's buffers and
/// records a clean unmount. Errors are logged.
pub fn put_super(sb: &SuperBlock) {
    crate::vector::release(sb);
    if let Err(e) = sb.lock().write_super(true, true) {
        pr_err!("vexfs ({}): writing the superblock at unmount failed: {:?}\n", sb.name(), e);
    }
}
