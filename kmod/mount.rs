//! Mounting and unmounting: what fill_super checks and builds, and what put_super writes.

use crate::buf::Buf;
use crate::embed::{min_journal_blocks, worst_step_blocks};
use crate::format::inode::MAX_FILE_SIZE;
use crate::format::superblock::{Region, Superblock, FEATURE_INCOMPAT_RECOVER, MAGIC, ROOT_INO, STATE_ERRORS};
use crate::format::BLOCK_SIZE;
use crate::index::{IndexState, PadPool};
use crate::pins::PinTable;
use crate::sb::{NewSuperBlock, SbInfo, SuperBlock};
use crate::txn::JState;
use crate::vfs::mount_c::MountC;
use core::pin::Pin;
use kernel::prelude::*;

/// Validates the superblock, replays the journal (before anything else reads the disk), builds
/// the mount's state (the index state and the journal's included), counts free space, reads
/// the root inode and marks the filesystem as mounted on disk (not clean, `RECOVER` set). Every refusal is logged, `silent` or not: a mount that names
/// vexfs wants to know why. Errors: `EINVAL` (not vexfs, unsupported, device too small or
/// without 4096-byte blocks), `EUCLEAN` (corrupt), `EIO`, `ENOMEM`.
pub fn fill_super(sb: &NewSuperBlock, _silent: bool) -> Result {
    // The state is built in a function of its own: its large frame (the parts of `SbInfo`
    // before they are boxed, the journal's replay) is gone before the mount's deep paths
    // (`iget`, orphans, the index worker's start) run below this one.
    let (info, crashed, rdonly) = open_state(sb)?;
    sb.set_limits(MAGIC, MAX_FILE_SIZE);
    sb.fill(info, |mounted| {
        mounted.lock().recount()?;
        let root = crate::inode::iget(mounted, ROOT_INO as u64)?;
        if !root.is_dir() {
            drop(root);
            return Err(mounted.corrupt("root inode is not a directory", ROOT_INO as u64));
        }
        sb.set_root(root)?;
        // From now on memory pressure may take index blocks back. After the root: a failure
        // from here on goes through put_super, which stops the shrinker before the state goes
        // (a failure before it frees the state with the shrinker never started).
        mounted.info().mount_c.start_shrinker()?;
        // RECOVER in the superblock first, then the journal marked in use: fsck never finds a
        // live journal on a filesystem that does not ask for recovery.
        mounted.lock().write_super_direct(false)?;
        mounted.journal().start(mounted)?;
        if !rdonly {
            free_orphans(mounted, crashed)?;
        }
        if !rdonly {
            let c = &mounted.info().mount_c;
            c.start_ticker(COMMIT_SECONDS);
            // The vector write-ahead log's records left by the last mount are linked from now on,
            // and a purge of tombstones left due (or cut short) is run.
            c.start_index();
            match crate::vector::stats(mounted) {
                Ok((h, _)) => {
                    if h.pending > 0 {
                        pr_info!(
                            "vexfs ({}): {} pending vector(s) to link into the index\n",
                            mounted.name(),
                            h.pending
                        );
                    }
                    if h.pending > 0 || crate::vindex::purge_wanted(&h) {
                        c.kick_index(0);
                    }
                }
                // A fatal signal came: the worker looks for itself.
                Err(_) => c.kick_index(0),
            }
        }
        Ok(())
    })
}

/// The first half of [`fill_super`]: validates the superblock, replays the journal (before
/// anything else reads the disk) and builds the mount's state, boxed. Gives the state, whether
/// the filesystem was left mounted read-write (a crash) and whether the device is read-only.
/// Not inlined, so that its frame (some KiB) is not under the rest of the mount. Errors: as
/// [`fill_super`]'s.
#[inline(never)]
fn open_state(sb: &NewSuperBlock) -> Result<(Pin<KBox<SbInfo>>, bool, bool)> {
    let Ok(dev) = sb.set_block_size() else {
        pr_err!("vexfs ({}): device cannot use {}-byte blocks\n", sb.name(), BLOCK_SIZE);
        return Err(EINVAL);
    };
    let device_blocks = sb.device_bytes() / BLOCK_SIZE as u64;
    let read_super = || -> Result<Superblock> {
        let disk = {
            let b = Buf::read(dev, 0)?;
            Superblock::decode(b.data()).map_err(|e| dev.report(e))?
        };
        disk.validate(device_blocks).map_err(|e| dev.report(e))?;
        Ok(disk)
    };
    let rdonly = dev.is_rdonly();
    let before = read_super()?;
    // Mounted read-write when it stopped: a crash (or a stop without umount).
    let crashed = before.feature_incompat & FEATURE_INCOMPAT_RECOVER != 0;
    // A transaction may take a quarter of the log (txn.rs): the largest single step must fit.
    // Checked before the replay, so that a refused mount writes nothing.
    let (journal, need) = (before.region(Region::Journal).blocks, min_journal_blocks(&before));
    if !rdonly && journal < need {
        pr_err!(
            "vexfs ({}): journal too small for a read-write mount: {} blocks, the largest transaction step ({} blocks) needs {}; mount read-only, or make the filesystem with --journal-blocks {} or more\n",
            dev.name(),
            journal,
            worst_step_blocks(&before),
            need,
            need
        );
        return Err(EINVAL);
    }
    let log = crate::txn::recover(dev, &before)?;
    // The replay may have written the superblock's block: read it again, keeping the errors
    // bit an older image in the log may not have (as ext4 keeps its error fields).
    let mut disk = read_super()?;
    disk.state |= before.state & STATE_ERRORS;
    if disk.state & STATE_ERRORS != 0 {
        pr_warn!("vexfs ({}): mounting a filesystem with errors; run fsck.vexfs\n", dev.name());
    }
    let pins = PinTable::new(&disk)?;
    let index = IndexState::new(dev, &disk, &pins)?;
    let pads = PadPool::new(&index.mem)?;
    let jstate = JState::new(&disk, log, rdonly)?;
    let mount_c = MountC::new(dev)?;
    let info = SbInfo::new(disk, index, pads, pins, jstate, mount_c)?;
    Ok((info, crashed, rdonly))
}

/// At a read-write mount: frees every inode in use whose link count is 0 (an orphan: unlinked
/// while open, or not yet freed when the machine stopped; `fsck.vexfs` leaves them to this), as
/// its last close would have: its embeddings, blocks and number, each in a transaction of its
/// own. A scan of the inodes in use, O(inodes in use) per mount (there is no on-disk orphan
/// list yet). Errors: `EIO`, `EUCLEAN` (a corrupt inode, logged).
fn free_orphans(sb: &SuperBlock, crashed: bool) -> Result {
    let count = sb.disk().inode_count as u64;
    let mut freed = 0u64;
    for ino in (ROOT_INO as u64 + 1)..=count {
        let orphan = {
            let g = sb.lock();
            if !g.ino_in_use(ino)? {
                continue;
            }
            crate::inode::disk_inode(&g, ino)?.links == 0
        };
        if orphan {
            // The last reference dropped evicts it: vexfs_evict_inode frees everything.
            drop(crate::inode::iget(sb, ino)?);
            freed += 1;
        }
    }
    if freed > 0 {
        let when = if crashed { "after the crash" } else { "left by fsck" };
        pr_info!("vexfs ({}): {} unlinked inode(s) freed {}\n", sb.name(), freed, when);
    }
    Ok(())
}

/// Seconds between commits of the running transaction when nothing else commits it (ext4's
/// default `commit=` interval).
pub const COMMIT_SECONDS: u32 = 5;

/// Unmount (put_super, after the last inode is evicted): commits and checkpoints the journal,
/// marks it clean, releases the index cache's buffers and records a clean unmount. If the journal
/// cannot be shut down cleanly the superblock keeps `RECOVER`: the next mount replays it.
/// Errors are logged.
pub fn put_super(sb: &SuperBlock) {
    // The index worker first: its last changes go into the final commit. Vectors it did not
    // link stay pending on disk for the next mount.
    sb.info().mount_c.stop_index();
    sb.info().mount_c.stop_ticker();
    sb.info().mount_c.stop_shrinker();
    let r = sb.journal().shutdown(sb);
    // Inodes a commit did not get to flush (the journal aborted, or the last commit failed)
    // still hold the ordered list's references: dropped now, while the mount's state is whole
    // (an unlinked one is evicted, and its eviction asks the journal for a handle, refused).
    sb.info().mount_c.ordered_discard();
    crate::vector::release(sb);
    match r {
        Ok(()) => {
            if let Err(e) = sb.lock().write_super_direct(true) {
                pr_err!("vexfs ({}): writing the superblock at unmount failed: {:?}\n", sb.name(), e);
            }
        }
        Err(e) => {
            pr_err!("vexfs ({}): journal not shut down cleanly ({:?}): replayed at the next mount\n", sb.name(), e)
        }
    }
}
