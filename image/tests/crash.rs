//! The offline writer under simulated crashes: every device write of real workloads (ingest:
//! files and their embeddings; delete and purge; mkdir, link, symlink) is a crash point.
//!
//! `SimDisk` keeps the writes since the last flush apart from the durable blocks and fails
//! every write after its crash point. Each crash leaves several images: the unflushed writes
//! dropped, all kept, all kept with the last one torn (half new, half old), and a random
//! subset (a cache that reorders). Each image is recovered with `vexfs_core::journal::recover`
//! (the kernel's code), then checked: `fsck` finds nothing wrong, the tree and every file's
//! embeddings equal the state after some prefix of the operations that is no shorter than the
//! last acknowledged sync, and every embedding acknowledged before the crash is found by a
//! search for its own vector. Figures are printed (`--nocapture`).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::needless_range_loop)]

use std::collections::BTreeMap;
use std::io;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vexfs_core::format::inode::{S_IFDIR, S_IFLNK, S_IFMT};
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{Metric, Region, Superblock, ROOT_INO};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::io::{Block, BlockDevice};
use vexfs_core::journal::{self, SCRATCH_BYTES};
use vexfs_image::fsck::{self, Mode};
use vexfs_image::writer::Writer;
use vexfs_image::{mkfs, Image, MemDevice};

const BLOCKS: u64 = 1024;
const DIM: usize = 4;

/// A block device with a volatile write cache and a crash point.
#[derive(Clone)]
struct SimDisk {
    durable: Vec<Block>,
    pending: Vec<(u64, Block)>,
    /// Writes left before the crash (`None`: never).
    writes_left: Option<usize>,
    writes: usize,
    /// The crash happened: every later access fails.
    dead: bool,
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash")
}

impl SimDisk {
    fn from_bytes(bytes: &[u8]) -> SimDisk {
        let durable = bytes.chunks(BLOCK_SIZE).map(|c| c.try_into().unwrap()).collect();
        SimDisk { durable, pending: Vec::new(), writes_left: None, writes: 0, dead: false }
    }

    /// The device a crash now leaves: `keep(i)` says what became of unflushed write `i`.
    fn crash_image(&self, keep: impl Fn(usize) -> Keep) -> MemDevice {
        let mut img = self.durable.clone();
        for (i, (n, b)) in self.pending.iter().enumerate() {
            match keep(i) {
                Keep::Dropped => {}
                Keep::Written => img[*n as usize] = *b,
                Keep::Torn => img[*n as usize][..BLOCK_SIZE / 2].copy_from_slice(&b[..BLOCK_SIZE / 2]),
            }
        }
        MemDevice { bytes: img.concat() }
    }
}

#[derive(Clone, Copy)]
enum Keep {
    Dropped,
    Written,
    Torn,
}

impl BlockDevice for SimDisk {
    type Error = io::Error;
    fn block_count(&self) -> u64 {
        self.durable.len() as u64
    }
    fn read_block(&self, n: u64, buf: &mut Block) -> io::Result<()> {
        if self.dead {
            return Err(crashed());
        }
        let b = self.durable.get(n as usize).ok_or_else(|| io::Error::other("past the end"))?;
        *buf = self.pending.iter().rev().find(|(m, _)| *m == n).map(|(_, b)| *b).unwrap_or(*b);
        Ok(())
    }
    fn write_block(&mut self, n: u64, buf: &Block) -> io::Result<()> {
        if self.dead {
            return Err(crashed());
        }
        match &mut self.writes_left {
            Some(0) => {
                self.dead = true;
                return Err(crashed());
            }
            Some(k) => *k -= 1,
            None => {}
        }
        if n >= self.block_count() {
            return Err(io::Error::other("past the end"));
        }
        self.writes += 1;
        self.pending.push((n, *buf));
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.dead {
            return Err(crashed());
        }
        for (n, b) in self.pending.drain(..) {
            self.durable[n as usize] = b;
        }
        Ok(())
    }
}

fn params(journal_blocks: u64) -> MkfsParams {
    MkfsParams {
        block_count: BLOCKS,
        inode_count: Some(128),
        journal_blocks: Some(journal_blocks),
        vec_capacity: Some(256),
        dim: DIM as u32,
        metric: Metric::L2,
        m: 4,
        ef_construction: 32,
        uuid: *b"vexfs-crash-test",
        label: [0; 32],
        now: 1_700_000_000,
        seed: 5,
    }
}

fn formatted(journal_blocks: u64) -> Vec<u8> {
    let mut dev = MemDevice::new(BLOCKS);
    mkfs::format(&mut dev, &params(journal_blocks), false).unwrap();
    dev.bytes
}

/// One step of a workload.
#[derive(Debug, Clone)]
enum Op {
    Mkdir(&'static str, String),
    /// Create `dir/name` with `bytes` of content.
    Create(String, String, usize),
    /// Set the embeddings of a file (a writer operation of its own).
    Embed(String, Vec<[f32; DIM]>),
    Link(&'static str, String, String),
    Symlink(&'static str, String, String),
    /// Remove every embedding of the file.
    Unembed(String),
    Purge,
    Sync,
}

fn dir_of(w: &Writer<SimDisk>, dir: &str) -> io::Result<u32> {
    w.image().lookup(dir).map_err(|e| io::Error::other(e.to_string()))
}

fn apply(w: &mut Writer<SimDisk>, op: &Op) -> Result<(), String> {
    let e = |e: vexfs_image::Error| e.to_string();
    match op {
        Op::Mkdir(dir, name) => w.mkdir(dir_of(w, dir).map_err(|e| e.to_string())?, name, 0o755).map(|_| ()).map_err(e),
        Op::Create(dir, name, len) => {
            let d = dir_of(w, dir).map_err(|e| e.to_string())?;
            let content = vexfs_image::sample::pattern(*len, name.len() as u8);
            w.create(d, name, &content).map(|_| ()).map_err(e)
        }
        Op::Embed(path, vecs) => {
            let ino = w.image().lookup(path).map_err(e)?;
            w.set_embeddings(ino, vecs).map(|_| ()).map_err(e)
        }
        Op::Link(dir, name, target) => {
            let d = dir_of(w, dir).map_err(|e| e.to_string())?;
            let ino = w.image().lookup(target).map_err(e)?;
            w.link(d, name, ino).map_err(e)
        }
        Op::Symlink(dir, name, target) => {
            w.symlink(dir_of(w, dir).map_err(|e| e.to_string())?, name, target).map(|_| ()).map_err(e)
        }
        Op::Unembed(path) => {
            let ino = w.image().lookup(path).map_err(e)?;
            w.remove_embeddings(ino).map_err(e)
        }
        Op::Purge => w.purge_vectors().map_err(e),
        Op::Sync => w.sync().map_err(e),
    }
}

/// Ingest, then delete + purge, then a tree of directories, links and symlinks; a sync after
/// every `sync_every` files of the ingest.
fn workload(seed: u64, files: usize, sync_every: usize) -> Vec<(&'static str, Op)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut v = || -> [f32; DIM] { std::array::from_fn(|_| rng.gen_range(-10.0f32..10.0)) };
    let mut ops = Vec::new();
    for i in 0..files {
        let chunks = 1 + i % 3;
        let vecs = (0..chunks).map(|_| v()).collect();
        ops.push(("ingest", Op::Create("/".into(), format!("f{i:02}"), 100 + 1500 * (i % 4))));
        ops.push(("ingest", Op::Embed(format!("/f{i:02}"), vecs)));
        if i % sync_every == sync_every - 1 {
            ops.push(("ingest", Op::Sync));
        }
    }
    for i in [1, 4, 5, 9] {
        ops.push(("delete+purge", Op::Unembed(format!("/f{i:02}"))));
    }
    ops.push(("delete+purge", Op::Sync));
    ops.push(("delete+purge", Op::Purge));
    ops.push(("delete+purge", Op::Sync));
    ops.push(("tree", Op::Mkdir("/", "d".into())));
    ops.push(("tree", Op::Mkdir("/d", "e".into())));
    ops.push(("tree", Op::Create("/d/e".into(), "g".into(), 9000)));
    ops.push(("tree", Op::Embed("/d/e/g".into(), vec![v()])));
    ops.push(("tree", Op::Sync));
    ops.push(("tree", Op::Link("/d", "f00-again".into(), "/f00".into())));
    ops.push(("tree", Op::Symlink("/d", "to-g".into(), "e/g".into())));
    for i in 0..20 {
        ops.push(("tree", Op::Link("/d/e", format!("a-long-name-to-fill-the-directory-{i:02}"), "/f03".into())));
    }
    ops.push(("tree", Op::Sync));
    ops
}

/// What a state holds: every path with its kind, content (or target) and embeddings, and the
/// index's live and deleted counts.
type Dump = (BTreeMap<String, (u16, Vec<u8>, Vec<Vec<u32>>)>, (u32, u32));

fn dump<D: BlockDevice<Error = io::Error>>(img: &Image<D>) -> Result<Dump, String> {
    let sb = img.sb().clone();
    let mut out = BTreeMap::new();
    let mut stack = vec![("".to_string(), ROOT_INO)];
    while let Some((path, d)) = stack.pop() {
        let inode = img.inode(d).map_err(|e| e.to_string())?;
        for e in img.read_dir(d, &inode).map_err(|e| e.to_string())? {
            let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
            let i = img.inode(e.ino).map_err(|e| e.to_string())?;
            let kind = i.mode & S_IFMT;
            if kind == S_IFDIR {
                stack.push((p.clone(), e.ino));
                out.insert(p, (kind, Vec::new(), Vec::new()));
                continue;
            }
            let content = img.read_file(e.ino, &i).map_err(|e| e.to_string())?;
            let mut vecs = Vec::new();
            if kind != S_IFLNK {
                for slot in img.vec_slots(e.ino, &i).map_err(|e| e.to_string())? {
                    vecs.push(vector(img, &sb, slot)?);
                }
            }
            out.insert(p, (kind, content, vecs));
        }
    }
    let h = sb.region(Region::Hnsw).start;
    let hb = img.read_block(h).map_err(|e| e.to_string())?;
    let hdr = vexfs_core::format::vector::HnswHeader::decode(&hb[..], h).map_err(|e| e.to_string())?;
    Ok((out, (hdr.live, hdr.deleted)))
}

fn vector<D: BlockDevice<Error = io::Error>>(img: &Image<D>, sb: &Superblock, slot: u32) -> Result<Vec<u32>, String> {
    let at = u64::from(slot) * u64::from(sb.vec_stride);
    let b = img.read_block(sb.region(Region::VecData).start + at / 4096).map_err(|e| e.to_string())?;
    let off = (at % 4096) as usize;
    Ok(b[off..off + DIM * 4].chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect())
}

/// How far a run got: operations started and the number of operations covered by the last
/// completed sync.
#[derive(Default, Clone, Copy)]
struct Progress {
    started: usize,
    acked: usize,
    /// Transactions committed by a run that finished.
    txns: u64,
}

/// Runs `ops` on `disk` with the writer (which recovers first) until the first error (the
/// crash) or the end. Returns the device below the writer (its staged blocks are lost with
/// it, as memory is in a crash), how far it got, and the dumps after every operation when
/// `dumps` (the dump of the opened image first).
fn run(disk: SimDisk, ops: &[(&str, Op)], dumps: bool) -> (SimDisk, Progress, bool, Vec<Dump>) {
    let mut p = Progress::default();
    let mut out = Vec::new();
    let mut w = Writer::new(Image::open(disk).unwrap()).unwrap();
    if dumps {
        out.push(dump(w.image()).unwrap());
    }
    for (i, (_, op)) in ops.iter().enumerate() {
        p.started = i + 1;
        if apply(&mut w, op).is_err() {
            return (w.image().device().inner().clone(), p, true, out);
        }
        if matches!(op, Op::Sync) {
            p.acked = i + 1;
        }
        if dumps {
            out.push(dump(w.image()).unwrap());
        }
    }
    assert_eq!(w.unatomic_commits(), 0, "every operation fits the journal");
    let syncs = ops.iter().filter(|(_, o)| matches!(o, Op::Sync)).count() as u64;
    if dumps {
        println!("  {} transactions for {syncs} syncs", w.transactions());
    }
    p.txns = w.transactions();
    (w.commit().unwrap().into_device(), p, false, out)
}

#[test]
fn every_crash_point_of_the_workloads_recovers_to_an_acknowledged_prefix() {
    // A sync every 3 files: one transaction per sync.
    let txns = crash_everywhere("syncs of one transaction", 128, &workload(11, 24, 3));
    assert_eq!(txns, 12, "one transaction per sync");
}

#[test]
fn every_crash_point_of_syncs_split_in_several_transactions() {
    // The smallest journal, 45 directories with a file (a directory block each) and 20 files before the
    // first sync: that sync is split between operations.
    let mut ops: Vec<(&'static str, Op)> = Vec::new();
    for i in 0..45 {
        ops.push(("tree", Op::Mkdir("/", format!("dir{i:02}"))));
        ops.push(("tree", Op::Create(format!("/dir{i:02}"), "x".into(), 10)));
    }
    ops.extend(workload(12, 20, 20));
    let syncs = ops.iter().filter(|(_, o)| matches!(o, Op::Sync)).count() as u64;
    let txns = crash_everywhere("syncs split", 64, &ops);
    assert!(txns > syncs, "{txns} transactions for {syncs} syncs");
}

/// Crashes the workload after every device write; returns the transactions of the full run.
fn crash_everywhere(name: &str, journal_blocks: u64, ops: &[(&'static str, Op)]) -> u64 {
    let base = formatted(journal_blocks);
    let ops = ops.to_vec();
    // The full run: the dump after every operation, and the number of writes.
    let (full, full_progress, failed, dumps) = run(SimDisk::from_bytes(&base), &ops, true);
    assert!(!failed);
    let total = full.writes;
    let sb = Superblock::decode(&base[..BLOCK_SIZE]).unwrap();
    let mut rng = SmallRng::seed_from_u64(7);
    let (mut points, mut images, mut lost, mut fsck_failures, mut searched) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut per_phase: BTreeMap<&str, usize> = BTreeMap::new();
    let start = std::time::Instant::now();
    let mut first_failure: Option<String> = None;
    for k in 0..total {
        let mut disk = SimDisk::from_bytes(&base);
        disk.writes_left = Some(k);
        let (disk, p, failed, _) = run(disk, &ops, false);
        assert!(failed, "the run must stop at its crash point {k}");
        points += 1;
        *per_phase.entry(ops[p.started - 1].0).or_default() += 1;
        let n = disk.pending.len();
        let mask: Vec<bool> = (0..n).map(|_| rng.gen_bool(0.5)).collect();
        let keeps: [&dyn Fn(usize) -> Keep; 4] =
            [&|_| Keep::Dropped, &|_| Keep::Written, &|i| if i + 1 == n { Keep::Torn } else { Keep::Written }, &|i| {
                if mask[i] {
                    Keep::Written
                } else {
                    Keep::Dropped
                }
            }];
        for keep in keeps {
            images += 1;
            let mut dev = disk.crash_image(keep);
            let mut scratch = vec![0u8; SCRATCH_BYTES];
            journal::recover(&mut dev, &sb, &mut scratch).unwrap();
            let (out, dev) = fsck::run(dev, Mode::Check).unwrap();
            if !out.report.problems.is_empty() {
                fsck_failures += 1;
                first_failure.get_or_insert(format!("crash after {k} writes: fsck: {:#?}", out.report.problems));
                continue;
            }
            let img = Image::open(dev).unwrap();
            let d = dump(&img).unwrap();
            let c = (p.acked..=p.started).find(|&c| dumps[c] == d);
            let Some(c) = c else {
                lost += 1;
                let best = (0..dumps.len()).find(|&c| dumps[c] == d);
                if std::env::var("CRASH_DEBUG").is_ok() && first_failure.is_none() {
                    for c in p.acked..=p.started {
                        let a: Vec<_> = dumps[c].0.keys().filter(|k| !d.0.contains_key(*k)).collect();
                        let b: Vec<_> = d.0.keys().filter(|k| !dumps[c].0.contains_key(*k)).collect();
                        let ch: Vec<_> =
                            d.0.iter()
                                .filter(|(k, v)| dumps[c].0.get(*k).is_some_and(|x| x != *v))
                                .map(|(k, _)| k)
                                .collect();
                        eprintln!("c={c}: missing {a:?} extra {b:?} changed {ch:?} hdr {:?} vs {:?}", d.1, dumps[c].1);
                    }
                }
                first_failure.get_or_insert(format!(
                    "crash after {k} writes (ops {}..={}): the state is no acknowledged prefix (matches {best:?})",
                    p.acked, p.started
                ));
                continue;
            };
            // Every embedding of the state (those acknowledged, less what later operations that
            // reached the disk removed) is found by a search for its own vector.
            let mut w = Writer::new(img).unwrap();
            for (path, (_, _, vecs)) in &dumps[c].0 {
                let ino = w.image().lookup(path).unwrap();
                for (chunk, bits) in vecs.iter().enumerate() {
                    let q: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
                    let hits = w.search(&q, 1, 64).unwrap();
                    let top = hits.first().map(|h| (h.ino, h.chunk, h.distance()));
                    assert!(
                        top.is_some_and(|(i, _, dist)| dist == 0.0
                            && (i == u64::from(ino) || dumps[c].0.values().filter(|x| x.2.contains(bits)).count() > 1)),
                        "crash after {k}: {path} chunk {chunk} not found by its own vector: {top:?}"
                    );
                    searched += 1;
                }
            }
        }
    }
    println!(
        "writer crash test, {name}: {points} crash points ({per_phase:?}), {images} crash images, {lost} acknowledged states lost, \
         {fsck_failures} fsck failures, {searched} acknowledged embeddings found by their own vector, {} ops, {:.1} s",
        ops.len(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(first_failure, None);
    assert_eq!((lost, fsck_failures), (0, 0));
    assert!(points > 100);
    full_progress.txns
}

/// One operation larger than the whole log (300 embeddings of dimension 256: 75 blocks of
/// vector data alone, the log holds 60 images) is written as several transactions under the
/// errors state: clean when it completes, and a crash in the middle leaves the errors state
/// set, so the filesystem asks for fsck.
#[test]
fn an_operation_larger_than_the_log_is_written_under_the_errors_state() {
    let p = MkfsParams { dim: 256, vec_capacity: Some(512), block_count: 2048, ..params(64) };
    let mut dev = MemDevice::new(2048);
    mkfs::format(&mut dev, &p, false).unwrap();
    let base = dev.bytes;
    let vecs: Vec<Vec<f32>> = (0..300).map(|i| (0..256).map(|j| ((i * 7 + j) % 13) as f32).collect()).collect();
    let go = |disk: SimDisk| -> (SimDisk, bool, u64) {
        let mut w = Writer::new(Image::open(disk).unwrap()).unwrap();
        let r = w.create(ROOT_INO, "big", b"x").and_then(|ino| w.set_embeddings(ino, &vecs)).and_then(|_| w.sync());
        (w.image().device().inner().clone(), r.is_err(), w.unatomic_commits())
    };
    let (full, failed, unatomic) = go(SimDisk::from_bytes(&base));
    assert!(!failed);
    assert_eq!(unatomic, 1);
    let (out, _) = fsck::run(full.crash_image(|_| Keep::Written), Mode::Check).unwrap();
    assert!(out.report.problems.is_empty(), "{:?}", out.report.problems);
    let sb = Superblock::decode(&base[..BLOCK_SIZE]).unwrap();
    let (mut flagged, mut clean) = (0, 0);
    for k in (0..full.writes).step_by(7) {
        let mut d = SimDisk::from_bytes(&base);
        d.writes_left = Some(k);
        let (d, failed, _) = go(d);
        assert!(failed);
        let mut dev = d.crash_image(|_| Keep::Written);
        journal::recover(&mut dev, &sb, &mut vec![0u8; SCRATCH_BYTES]).unwrap();
        let (out, _) = fsck::run(dev, Mode::Check).unwrap();
        if out.report.problems.is_empty() {
            clean += 1;
        } else {
            assert_eq!(
                out.report.problems[0].kind,
                fsck::Kind::ErrorsFlag,
                "crash after {k}: {:?}",
                out.report.problems
            );
            flagged += 1;
        }
    }
    println!("operation larger than the log: {clean} crash points clean, {flagged} with the errors state set");
    assert!(flagged > 0);
}
