//! Makes the frozen image of on-disk format v2 and its manifest: `tests/images/v2.img.gz` and
//! `tests/images/v2.manifest` (see `tests/images/README.md`).
//!
//! ```sh
//! cargo run --release -p vexfs-image --example make_frozen_image_v2 -- tests/images
//! ```
//!
//! This program documents how the committed image was made; it is not part of any test (the
//! tests read the committed bytes). v1's generator (`make_frozen_image.rs`) is left as the
//! record of how v1 was made.
//!
//! What v2 added, and where this image holds it:
//!
//! - a written journal: the image is a filesystem that crashed right after its last commit.
//!   Its home blocks hold state 1 (checkpointed, clean log); the journal holds two committed
//!   transactions that are not checkpointed (state 1 -> 2 -> 3), the journal superblock says
//!   "not clean" and the primary superblock has `RECOVER` set, as the offline writer leaves
//!   them while a session is open. Replay must give state 3, which the manifest describes.
//!   Some blocks are in both transactions with different contents (log order matters) and
//!   the log wraps from its last record block to its first;
//! - pending vectors (the vector write-ahead log): embeddings set with
//!   `Indexing::Deferred`, some in the home state, some in the journal, one replaced while
//!   pending (its slot freed at once, no tombstone);
//! - an orphan: an inode in use with no link (a file unlinked while open when the crash came),
//!   which the next read-write mount frees.
//!
//! How the transactions are made: the writer (`Writer`) makes states 2 and 3 on copies of the
//! image, then their timestamps are fixed (the writer stamps the current time, and the image
//! must come out the same on every run). The blocks that differ between consecutive states are
//! then committed to the journal of state 1 with the core's `journal::write_transaction`, as
//! the writer's sync does, without the home writes and the checkpoint that follow it: file
//! data blocks are written home first (ordered mode), everything else is logged. The writer has
//! no unlink, so the orphan is made by hand in state 3: a file created by the writer whose
//! directory entry is taken back out (its directory block and inode restored from state 2) and
//! whose link count is set to 0; its inode, bitmap bits and data blocks stay in use.
//!
//! Everything else as v1: dimension 8, l2, HNSW m 4 / ef_construction 32, fixed UUID, label,
//! times and level seed, vector components multiples of 1/4 in -2..=2 (every distance exact on
//! any CPU), and queries without ties.

#[path = "frozen_common/mod.rs"]
mod common;

use common::{decimals, hex_words, inode_fields, l2, sha256_hex, walk, Res, Vecs, DIM, EF};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use vexfs_core::embed::{min_journal_blocks, Indexing};
use vexfs_core::format::inode::{Inode, S_IFLNK, S_IFMT};
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{Metric, Region, FEATURE_INCOMPAT_RECOVER, ROOT_INO, STATE_CLEAN};
use vexfs_core::format::vector::{HnswGeometry, Level0Head, NODE_PENDING};
use vexfs_core::format::{bit_test, BLOCK_SIZE};
use vexfs_core::io::{Block, BlockDevice};
use vexfs_core::journal::{self, SCRATCH_BYTES};
use vexfs_image::fsck::{self, Mode};
use vexfs_image::vectors::{file_paths, Hit, MapDevice, Searcher};
use vexfs_image::writer::{FileOpts, Writer};
use vexfs_image::{mkfs, Image, MemDevice};

/// 4 MiB.
const BLOCKS: u64 = 1024;
/// Base of the timestamps: in phase `p`, inode `i` gets mtime `T0 + 3600 i + PHASE p`
/// (atime +2 s, ctime +1 s).
const T0: i64 = 1_750_000_000;
const PHASE: i64 = 10_000_000;
/// Journal blocks (superblock included): chosen so that the second transaction wraps from the
/// last record block to the first (checked below).
const JOURNAL_BLOCKS: u64 = 91;
/// Block images per transaction of state 1's history ([`with_history`]).
const HISTORY_IMAGES: usize = 1;

fn params() -> MkfsParams {
    let mut label = [0u8; 32];
    label[..15].copy_from_slice(b"vexfs-frozen-v2");
    MkfsParams {
        block_count: BLOCKS,
        inode_count: Some(64),
        journal_blocks: Some(JOURNAL_BLOCKS),
        vec_capacity: Some(64),
        dim: DIM as u32,
        metric: Metric::L2,
        m: 4,
        ef_construction: 32,
        uuid: *b"vexfs-frozen-v2!",
        label,
        now: T0 as u64,
        seed: 20_261_221,
    }
}

/// Deterministic bytes with no zero block (so no accidental holes).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add((i >> 8) as u8) | 1).collect()
}

/// A long name of exactly `len` bytes starting with `prefix`.
fn long_name(prefix: &str, len: usize) -> String {
    let mut s = prefix.to_string();
    while s.len() < len {
        s.push(char::from(b'a' + (s.len() % 26) as u8));
    }
    s
}

/// Inodes in use (the inode bitmap: bit `i` is inode `i + 1`).
fn inodes_in_use(img: &Image<MemDevice>) -> Res<Vec<u32>> {
    let bits = img.read_region(Region::InodeBitmap)?;
    Ok((0..img.sb().inode_count as usize).filter(|&i| bit_test(&bits, i)).map(|i| i as u32 + 1).collect())
}

/// Device blocks holding regular files' data (not extent blocks).
fn file_data_blocks(img: &Image<MemDevice>) -> Res<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    for ino in inodes_in_use(img)? {
        let i = img.inode(ino)?;
        if i.is_reg() {
            for e in img.extents(ino, &i)? {
                out.extend(e.start..e.start + e.len as u64);
            }
        }
    }
    Ok(out)
}

/// An image of `bytes` (a copy).
fn open(bytes: &[u8]) -> Res<Image<MemDevice>> {
    Ok(Image::open(MemDevice { bytes: bytes.to_vec() })?)
}

/// Fixes the times the writer stamped: every inode in use that differs from `prev` (or is new)
/// gets the times of `phase`, the others keep `prev`'s; owners from `owners`; the superblock's
/// write time too. Returns the bytes.
fn fix_times(
    bytes: Vec<u8>,
    prev: Option<&Image<MemDevice>>,
    phase: i64,
    owners: &HashMap<u32, (u32, u32)>,
) -> Res<Vec<u8>> {
    let mut img = Image::open(MemDevice { bytes })?;
    for ino in inodes_in_use(&img)? {
        let mut i: Inode = img.inode(ino)?;
        if let Some(&(uid, gid)) = owners.get(&ino) {
            (i.uid, i.gid) = (uid, gid);
        }
        let old = match prev {
            Some(p) if inodes_in_use(p)?.contains(&ino) => Some(p.inode(ino)?),
            _ => None,
        };
        match old {
            Some(o) if o == i => {}
            Some(o) if o.mtime_sec == i.mtime_sec && o.ctime_sec == i.ctime_sec => {
                // Only an owner changed, or a field the writer changes without stamping.
                (i.mtime_sec, i.mtime_nsec, i.ctime_sec, i.ctime_nsec) =
                    (o.mtime_sec, o.mtime_nsec, o.ctime_sec, o.ctime_nsec);
                (i.atime_sec, i.atime_nsec) = (o.atime_sec, o.atime_nsec);
            }
            _ => {
                let t = T0 + 3600 * ino as i64 + PHASE * phase;
                let ns = 1_000_000 * ino + 100 * phase as u32 + 7;
                (i.mtime_sec, i.mtime_nsec) = (t, ns);
                (i.ctime_sec, i.ctime_nsec) = (t + 1, ns + 1);
                (i.atime_sec, i.atime_nsec) = (t + 2, ns + 2);
            }
        }
        img.write_inode(ino, &i)?;
    }
    let mut sb = img.sb().clone();
    sb.write_time = (T0 + PHASE * phase + 5) as u64;
    let mut b = [0u8; BLOCK_SIZE];
    sb.encode(&mut b);
    img.write_block(0, &b)?;
    Ok(img.into_device().bytes)
}

fn block(bytes: &[u8], n: u64) -> &Block {
    let o = n as usize * BLOCK_SIZE;
    bytes[o..o + BLOCK_SIZE].try_into().expect("a block")
}

/// `target` written on a freshly formatted device through the journal, as the writer's syncs
/// write it: file data home, then the metadata in transactions of [`HISTORY_IMAGES`] block
/// images, each written home and checkpointed; then the superblocks. The journal region holds
/// those transactions' records (stale once checkpointed: a replay must not take them) and the
/// log's head moves on past them. (The writer's own syncs would leave records with the current
/// time in their inode blocks: this makes the same kind of history, the same on every run.)
fn with_history(target: &[u8]) -> Res<Vec<u8>> {
    let mut dev = MemDevice::new(BLOCKS);
    mkfs::format(&mut dev, &params(), false)?;
    let sb = Image::open(dev.clone())?.sb().clone();
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    let (mut log, _) = journal::recover(&mut dev, &sb, &mut scratch).map_err(|e| format!("{e:?}"))?;
    let img = open(target)?;
    let data = file_data_blocks(&img)?;
    let jr = sb.region(Region::Journal);
    let mut meta = Vec::new();
    for n in 1..sb.block_count - 1 {
        if jr.contains(n) || block(&dev.bytes, n) == block(target, n) {
            continue;
        }
        if data.contains(&n) {
            dev.write_block(n, block(target, n))?;
        } else {
            meta.push(n);
        }
    }
    for part in meta.chunks(HISTORY_IMAGES) {
        journal::write_superblock(&mut dev, &log, false).map_err(|e| format!("{e:?}"))?;
        let images: Vec<(u64, &Block)> = part.iter().map(|&n| (n, block(target, n))).collect();
        journal::write_transaction(&mut dev, &mut log, &images).map_err(|e| format!("{e:?}"))?;
        for &n in part {
            dev.write_block(n, block(target, n))?;
        }
        journal::checkpoint(&mut dev, &mut log, true).map_err(|e| format!("{e:?}"))?;
    }
    for n in [0, sb.block_count - 1] {
        dev.write_block(n, block(target, n))?;
    }
    Ok(dev.bytes)
}

/// What one transaction of the crash holds.
struct TxnMade {
    data: usize,
    images: usize,
}

/// Commits the change `from` -> `to` to the journal of `dev` as the writer's sync does: the
/// file data blocks written home, the other changed blocks (not the superblocks, never the
/// journal) logged as one transaction, durable. Their home writes and the checkpoint are not
/// done: the crash.
fn commit_change(dev: &mut MemDevice, log: &mut journal::Log, from: &[u8], to: &[u8]) -> Res<TxnMade> {
    let img = open(to)?;
    let sb = img.sb().clone();
    let data = file_data_blocks(&img)?;
    let old = open(from)?;
    let old_used = file_data_blocks(&old)?;
    let jr = sb.region(Region::Journal);
    let mut images = Vec::new();
    let mut homes = 0;
    for n in 1..sb.block_count - 1 {
        if jr.contains(n) || block(from, n) == block(to, n) {
            continue;
        }
        if data.contains(&n) {
            if old_used.contains(&n) || !old.read_region(Region::BlockBitmap).map(|b| !bit_test(&b, n as usize))? {
                return Err(format!("file data block {n} is in use before the transaction that writes it").into());
            }
            dev.write_block(n, block(to, n))?;
            homes += 1;
        } else {
            images.push((n, block(to, n)));
        }
    }
    journal::write_transaction(dev, log, &images).map_err(|e| format!("journal: {e:?}"))?;
    Ok(TxnMade { data: homes, images: images.len() })
}

fn main() -> Res<()> {
    let out_dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: make_frozen_image_v2 OUT_DIR")?);
    let mut dev = MemDevice::new(BLOCKS);
    mkfs::format(&mut dev, &params(), false)?;
    let min = min_journal_blocks(Image::open(dev.clone())?.sb());
    if JOURNAL_BLOCKS < min {
        return Err(format!("the journal needs at least {min} blocks for a read-write mount").into());
    }

    // ---- state 1 (home, checkpointed): v1's tree and vectors, plus pending vectors ----------
    let mut w = Writer::new(Image::open(dev)?)?;
    let r = ROOT_INO;
    let mut content: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut file = |w: &mut Writer<MemDevice>, parent: u32, name: &str, data: Vec<u8>, opts: FileOpts| -> Res<u32> {
        let ino = w.create_with(parent, name, &data, opts)?;
        content.insert(ino, data);
        Ok(ino)
    };
    let mode = |m: u16| FileOpts { mode: m, ..FileOpts::default() };

    let hello = file(&mut w, r, "hello.txt", b"hello, frozen vexfs v2\n".to_vec(), mode(0o644))?;
    let empty = file(&mut w, r, "empty", Vec::new(), mode(0o600))?;
    let docs = w.mkdir(r, "docs", 0o755)?;
    file(&mut w, docs, "big.bin", pattern(3 * BLOCK_SIZE + 123, 1), mode(0o444))?;
    file(
        &mut w,
        docs,
        "frag.bin",
        pattern(8 * BLOCK_SIZE, 2),
        FileOpts { mode: 0o640, max_extent_blocks: 1, ..FileOpts::default() },
    )?;
    let mut sparse = pattern(5 * BLOCK_SIZE + 700, 3);
    sparse[BLOCK_SIZE..3 * BLOCK_SIZE].fill(0);
    sparse[5 * BLOCK_SIZE..].fill(0);
    file(&mut w, docs, "sparse.bin", sparse, mode(0o644))?;
    let nested = w.mkdir(docs, "nested", 0o750)?;
    let deeper = w.mkdir(nested, "deeper", 0o755)?;
    let deepest = w.mkdir(deeper, "deepest", 0o711)?;
    let leaf = file(&mut w, deepest, "leaf.txt", b"a leaf, three directories down\n".to_vec(), mode(0o664))?;
    w.mkdir(nested, "empty-dir", 0o700)?;
    w.symlink(r, "link", "docs/big.bin")?;
    w.symlink(docs, "dangling", "../no/such/target")?;
    w.link(r, "hard", hello)?;
    let wide = w.mkdir(r, "wide", 0o755)?;
    for i in 0..20 {
        w.link(wide, &long_name(&format!("entry-{i:02}-"), 255), empty)?;
    }
    let attic = w.mkdir(r, "attic", 0o755)?;
    file(&mut w, attic, "keep.txt", b"the attic's only name; an unlinked file was here\n".to_vec(), mode(0o644))?;
    let vec = w.mkdir(r, "vec", 0o755)?;
    let one = file(&mut w, vec, "one.txt", b"one chunk\n".to_vec(), mode(0o4755))?;
    let gone = file(&mut w, vec, "gone.txt", b"its embeddings were removed\n".to_vec(), mode(0o644))?;
    let three = file(&mut w, vec, "three.txt", b"three chunks, the middle one replaced\n".to_vec(), mode(0o644))?;
    let seven = file(
        &mut w,
        vec,
        "seven.txt",
        pattern(BLOCK_SIZE + 1, 4),
        FileOpts { mode: 0o2755, max_extent_blocks: 1, ..FileOpts::default() },
    )?;
    w.link(vec, "seven-alias", seven)?;
    let wal = w.mkdir(r, "wal", 0o755)?;
    let p1 =
        file(&mut w, wal, "p1.txt", b"two chunks, pending; chunk 1 replaced while pending\n".to_vec(), mode(0o644))?;
    let p2 = file(&mut w, wal, "p2.txt", b"one chunk, pending\n".to_vec(), mode(0o600))?;

    let mut g = Vecs(0x5eed_0003);
    let v_one = g.take(1);
    let v_gone = g.take(2);
    let v_three = g.take(3);
    let v_seven = g.take(7);
    let v_leaf = g.take(1);
    let v_replace = g.take(1);
    let v_p1 = g.take(2);
    let v_p2 = g.take(1);
    w.set_embeddings(one, &v_one)?;
    w.set_embeddings(gone, &v_gone)?;
    w.set_embeddings(three, &v_three)?;
    w.set_embeddings(seven, &v_seven)?;
    w.set_embeddings(leaf, &v_leaf)?;
    let tomb_three = w.image().vec_slots(three, &w.image().inode(three)?)?[1];
    w.set_chunks(three, 1, &v_replace, false)?;
    let tomb_gone = w.image().vec_slots(gone, &w.image().inode(gone)?)?;
    w.remove_embeddings(gone)?;
    w.set_indexing(Indexing::Deferred);
    w.set_embeddings(p1, &v_p1)?;
    w.set_embeddings(p2, &v_p2)?;
    let h1 = w.vector_header()?;
    if (h1.live, h1.deleted, h1.pending) != (12, 3, 3) {
        return Err(format!("state 1: expected 12 live, 3 tombstones, 3 pending; the header says {h1:?}").into());
    }
    let owners: HashMap<u32, (u32, u32)> =
        HashMap::from([(one, (1000, 1000)), (seven, (1234, 5678)), (hello, (0, 100)), (docs, (1000, 100))]);
    let s1 = with_history(&fix_times(w.commit()?.into_device().bytes, None, 0, &owners)?)?;

    // ---- state 2 (transaction 1): more files, pending vectors, a pending one replaced -------
    let mut w = Writer::new(open(&s1)?)?;
    w.set_indexing(Indexing::Deferred);
    let more = w.mkdir(wal, "more", 0o750)?;
    let p3 = file(&mut w, more, "p3.txt", pattern(2 * BLOCK_SIZE + 9, 5), mode(0o644))?;
    w.link(wal, "p3-alias", p3)?;
    w.symlink(wal, "to-p3", "more/p3.txt")?;
    let v_p3 = g.take(3);
    let v_p1_new = g.take(1);
    w.set_embeddings(p3, &v_p3)?;
    let replaced_pending = w.image().vec_slots(p1, &w.image().inode(p1)?)?[1];
    w.set_chunks(p1, 1, &v_p1_new, false)?;
    let linked =
        file(&mut w, wal, "linked.txt", b"set with the index-now flag, in the journal\n".to_vec(), mode(0o644))?;
    let v_linked = g.take(1);
    w.set_indexing(Indexing::Now);
    w.set_embeddings(linked, &v_linked)?;
    let s1_img = open(&s1)?;
    let s2 = fix_times(w.commit()?.into_device().bytes, Some(&s1_img), 1, &owners)?;

    // ---- state 3 (transaction 2): a pending vector on an old file, an orphan --------------
    let mut w = Writer::new(open(&s2)?)?;
    w.set_indexing(Indexing::Deferred);
    let v_hello = g.take(1);
    w.set_embeddings(hello, &v_hello)?;
    let orphan_data = pattern(2 * BLOCK_SIZE + 300, 6);
    let orphan = w.create_with(attic, "unlinked-while-open.bin", &orphan_data, mode(0o640))?;
    let mut img3 = w.commit()?;
    // Unlink it by hand (the writer has no unlink): the attic's directory block(s) and inode as
    // state 2 had them, the orphan's link count 0.
    let s2_img = open(&s2)?;
    let attic_before = s2_img.inode(attic)?;
    for (_, blk) in s2_img.dir_blocks(attic, &attic_before)? {
        img3.write_block(blk, block(&s2, blk))?;
    }
    if img3.inode(attic)?.size != attic_before.size {
        return Err("the orphan's directory grew: its entry cannot be taken out by a block copy".into());
    }
    let mut attic_now = attic_before.clone();
    (attic_now.mtime_sec, attic_now.mtime_nsec) = (0, 0); // stamped as changed in phase 2 below
    img3.write_inode(attic, &attic_now)?;
    let mut oi = img3.inode(orphan)?;
    oi.links = 0;
    img3.write_inode(orphan, &oi)?;
    let s3 = fix_times(img3.into_device().bytes, Some(&s2_img), 2, &owners)?;

    // ---- the crash: state 1 at home, transactions 1 and 2 committed in the journal --------
    let mut dev = MemDevice { bytes: s1.clone() };
    let sb1 = s1_img.sb().clone();
    // Opening the session: RECOVER set, state not clean, flushed before the journal is written.
    let mut sb = sb1.clone();
    sb.feature_incompat |= FEATURE_INCOMPAT_RECOVER;
    sb.state &= !STATE_CLEAN;
    let mut b = [0u8; BLOCK_SIZE];
    sb.encode(&mut b);
    dev.write_block(0, &b)?;
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    let (mut log, rec) = journal::recover(&mut dev, &sb1, &mut scratch).map_err(|e| format!("{e:?}"))?;
    if !rec.scan.clean {
        return Err("state 1 should have a clean journal".into());
    }
    let (head, first_lsn) = (log.head, log.next_lsn);
    journal::write_superblock(&mut dev, &log, false).map_err(|e| format!("{e:?}"))?;
    let t1 = commit_change(&mut dev, &mut log, &s1, &s2)?;
    let t1_end = log.next;
    let t2 = commit_change(&mut dev, &mut log, &s2, &s3)?;
    if log.next >= t1_end {
        return Err(format!(
            "transaction 2 ({}..{}) does not wrap around the log's end ({} record blocks): change JOURNAL_BLOCKS",
            t1_end, log.next, log.blocks
        )
        .into());
    }
    let raw = dev.bytes;
    eprintln!(
        "journal: head {head}, first LSN {first_lsn}; transaction 1: {} images + {} data blocks, ends at {t1_end}; \
         transaction 2: {} images + {} data blocks, ends at {} of {}",
        t1.images, t1.data, t2.images, t2.data, log.next, log.blocks
    );

    // ---- checks: the crashed image replays to state 3 --------------------------------------
    let img0 = open(&raw)?;
    let info = vexfs_image::journal::read_log(img0.device(), img0.sb())?;
    if info.clean() || info.transactions_to_replay() != 2 || info.version != Some(2) {
        return Err(format!("the crashed journal: {info:?}").into());
    }
    let mut replayed = MemDevice { bytes: raw.clone() };
    let (_, rec) = journal::recover(&mut replayed, img0.sb(), &mut scratch).map_err(|e| format!("{e:?}"))?;
    let jr = sb1.region(Region::Journal);
    for n in 1..BLOCKS - 1 {
        if !jr.contains(n) && block(&replayed.bytes, n) != block(&s3, n) {
            return Err(format!("block {n} differs between the replay and state 3").into());
        }
    }
    let (out, _) = fsck::run(MemDevice { bytes: raw.clone() }, Mode::Check)?;
    if !out.report.problems.is_empty() {
        return Err(format!("fsck -n of the crashed image: {:?}", out.report.problems).into());
    }
    let img = Image::open(replayed.clone())?;
    let paths = walk(&img)?;
    let reached: BTreeSet<u32> = paths.values().copied().collect();
    let in_use = inodes_in_use(&img)?;
    let orphans: Vec<u32> = in_use.iter().copied().filter(|i| !reached.contains(i)).collect();
    if orphans != [orphan] || img.inode(orphan)?.links != 0 {
        return Err(format!("expected the one orphan {orphan}, found {orphans:?}").into());
    }
    content.insert(orphan, orphan_data);

    // The vectors after replay, by (inode, chunk), and which slots are pending.
    let chunks: HashMap<u32, Vec<Vec<f32>>> = HashMap::from([
        (one, v_one.clone()),
        (three, vec![v_three[0].clone(), v_replace[0].clone(), v_three[2].clone()]),
        (seven, v_seven.clone()),
        (leaf, v_leaf.clone()),
        (p1, vec![v_p1[0].clone(), v_p1_new[0].clone()]),
        (p2, v_p2.clone()),
        (p3, v_p3.clone()),
        (linked, v_linked.clone()),
        (hello, v_hello.clone()),
    ]);
    let mut live: Vec<(u32, u32, Vec<f32>)> = Vec::new();
    for (&ino, vs) in &chunks {
        for (c, v) in vs.iter().enumerate() {
            live.push((ino, c as u32, v.clone()));
        }
    }
    live.sort_by_key(|x| (x.0, x.1));
    let geo = HnswGeometry::new(img.sb());
    let flags = |slot: u32| -> Res<u8> {
        let (blk, off) = geo.level0_pos(slot);
        Ok(Level0Head::decode(&img.read_block(blk)?[off..]).map_err(|e| format!("{e:?}"))?.flags)
    };
    let mut pending = Vec::new();
    for &ino in &in_use {
        let i = img.inode(ino)?;
        if i.is_reg() {
            for s in img.vec_slots(ino, &i)? {
                if flags(s)? & NODE_PENDING != 0 {
                    pending.push(s);
                }
            }
        }
    }
    pending.sort_unstable();
    if flags(replaced_pending)? != 0 && !pending.contains(&replaced_pending) {
        return Err(format!("the replaced pending slot {replaced_pending} should be free or reused").into());
    }
    let mut tombstones = vec![(tomb_three, three, 1u32, v_three[1].clone())];
    for (c, (&s, v)) in tomb_gone.iter().zip(&v_gone).enumerate() {
        tombstones.push((s, gone, c as u32, v.clone()));
    }

    // Queries: a removed vector, a live one in the graph, a pending one (found by the exact
    // scan, distance 0 first), the pending vector that was replaced (must not come back), and
    // two others; one with k = every vector, in order.
    let mut qg = Vecs(0x9e37_79b9);
    let queries: Vec<(Vec<f32>, usize)> = vec![
        (v_gone[0].clone(), 5),
        (v_seven[5].clone(), 3),
        (v_p3[1].clone(), 4),
        (v_p1[1].clone(), 3),
        (qg.next(), live.len()),
        (qg.next(), 6),
    ];
    let mut writer = Writer::new(Image::open(replayed.clone())?)?;
    let h = writer.vector_header()?;
    if (h.live as usize + h.pending as usize, h.pending as usize) != (live.len(), pending.len()) || h.deleted != 3 {
        return Err(format!("after replay: header {h:?}, {} vectors, {} pending", live.len(), pending.len()).into());
    }
    let mut searcher = Searcher::new(Image::open(MapDevice::from_bytes(&replayed.bytes)?)?, EF)?;
    let mut results: Vec<Vec<Hit>> = Vec::new();
    for (qi, (q, k)) in queries.iter().enumerate() {
        let mut truth: Vec<(u32, u32, u32)> = live.iter().map(|(i, c, v)| (l2(q, v).to_bits(), *i, *c)).collect();
        truth.sort();
        // No tie among the answers and the first vector after them.
        if truth[..(*k + 1).min(truth.len())].windows(2).any(|p| p[0].0 == p[1].0) {
            return Err(format!("query {qi} has tied distances: choose other vector seeds").into());
        }
        let hits = writer.search(q, *k, EF)?;
        let got: Vec<(u32, u32, u32)> = hits.iter().map(|h| (h.distance().to_bits(), h.ino as u32, h.chunk)).collect();
        if got[..] != truth[..*k] {
            return Err(format!("query {qi}: the index answered {got:?}, brute force {truth:?}").into());
        }
        let again: Vec<(u32, u32, u32)> =
            searcher.search(q, *k, EF)?.iter().map(|h| (h.distance().to_bits(), h.ino as u32, h.chunk)).collect();
        if again != got {
            return Err(format!("query {qi}: the searcher answered {again:?}, the writer {got:?}").into());
        }
        if !got.iter().any(|x| pending_of(&img, x.1, x.2, &pending)) && qi == 2 {
            return Err("query 2 should find a pending vector".into());
        }
        results.push(hits);
    }
    // Once linked (as the kernel's worker does), the same exact answers.
    writer.index_pending(usize::MAX)?;
    for (qi, ((q, k), want)) in queries.iter().zip(&results).enumerate() {
        let got: Vec<(u32, u64, u32)> =
            writer.search(q, *k, EF)?.iter().map(|h| (h.distance().to_bits(), h.ino, h.chunk)).collect();
        let want: Vec<(u32, u64, u32)> = want.iter().map(|h| (h.distance().to_bits(), h.ino, h.chunk)).collect();
        if got != want {
            return Err(format!("query {qi} after linking the pending vectors: {got:?}, before {want:?}").into());
        }
    }
    let hit_paths = file_paths(&img)?;

    // ---- the manifest ---------------------------------------------------------------------
    let sb = img.sb();
    let js = info.superblock.as_ref().map_err(|e| format!("{e:?}"))?;
    let mut m = String::new();
    m.push_str(MANIFEST_HEAD);
    writeln!(m, "image {} {}", raw.len(), sha256_hex(&raw))?;
    writeln!(m, "journal version {}", info.version.unwrap_or(0))?;
    writeln!(m, "journal clean {}", u8::from(info.clean()))?;
    writeln!(m, "journal head {}", js.head)?;
    writeln!(m, "journal checkpoint_lsn {}", js.checkpoint_lsn)?;
    writeln!(m, "journal transactions {}", info.transactions_to_replay())?;
    writeln!(m, "journal images {}", info.images_to_replay())?;
    for (n, t) in info.transactions.iter().enumerate() {
        writeln!(m, "txn {} {} {} {} {}", n + 1, t.first_lsn, t.commit_lsn, t.images, t.commit_block)?;
    }
    writeln!(m, "sb format_version {}", sb.format_version)?;
    writeln!(m, "sb feature_incompat {}", sb.feature_incompat)?;
    writeln!(m, "sb state {}", sb.state)?;
    writeln!(m, "sb uuid {}", sb.uuid.iter().map(|b| format!("{b:02x}")).collect::<String>())?;
    writeln!(m, "sb label {}", sb.label_str())?;
    writeln!(m, "sb block_count {}", sb.block_count)?;
    writeln!(m, "sb inode_count {}", sb.inode_count)?;
    writeln!(m, "sb free_blocks {}", sb.free_blocks)?;
    writeln!(m, "sb free_inodes {}", sb.free_inodes)?;
    writeln!(m, "sb mkfs_time {}", sb.mkfs_time)?;
    writeln!(m, "sb write_time {}", sb.write_time)?;
    writeln!(m, "sb journal_blocks {}", sb.region(Region::Journal).blocks)?;
    writeln!(m, "sb dim {}", sb.vec_dim)?;
    writeln!(m, "sb metric l2")?;
    writeln!(m, "sb vec_capacity {}", sb.vec_capacity)?;
    writeln!(m, "sb vec_stride {}", sb.vec_stride)?;
    writeln!(m, "sb hnsw_m {}", sb.hnsw_m)?;
    writeln!(m, "sb hnsw_ef_construction {}", sb.hnsw_ef_construction)?;
    writeln!(m, "sb hnsw_max_level {}", sb.hnsw_max_level)?;
    writeln!(m, "sb hnsw_seed {}", sb.hnsw_seed)?;
    writeln!(m, "hnsw entry {}", h.entry)?;
    writeln!(m, "hnsw entry_level {}", h.entry_level)?;
    writeln!(m, "hnsw live {}", h.live)?;
    writeln!(m, "hnsw deleted {}", h.deleted)?;
    writeln!(m, "hnsw pending {}", h.pending)?;
    for &ino in &in_use {
        writeln!(m, "inode {ino} {}", inode_fields(&img.inode(ino)?))?;
    }
    for o in &orphans {
        writeln!(m, "orphan {o}")?;
    }
    for (p, ino) in &paths {
        writeln!(m, "path {ino} {p}")?;
    }
    for &ino in &in_use {
        let i = img.inode(ino)?;
        if i.is_reg() {
            let data = img.read_file(ino, &i)?;
            if content.get(&ino) != Some(&data) {
                return Err(format!("inode {ino} does not read back as written").into());
            }
            writeln!(m, "data {ino} {}", sha256_hex(&data))?;
        } else if i.mode & S_IFMT == S_IFLNK {
            writeln!(m, "target {ino} {}", String::from_utf8(img.read_file(ino, &i)?)?)?;
        }
    }
    for &ino in &in_use {
        let i = img.inode(ino)?;
        if !i.is_reg() {
            continue;
        }
        let slots = img.vec_slots(ino, &i)?;
        let s: String = slots.iter().map(|s| format!(" {s}")).collect();
        writeln!(m, "slots {ino}{s}")?;
        let want = chunks.get(&ino).map_or(0, Vec::len);
        if slots.len() != want {
            return Err(format!("inode {ino} has {} chunks, not {want}", slots.len()).into());
        }
        for (c, v) in chunks.get(&ino).into_iter().flatten().enumerate() {
            writeln!(m, "chunk {ino} {c} {} {}", hex_words(v), decimals(v))?;
        }
    }
    for s in &pending {
        writeln!(m, "pending {s}")?;
    }
    for (slot, ino, chunk, v) in &tombstones {
        writeln!(m, "tombstone {slot} {ino} {chunk} {}", hex_words(v))?;
    }
    for (qi, ((q, k), hits)) in queries.iter().zip(&results).enumerate() {
        writeln!(m, "query {qi} {k} {EF} {} {}", hex_words(q), decimals(q))?;
        for (rank, hit) in hits.iter().enumerate() {
            let d = hit.distance();
            let path = hit_paths.get(&hit.ino).ok_or("a hit without a path")?;
            writeln!(m, "hit {qi} {} {} {} {} {:08x} {d} {path}", rank + 1, hit.ino, hit.chunk, hit.slot, d.to_bits())?;
        }
    }

    let mut gz: GzEncoder<Vec<u8>> = GzBuilder::new().mtime(0).write(Vec::new(), Compression::best());
    gz.write_all(&raw)?;
    let gz = gz.finish()?;
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("v2.img.gz"), &gz)?;
    std::fs::write(out_dir.join("v2.manifest"), m)?;
    eprintln!(
        "wrote {} ({} bytes, {} raw) and v2.manifest: {} paths, {} inodes ({} orphan), replay {} images, header {h:?}",
        out_dir.join("v2.img.gz").display(),
        gz.len(),
        raw.len(),
        paths.len(),
        in_use.len(),
        orphans.len(),
        rec.applied
    );
    Ok(())
}

/// Whether chunk `chunk` of `ino` is in a pending slot.
fn pending_of(img: &Image<MemDevice>, ino: u32, chunk: u32, pending: &[u32]) -> bool {
    img.inode(ino)
        .and_then(|i| img.vec_slots(ino, &i))
        .ok()
        .and_then(|s| s.get(chunk as usize).copied())
        .is_some_and(|s| pending.contains(&s))
}

const MANIFEST_HEAD: &str = "\
# What the frozen image v2.img.gz (on-disk format v2) holds. Made once by
# image/examples/make_frozen_image_v2.rs; checked by image/tests/frozen_v2.rs (the image crate) and
# tests/guest/061-frozen-v2.sh (the kernel, vexctl, fsck.vexfs). Never regenerate: see README.md.
# One item per line, fields separated by one space, '#' starts a comment line.
#
# The image is a filesystem that crashed right after a commit: RECOVER set, the journal not
# clean and holding committed transactions that are not checkpointed. The image, journal and
# txn lines describe it as it is; every other line describes it after the journal's replay
# (the superblock, block 0, is not in the journal: its free counts are hints).
#
# image RAW_BYTES RAW_SHA256                 the uncompressed image, as committed (not replayed)
# journal FIELD VALUE                        the journal before replay: superblock version, clean
#     (0/1), head record block, checkpoint_lsn; transactions and block images to replay
# txn N FIRST_LSN COMMIT_LSN IMAGES COMMIT_BLOCK   each committed transaction, in log order
# sb FIELD VALUE                             a superblock field (label: NUL padding dropped)
# hnsw FIELD VALUE                           the HNSW header (entry slot, entry_level, live,
#     deleted, pending)
# inode INO TYPE MODE UID GID LINKS SIZE BLOCKS ATIME MTIME CTIME
#     every inode in use; TYPE dir|file|symlink; MODE octal with the type bits; SIZE bytes;
#     BLOCKS 4 KiB blocks held (data, extent and vector-id blocks); times SECONDS.NANOSECONDS
# orphan INO                                 an inode in use with no link (links 0, no name):
#     the next read-write mount frees it
# path INO PATH                              every name reachable from the root, the root is /
# data INO SHA256                            sha256 of a regular file's content (holes read as 0)
# target INO TARGET                          a symlink's target
# slots INO SLOT...                          the vector slot of each chunk of a regular file
# chunk INO CHUNK BITS DECIMALS              an embedding: BITS the 8 float32 bit patterns (hex),
#     DECIMALS the same values as Rust prints them (vexctl get), both comma-separated
# pending SLOT                               a chunk's slot that is pending (level-0 flags
#     NODE_PENDING, not in the graph); every other chunk's slot is in the graph
# tombstone SLOT INO CHUNK BITS              a removed vector left in the graph, marked deleted
# query Q K EF BITS DECIMALS                 a search (vexctl search --row Q -k K --ef EF)
# hit Q RANK INO CHUNK SLOT DIST_BITS DISTANCE PATH
#     its results, nearest first: squared l2 distance, exact; PATH as vexctl search names it
";
