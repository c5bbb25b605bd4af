//! Writing a new filesystem.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use vexfs_core::format::inode::{Inode, S_IFDIR};
use vexfs_core::format::journal::JournalSuper;
use vexfs_core::format::layout::{layout_quant, MkfsParams, Quant};
use vexfs_core::format::superblock::{Region, Superblock, FEATURE_INCOMPAT_DIR_INDEX, REGIONS, ROOT_INO};
use vexfs_core::format::{bit_set, BLOCK_SIZE, INODE_SIZE};
use vexfs_core::io::BlockDevice;

use crate::{Error, Result};

const BS: u64 = BLOCK_SIZE as u64;

/// A trained PQ codebook for a new filesystem (`vexfs_core::pq`).
#[derive(Debug, Clone, PartialEq)]
pub struct PqCodebook {
    /// Sub-quantisers (bytes per code); must cut the dimension (`vexfs_core::pq::valid_m`).
    pub m: u32,
    /// `m * 256 * (dim / m)` floats: centroid `c` of sub-quantiser `j` at
    /// `(j * 256 + c) * dsub` (`crate::pq_train::train`'s layout). Finite.
    pub centroids: std::sync::Arc<[f32]>,
}

/// What a new filesystem has beyond [`MkfsParams`] (the features mkfs may set).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FormatOpts {
    /// Set `FEATURE_INCOMPAT_DIR_INDEX`: a directory whose one block is full becomes indexed
    /// when an entry is added (`vexfs_core::dir_index`). Off by default: a kernel that does
    /// not handle indexed directories refuses such a filesystem.
    pub dir_index: bool,
    /// Keep SQ8 codes at this `sq8_shift` (`vexfs_core::sq8`): the incompat feature
    /// `FEATURE_INCOMPAT_SQ8` and the vector codes region. `None`: float vectors only.
    pub sq8_shift: Option<i32>,
    /// Keep PQ codes with this codebook: the incompat feature `FEATURE_INCOMPAT_PQ`, `pq_m`
    /// and the vector codes region (codebook, then codes). Not with `sq8_shift`.
    pub pq: Option<PqCodebook>,
    /// With `pq`: each vector and its level-0 record together in a node record (the incompat
    /// feature `FEATURE_INCOMPAT_NODE_RECORDS`, DiskANN's layout: expanding a node reads one
    /// block, which also gives its full-precision distance). Ignored without `pq`.
    pub node_records: bool,
}

/// The superblock [`format_with`] writes for `p` and `opts`: [`layout`]'s, with the features
/// of `opts` set, so that `vexfs_core::embed::min_journal_blocks` of it counts them (the
/// split of a directory bucket with `dir_index`). Errors: `Format` as [`layout`].
pub fn layout_with(p: &MkfsParams, opts: &FormatOpts) -> Result<Superblock> {
    let q = match (opts.sq8_shift, &opts.pq) {
        (Some(_), Some(_)) => return Err(Error::Invalid("SQ8 and PQ codes together".into())),
        (Some(s), None) => Quant::Sq8(s),
        (None, Some(c)) if opts.node_records => Quant::PqNodes(c.m),
        (None, Some(c)) => Quant::Pq(c.m),
        (None, None) => Quant::None,
    };
    let mut sb = layout_quant(p, q).map_err(Error::format("layout"))?;
    if opts.dir_index {
        sb.feature_incompat |= FEATURE_INCOMPAT_DIR_INDEX;
    }
    Ok(sb)
}

/// [`format_with`] with the default [`FormatOpts`] (no optional feature).
///
/// Errors: as [`format_with`].
pub fn format<D: BlockDevice<Error = io::Error>>(dev: &mut D, p: &MkfsParams, zeroed: bool) -> Result<Superblock> {
    format_with(dev, p, zeroed, FormatOpts::default())
}

/// Lays out and writes a new filesystem of `p.block_count` blocks on `dev` with the features
/// of `opts` ([`layout_with`]), returning its superblock.
///
/// Writes only metadata: the primary and backup superblocks, the journal superblock, the
/// bitmaps, the inode table (with the root directory, inode 1, empty), and zeros over the rest
/// of the journal and the vector regions. The data region is not touched. When `zeroed`, the
/// device is known to read as zeros (a freshly truncated image file) and only the non-zero
/// blocks are written, which keeps a sparse image sparse.
///
/// The journal is what `p` says: this does not hold it to
/// `vexfs_core::embed::min_journal_blocks` (the kernel's floor for a read-write mount);
/// `mkfs.vexfs` does, with the features counted.
///
/// Errors: `Format` from [`layout`] when the parameters cannot work on this many blocks,
/// `Invalid` when the device is smaller than `p.block_count`, `Io`.
pub fn format_with<D: BlockDevice<Error = io::Error>>(
    dev: &mut D,
    p: &MkfsParams,
    zeroed: bool,
    opts: FormatOpts,
) -> Result<Superblock> {
    if p.block_count > dev.block_count() {
        return Err(Error::Invalid(format!(
            "the filesystem needs {} blocks but the device has only {}",
            p.block_count,
            dev.block_count()
        )));
    }
    let mut sb = layout_with(p, &opts)?;
    let zero = [0u8; BLOCK_SIZE];
    let write = |dev: &mut D, n: u64, b: &[u8; BLOCK_SIZE]| {
        dev.write_block(n, b).map_err(Error::io(format!("writing block {n}")))
    };

    // Invalidate an old primary superblock first, zero every metadata region, then write
    // the non-zero blocks over it.
    if !zeroed {
        write(dev, 0, &zero)?;
        for r in REGIONS {
            let e = sb.region(r);
            if r != Region::Data {
                for n in e.start..e.end() {
                    write(dev, n, &zero)?;
                }
            }
        }
    }

    let journal = sb.region(Region::Journal);
    let mut b = [0u8; BLOCK_SIZE];
    JournalSuper::new(sb.uuid).encode(&mut b, journal.start);
    write(dev, journal.start, &b)?;

    // Block bitmap: the superblock and every metadata region (0 .. data.start) and the backup.
    let meta_end = sb.region(Region::Data).start;
    let bitmap = sb.region(Region::BlockBitmap);
    let bits_per_block = BS * 8;
    for i in 0..bitmap.blocks {
        let first = i * bits_per_block;
        let mut b = [0u8; BLOCK_SIZE];
        for bit in first..(first + bits_per_block).min(meta_end) {
            bit_set(&mut b, (bit - first) as usize, true);
        }
        if (first..first + bits_per_block).contains(&sb.backup_block) {
            bit_set(&mut b, (sb.backup_block - first) as usize, true);
        }
        if !zeroed || b != zero {
            write(dev, bitmap.start + i, &b)?;
        }
    }

    // Inode bitmap and table: the root directory only.
    let mut b = [0u8; BLOCK_SIZE];
    bit_set(&mut b, (ROOT_INO - 1) as usize, true);
    write(dev, sb.region(Region::InodeBitmap).start, &b)?;
    let (blk, off) = sb.inode_pos(ROOT_INO as u64).ok_or_else(|| Error::Invalid("no root inode slot".into()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let nsec = if now.as_secs() == p.now { now.subsec_nanos() } else { 0 };
    let t = p.now as i64;
    let root = Inode {
        mode: S_IFDIR | 0o755,
        links: 2,
        parent: ROOT_INO,
        atime_sec: t,
        mtime_sec: t,
        ctime_sec: t,
        atime_nsec: nsec,
        mtime_nsec: nsec,
        ctime_nsec: nsec,
        ..Inode::default()
    };
    let mut b = [0u8; BLOCK_SIZE];
    root.encode(ROOT_INO as u64, &mut b[off..off + INODE_SIZE]);
    write(dev, blk, &b)?;

    if let Some(c) = &opts.pq {
        write_codebook(dev, &sb, &c.centroids)?;
    }

    sb.free_blocks = sb.block_count - (meta_end + 1);
    sb.free_inodes = sb.inode_count - 1;
    let mut b = [0u8; BLOCK_SIZE];
    sb.encode(&mut b);
    write(dev, sb.backup_block, &b)?;
    dev.flush().map_err(Error::io("flushing the device"))?;
    // The primary last: a crash before this leaves no valid filesystem behind.
    write(dev, 0, &b)?;
    dev.flush().map_err(Error::io("flushing the device"))?;
    Ok(sb)
}

/// Writes the PQ codebook `centroids` (`m * 256 * dsub` floats, [`PqCodebook::centroids`]'s
/// layout) into `sb`'s vector codes region, as `vexfs_core::pq` lays it out (whole blocks, the
/// rest of each zero). Errors: `Invalid` without PQ, for a codebook of the wrong length or with
/// a NaN or an infinity; `Io`.
pub fn write_codebook<D: BlockDevice<Error = io::Error>>(
    dev: &mut D,
    sb: &Superblock,
    centroids: &[f32],
) -> Result<()> {
    let g =
        vexfs_core::pq::PqGeometry::new(sb).ok_or_else(|| Error::Invalid("no PQ codebook in this layout".into()))?;
    let dsub = g.dsub as usize;
    if centroids.len() != g.m as usize * 256 * dsub {
        return Err(Error::Invalid(format!(
            "PQ codebook of {} floats, {} expected (m {}, dsub {dsub})",
            centroids.len(),
            g.m as usize * 256 * dsub,
            g.m
        )));
    }
    if centroids.iter().any(|x| !x.is_finite()) {
        return Err(Error::Invalid("PQ codebook with a NaN or an infinity".into()));
    }
    for j in 0..g.m {
        for blk_i in 0..g.blocks_per_sub {
            let mut b = [0u8; BLOCK_SIZE];
            let mut blk = None;
            for k in 0..g.per_block {
                let c = blk_i * g.per_block + k;
                if c >= 256 {
                    break;
                }
                let (n, off) =
                    g.centroid_pos(j, c as u32).ok_or_else(|| Error::Invalid("PQ centroid position".into()))?;
                blk = Some(n);
                let first = (j as usize * 256 + c as usize) * dsub;
                for (t, x) in centroids[first..first + dsub].iter().enumerate() {
                    b[off + 4 * t..off + 4 * t + 4].copy_from_slice(&x.to_le_bytes());
                }
            }
            if let Some(n) = blk {
                dev.write_block(n, &b).map_err(Error::io(format!("writing block {n}")))?;
            }
        }
    }
    Ok(())
}
