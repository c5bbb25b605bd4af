//! The journal's write, checkpoint and recovery code (core::journal) under simulated crashes.
//!
//! `SimDisk` is a block device that keeps the writes since the last flush apart from the
//! durable ones, and can stop working after any number of writes (the crash point). A crash
//! image is the durable blocks plus some of the unflushed writes: none, all, a random subset
//! (a disk cache may reorder), or all with the last one torn (half old, half new). The workload
//! commits transactions of block images, writes them home, and checkpoints when the log runs
//! short, as the kernel does. After every crash point and every crash image, recovery (the real
//! code) must give exactly the state after some number of transactions `c`, with
//! `acknowledged <= c <= started`; recovering twice, or crashing during recovery and recovering
//! again, must give the same state. Figures are printed at the end (`--nocapture`).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use vexfs_core::format::journal::JournalSuper;
use vexfs_core::format::layout::{layout, MkfsParams};
use vexfs_core::format::superblock::{Metric, Region, Superblock};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::io::{Block, BlockDevice};
use vexfs_core::journal::{self, JournalError, Log, SCRATCH_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Crashed;

/// A block device with a volatile write cache and a crash point.
#[derive(Clone)]
struct SimDisk {
    durable: Vec<Block>,
    /// Writes since the last flush, in order.
    pending: Vec<(u64, Block)>,
    /// Writes left before the crash (`None`: never).
    writes_left: Option<usize>,
    writes: usize,
}

impl SimDisk {
    fn new(blocks: u64) -> SimDisk {
        SimDisk { durable: vec![[0; BLOCK_SIZE]; blocks as usize], pending: Vec::new(), writes_left: None, writes: 0 }
    }

    fn from_image(durable: Vec<Block>) -> SimDisk {
        SimDisk { durable, pending: Vec::new(), writes_left: None, writes: 0 }
    }

    fn crashed(&self) -> bool {
        self.writes_left == Some(0)
    }

    /// The blocks a crash now could leave: `keep` says which unflushed writes made it.
    fn crash_image(&self, keep: impl Fn(usize) -> Keep) -> Vec<Block> {
        let mut img = self.durable.clone();
        for (i, (n, b)) in self.pending.iter().enumerate() {
            match keep(i) {
                Keep::Dropped => {}
                Keep::Written => img[*n as usize] = *b,
                Keep::Torn => img[*n as usize][..BLOCK_SIZE / 2].copy_from_slice(&b[..BLOCK_SIZE / 2]),
            }
        }
        img
    }
}

#[derive(Clone, Copy)]
enum Keep {
    Dropped,
    Written,
    Torn,
}

impl BlockDevice for SimDisk {
    type Error = Crashed;
    fn block_count(&self) -> u64 {
        self.durable.len() as u64
    }
    fn read_block(&self, n: u64, buf: &mut Block) -> Result<(), Crashed> {
        if self.crashed() {
            return Err(Crashed);
        }
        *buf = self.pending.iter().rev().find(|(m, _)| *m == n).map(|(_, b)| *b).unwrap_or(self.durable[n as usize]);
        Ok(())
    }
    fn write_block(&mut self, n: u64, buf: &Block) -> Result<(), Crashed> {
        match &mut self.writes_left {
            Some(0) => return Err(Crashed),
            Some(k) => *k -= 1,
            None => {}
        }
        self.writes += 1;
        self.pending.push((n, *buf));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Crashed> {
        if self.crashed() {
            return Err(Crashed);
        }
        for (n, b) in self.pending.drain(..) {
            self.durable[n as usize] = b;
        }
        Ok(())
    }
}

fn superblock() -> Superblock {
    layout(&MkfsParams {
        block_count: 1024,
        inode_count: None,
        journal_blocks: Some(64),
        vec_capacity: Some(64),
        dim: 4,
        metric: Metric::L2,
        m: 4,
        ef_construction: 16,
        uuid: [0x5a; 16],
        label: [0; 32],
        now: 0,
        seed: 1,
    })
    .unwrap()
}

fn fresh_disk(sb: &Superblock) -> SimDisk {
    let mut d = SimDisk::new(sb.block_count);
    let j = sb.region(Region::Journal);
    let mut b = [0u8; BLOCK_SIZE];
    JournalSuper::new(sb.uuid).encode(&mut b, j.start);
    d.write_block(j.start, &b).unwrap();
    d.flush().unwrap();
    d
}

/// The image transaction `t` writes to block `n`.
fn image(t: usize, n: u64) -> Block {
    let mut b = [t as u8; BLOCK_SIZE];
    b[..8].copy_from_slice(&(t as u64).to_le_bytes());
    b[8..16].copy_from_slice(&n.to_le_bytes());
    b
}

/// The workload: `txns[t]` is the list of home blocks transaction `t` changes.
fn workload(sb: &Superblock, seed: u64, count: usize) -> Vec<Vec<u64>> {
    let data = sb.region(Region::Data).start;
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let n = rng.gen_range(1..=6);
            let mut v: Vec<u64> = (0..n).map(|_| data + rng.gen_range(0..24)).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect()
}

/// The home blocks after the first `c` transactions (blocks never written are zero).
fn model(txns: &[Vec<u64>], c: usize) -> BTreeMap<u64, Block> {
    let mut m = BTreeMap::new();
    for (t, blocks) in txns.iter().take(c).enumerate() {
        for &n in blocks {
            m.insert(n, image(t + 1, n));
        }
    }
    m
}

/// How far the workload got.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    started: usize,
    acknowledged: usize,
}

/// Runs the workload as the kernel does: recover, then for each transaction commit it to the
/// log, then write its blocks home (unflushed, as writeback would); when the log is short of
/// room, flush the home blocks and checkpoint. Stops at the first device error (the crash).
fn run(disk: &mut SimDisk, sb: &Superblock, txns: &[Vec<u64>], p: &mut Progress) -> Result<(), JournalError<Crashed>> {
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    let (mut log, _) = journal::recover(disk, sb, &mut scratch)?;
    journal::write_superblock(disk, &log, false)?;
    for (t, blocks) in txns.iter().enumerate() {
        let images: Vec<(u64, Block)> = blocks.iter().map(|&n| (n, image(t + 1, n))).collect();
        if log.free_blocks() < journal::txn_blocks(images.len() as u64) {
            disk.flush().map_err(JournalError::Io)?;
            journal::checkpoint(disk, &mut log, false)?;
        }
        p.started = t + 1;
        journal::write_transaction(disk, &mut log, &images.iter().map(|(n, b)| (*n, b)).collect::<Vec<_>>())?;
        p.acknowledged = t + 1;
        for (n, b) in &images {
            disk.write_block(*n, b).map_err(JournalError::Io)?;
        }
    }
    disk.flush().map_err(JournalError::Io)?;
    journal::checkpoint(disk, &mut log, true)
}

/// Which `c` the home blocks of `disk` match, if any, among `lo..=hi`.
fn matching_prefix(disk: &SimDisk, txns: &[Vec<u64>], lo: usize, hi: usize) -> Option<usize> {
    let touched: Vec<u64> = {
        let mut v: Vec<u64> = txns.iter().flatten().copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    (lo..=hi).find(|&c| {
        let m = model(txns, c);
        touched.iter().all(|n| {
            let mut b = [0u8; BLOCK_SIZE];
            disk.read_block(*n, &mut b).unwrap();
            b == m.get(n).copied().unwrap_or([0; BLOCK_SIZE])
        })
    })
}

fn recover_all(img: Vec<Block>, sb: &Superblock) -> SimDisk {
    let mut d = SimDisk::from_image(img);
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    journal::recover(&mut d, sb, &mut scratch).unwrap();
    d
}

#[test]
fn no_crash_everything_applied_and_journal_clean() {
    let sb = superblock();
    let txns = workload(&sb, 1, 40);
    let mut d = fresh_disk(&sb);
    let mut p = Progress::default();
    run(&mut d, &sb, &txns, &mut p).unwrap();
    assert_eq!(p.acknowledged, 40);
    assert_eq!(matching_prefix(&d, &txns, 40, 40), Some(40));
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    let (log, rec) = journal::recover(&mut d, &sb, &mut scratch).unwrap();
    assert!(rec.scan.clean, "a finished workload leaves a clean journal");
    assert_eq!(log.used_blocks(), 0);
}

#[test]
fn committed_but_never_written_home_is_replayed() {
    let sb = superblock();
    let txns = workload(&sb, 2, 5);
    let mut d = fresh_disk(&sb);
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    let (mut log, _) = journal::recover(&mut d, &sb, &mut scratch).unwrap();
    journal::write_superblock(&mut d, &log, false).unwrap();
    for (t, blocks) in txns.iter().enumerate() {
        let images: Vec<(u64, Block)> = blocks.iter().map(|&n| (n, image(t + 1, n))).collect();
        journal::write_transaction(&mut d, &mut log, &images.iter().map(|(n, b)| (*n, b)).collect::<Vec<_>>()).unwrap();
    }
    assert_eq!(matching_prefix(&d, &txns, 0, 0), Some(0), "nothing home yet");
    let (_, rec) = journal::recover(&mut d, &sb, &mut scratch).unwrap();
    assert_eq!(rec.scan.transactions, 5);
    assert_eq!(rec.applied as usize, txns.iter().map(Vec::len).sum::<usize>());
    assert_eq!(matching_prefix(&d, &txns, 5, 5), Some(5));
    // The journal is clean now: a second recovery reads nothing and changes nothing.
    let (_, rec) = journal::recover(&mut d, &sb, &mut scratch).unwrap();
    assert!(rec.scan.clean);
    assert_eq!(matching_prefix(&d, &txns, 5, 5), Some(5));
}

#[test]
fn every_crash_point_recovers_to_an_acknowledged_prefix() {
    let sb = superblock();
    let txns = workload(&sb, 3, 30);
    // The full run's write count bounds the crash points.
    let mut full = fresh_disk(&sb);
    run(&mut full, &sb, &txns, &mut Progress::default()).unwrap();
    let total = full.writes;
    let mut rng = SmallRng::seed_from_u64(99);
    let (mut points, mut images, mut replay_crashes, mut lost) = (0usize, 0usize, 0usize, 0usize);
    for k in 0..=total {
        let mut d = fresh_disk(&sb);
        d.writes = 0;
        d.writes_left = Some(k);
        let mut p = Progress::default();
        let r = run(&mut d, &sb, &txns, &mut p);
        assert!(r.is_err() || k == total, "the run must stop at its crash point {k}");
        points += 1;
        let n = d.pending.len();
        let mut keeps: Vec<Box<dyn Fn(usize) -> Keep>> = vec![
            Box::new(|_| Keep::Dropped),
            Box::new(|_| Keep::Written),
            Box::new(move |i| if i + 1 == n { Keep::Torn } else { Keep::Written }),
        ];
        for _ in 0..3 {
            let mask: Vec<bool> = (0..n).map(|_| rng.gen_bool(0.5)).collect();
            keeps.push(Box::new(move |i| if mask[i] { Keep::Written } else { Keep::Dropped }));
        }
        for (which, keep) in keeps.iter().enumerate() {
            let img = d.crash_image(keep);
            images += 1;
            let rec = recover_all(img.clone(), &sb);
            let c = matching_prefix(&rec, &txns, 0, p.started);
            assert!(c.is_some(), "crash after {k} writes: the state is no prefix of the transactions (torn)");
            if c < Some(p.acknowledged) {
                lost += 1;
            }
            // Recovery is idempotent, and survives a crash of its own at any write.
            let again = recover_all(rec.durable.clone(), &sb);
            assert_eq!(matching_prefix(&again, &txns, c.unwrap(), c.unwrap()), c);
            // Crashes during recovery: for every 5th crash point, with every unflushed write
            // kept (the image with the most to replay).
            if k % 5 != 0 || which != 1 {
                continue;
            }
            let mut probe = SimDisk::from_image(img.clone());
            let mut scratch = vec![0u8; SCRATCH_BYTES];
            journal::recover(&mut probe, &sb, &mut scratch).unwrap();
            for j in 0..probe.writes {
                let mut d2 = SimDisk::from_image(img.clone());
                d2.writes_left = Some(j);
                assert!(journal::recover(&mut d2, &sb, &mut scratch).is_err());
                let torn = d2.crash_image(|_| Keep::Written);
                let fin = recover_all(torn, &sb);
                assert_eq!(
                    matching_prefix(&fin, &txns, c.unwrap(), c.unwrap()),
                    c,
                    "crash after {k} writes, then during recovery after {j} writes"
                );
                replay_crashes += 1;
            }
        }
    }
    println!(
        "journal crash test: {points} crash points, {images} crash images, {replay_crashes} crashes during recovery, {lost} acknowledged transactions lost"
    );
    assert_eq!(lost, 0, "acknowledged transactions lost");
    assert!(points > 100);
}

#[test]
fn log_wraps_around_many_times() {
    let sb = superblock();
    let txns = workload(&sb, 4, 400);
    let mut d = fresh_disk(&sb);
    let mut p = Progress::default();
    run(&mut d, &sb, &txns, &mut p).unwrap();
    assert_eq!(matching_prefix(&d, &txns, 400, 400), Some(400));
}

#[test]
fn transaction_larger_than_the_log_is_refused_without_writing() {
    let sb = superblock();
    let mut d = fresh_disk(&sb);
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    let (mut log, _) = journal::recover(&mut d, &sb, &mut scratch).unwrap();
    journal::write_superblock(&mut d, &log, false).unwrap();
    let data = sb.region(Region::Data).start;
    let imgs: Vec<(u64, Block)> = (0..80).map(|i| (data + i, image(1, data + i))).collect();
    let before = log.clone();
    let e = journal::write_transaction(&mut d, &mut log, &imgs.iter().map(|(n, b)| (*n, b)).collect::<Vec<_>>())
        .unwrap_err();
    assert_eq!(e, JournalError::NoSpace);
    assert_eq!(log, before, "nothing written");
    // A smaller transaction goes in, then a crash: only it is replayed.
    let small: Vec<(u64, Block)> = (0..2).map(|i| (data + i, image(2, data + i))).collect();
    journal::write_transaction(&mut d, &mut log, &small.iter().map(|(n, b)| (*n, b)).collect::<Vec<_>>()).unwrap();
    let (_, rec) = journal::recover(&mut d, &sb, &mut scratch).unwrap();
    assert_eq!((rec.scan.transactions, rec.applied), (1, 2));
    let mut b = [0u8; BLOCK_SIZE];
    d.read_block(data + 2, &mut b).unwrap();
    assert_eq!(b, [0; BLOCK_SIZE], "no image of the refused transaction reached home");
    let _ = Log::new(&sb, &JournalSuper::new(sb.uuid));
}

#[test]
fn image_of_a_journal_block_is_refused() {
    let sb = superblock();
    let mut d = fresh_disk(&sb);
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    let (mut log, _) = journal::recover(&mut d, &sb, &mut scratch).unwrap();
    let j = sb.region(Region::Journal).start;
    let e = journal::write_transaction(&mut d, &mut log, &[(j + 3, &[0u8; BLOCK_SIZE])]).unwrap_err();
    assert_eq!(e, JournalError::Invalid("journal image of a journal block"));
}
