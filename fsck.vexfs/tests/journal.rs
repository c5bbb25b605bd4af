//! fsck.vexfs and the journal: a transaction committed to the log but never written home is
//! replayed (in memory by `-n`, on the device by `-y`), a torn tail is dropped and said so, an
//! impossible record and a corrupt journal superblock are problems, and a v1 filesystem is
//! upgraded by `-y`.

use std::path::Path;

use vexfs_image::journal::read_log;
use vexfs_image::sample::{self, SAMPLE_BLOCKS};
use vexfs_image::vexfs_core::format::journal::JOURNAL_CLEAN;
use vexfs_image::vexfs_core::format::superblock::{
    Region, Superblock, FEATURE_INCOMPAT_RECOVER, FORMAT_VERSION, ROOT_INO, STATE_CLEAN,
};
use vexfs_image::vexfs_core::format::BLOCK_SIZE;
use vexfs_image::vexfs_core::io::{Block, BlockDevice};
use vexfs_image::vexfs_core::journal::{self, DeviceSink, SCRATCH_BYTES};
use vexfs_image::writer::Writer;
use vexfs_image::{FileDevice, Image, MemDevice};

mod common;
use common::{fsck, save};

const BS: usize = BLOCK_SIZE;

/// The sample image, and the block images that creating `/new.txt` (and giving it an
/// embedding) changes, found by doing it with the writer on a copy: every block that differs,
/// but block 0 (never logged) and the journal region (the writer's own log).
fn sample_and_change() -> (Vec<u8>, Vec<(u64, Block)>) {
    let (img, _) = sample::build(MemDevice::new(SAMPLE_BLOCKS)).unwrap();
    let before = img.into_device().bytes;
    let mut w = Writer::new(Image::open(MemDevice { bytes: before.clone() }).unwrap()).unwrap();
    let ino = w.create(ROOT_INO, "new.txt", b"written through the journal\n").unwrap();
    w.set_embeddings(ino, &[[0.5f32, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]).unwrap();
    let img = w.commit().unwrap();
    let j = img.sb().region(Region::Journal);
    let after = img.into_device().bytes;
    let changed = (1..SAMPLE_BLOCKS)
        .filter(|&n| !j.contains(n))
        .filter(|&n| before[n as usize * BS..][..BS] != after[n as usize * BS..][..BS])
        .map(|n| (n, after[n as usize * BS..][..BS].try_into().unwrap()))
        .collect();
    (before, changed)
}

/// Sets `RECOVER` and clears the clean state in the primary superblock (as a mount does),
/// then commits `images` to the log of `dev` without writing them home.
fn commit_unapplied(dev: &mut MemDevice, images: &[(u64, Block)]) -> journal::Log {
    let mut sb = Superblock::decode(&dev.bytes[..BS]).unwrap();
    sb.feature_incompat |= FEATURE_INCOMPAT_RECOVER;
    sb.state &= !STATE_CLEAN;
    let mut b = [0u8; BS];
    sb.encode(&mut b);
    dev.write_block(0, &b).unwrap();
    let mut scratch = vec![0u8; SCRATCH_BYTES];
    let (mut log, _) = journal::recover(dev, &sb, &mut scratch).unwrap();
    journal::write_superblock(dev, &log, false).unwrap();
    let refs: Vec<(u64, &Block)> = images.iter().map(|(n, b)| (*n, b)).collect();
    journal::write_transaction(dev, &mut log, &refs).unwrap();
    log
}

fn has_new_file(path: &Path) -> bool {
    let img = Image::open(FileDevice::open(path, false).unwrap()).unwrap();
    img.lookup("/new.txt").is_ok()
}

#[test]
fn a_committed_transaction_is_replayed_in_memory_by_n_and_on_disk_by_y() {
    let (before, change) = sample_and_change();
    assert!(change.len() >= 5, "a file and an embedding change several blocks: {}", change.len());
    let mut dev = MemDevice { bytes: before };
    commit_unapplied(&mut dev, &change);
    let img = save(&dev.bytes);
    assert!(!has_new_file(&img.path), "nothing was written home");

    // -n: the replayed state is checked, and it is clean; the journal is information.
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
    let want =
        format!("journal: 1 committed transaction(s), {} block image(s) to replay: replayed in memory", change.len());
    assert!(out.contains(&want), "{out}");
    assert!(out.contains("clean\n"), "{out}");
    assert_eq!(std::fs::read(&img.path).unwrap(), dev.bytes, "-n wrote nothing");
    let (out, _) =
        vexfs_image::fsck::run(MemDevice { bytes: dev.bytes.clone() }, vexfs_image::fsck::Mode::Check).unwrap();
    assert_eq!(out.report.inodes_used, 11, "the replayed tree holds the new file");
    assert_eq!(out.replay.unwrap().applied, change.len() as u64);

    // -y applies it.
    let (code, out) = fsck(&img.path, &["-y"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("journal: {} block image(s) of 1 transaction(s) written home", change.len())),
        "{out}"
    );
    assert!(has_new_file(&img.path));
    let fsimg = Image::open(FileDevice::open(&img.path, false).unwrap()).unwrap();
    assert_eq!(fsimg.sb().feature_incompat & FEATURE_INCOMPAT_RECOVER, 0, "RECOVER cleared");
    assert_ne!(fsimg.sb().state & STATE_CLEAN, 0);
    let log = read_log(fsimg.device(), fsimg.sb()).unwrap();
    assert!(log.clean());
    assert_eq!(log.transactions_to_replay(), 0);

    // A second check: a clean journal, nothing to say about it.
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("journal"), "{out}");
}

#[test]
fn a_torn_tail_is_dropped_and_reported() {
    let (before, change) = sample_and_change();
    let mut dev = MemDevice { bytes: before };
    let log = commit_unapplied(&mut dev, &change);
    // A second transaction whose commit never reached the disk.
    let mut txn = log.begin::<std::io::Error>().unwrap();
    let mut sink = DeviceSink::new(&mut dev);
    let target = change[0].0;
    txn.add(&log, &mut sink, target, &[0xAB; BS]).unwrap();
    sink.finish().unwrap();
    let img = save(&dev.bytes);
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("journal: 1 committed transaction(s)"), "{out}");
    assert!(out.contains("journal: 1 record(s) after the last commit dropped, a transaction a crash tore"), "{out}");
    let (code, out) = fsck(&img.path, &["-y"]);
    assert_eq!(code, 0, "{out}");
    let fsimg = Image::open(FileDevice::open(&img.path, false).unwrap()).unwrap();
    assert_ne!(fsimg.read_block(target).unwrap()[..], [0xAB; BS][..], "the torn transaction was not replayed");
    assert!(has_new_file(&img.path));
}

#[test]
fn an_impossible_record_is_an_error() {
    let (before, _) = sample_and_change();
    let mut dev = MemDevice { bytes: before };
    // A checksummed image for a block past the device: the writers never make one, recovery
    // refuses it.
    commit_unapplied(&mut dev, &[(SAMPLE_BLOCKS + 5, [0u8; BS])]);
    let img = save(&dev.bytes);
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("journal: corrupt journal image target (value 2053): the log cannot be replayed. Cannot be fixed"),
        "{out}"
    );
    let (code, out) = fsck(&img.path, &["-y"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("Cannot be fixed"), "{out}");
}

#[test]
fn a_corrupt_journal_superblock_is_rebuilt_past_every_old_record() {
    let (before, change) = sample_and_change();
    let mut dev = MemDevice { bytes: before };
    commit_unapplied(&mut dev, &change);
    let sb = Superblock::decode(&dev.bytes[..BS]).unwrap();
    let j = sb.region(Region::Journal).start as usize;
    dev.bytes[j * BS + 30] ^= 1;
    let img = save(&dev.bytes);
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("what the log holds cannot be found"), "{out}");
    let (code, out) = fsck(&img.path, &["-p"]);
    assert_eq!(code, 4, "{out}");
    let (code, out) = fsck(&img.path, &["-y"]);
    assert_eq!(code, 1, "{out}");
    assert!(!has_new_file(&img.path), "the transaction was lost with the journal superblock");
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
    // The old records are never read again: a writer's new transactions recover alone.
    let fsimg = Image::open(FileDevice::open(&img.path, true).unwrap()).unwrap();
    let log = read_log(fsimg.device(), fsimg.sb()).unwrap();
    let js = log.superblock.clone().unwrap();
    assert!(js.flags & JOURNAL_CLEAN != 0);
    assert!(js.next_lsn > 1000, "LSNs start past the old records: {}", js.next_lsn);
    assert_eq!(log.scan.unwrap().transactions, 0);
    let mut w = Writer::new(fsimg).unwrap();
    w.mkdir(ROOT_INO, "after", 0o755).unwrap();
    w.commit().unwrap();
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn y_upgrades_a_v1_filesystem() {
    let (img, _) = sample::build(MemDevice::new(SAMPLE_BLOCKS)).unwrap();
    let mut dev = img.into_device();
    // Make it v1 as v1 mkfs did: both superblocks and the journal superblock say 1.
    let sb = Superblock::decode(&dev.bytes[..BS]).unwrap();
    for n in [0, sb.backup_block] {
        let mut s = Superblock::decode(&dev.bytes[n as usize * BS..][..BS]).unwrap();
        s.format_version = 1;
        let mut b = [0u8; BS];
        s.encode(&mut b);
        dev.write_block(n, &b).unwrap();
    }
    let j = sb.region(Region::Journal).start as usize;
    let jb = &mut dev.bytes[j * BS..][..BS];
    jb[16..20].copy_from_slice(&1u32.to_le_bytes());
    let owner = u64::from_le_bytes(jb[16..24].try_into().unwrap());
    vexfs_image::vexfs_core::format::block::seal_header(
        jb,
        u32::from_le_bytes(jb[..4].try_into().unwrap()),
        j as u64,
        owner,
    );
    let img = save(&dev.bytes);
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("format v1 (read as v3; fsck.vexfs -y or a read-write mount upgrades it)"), "{out}");
    let (code, out) = fsck(&img.path, &["-y"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("format v1 upgraded to v3"), "{out}");
    let fsimg = Image::open(FileDevice::open(&img.path, false).unwrap()).unwrap();
    assert_eq!(fsimg.sb().format_version, FORMAT_VERSION);
    let backup = Superblock::decode(&fsimg.read_block(fsimg.sb().backup_block).unwrap()[..]).unwrap();
    assert_eq!(backup.format_version, FORMAT_VERSION);
    assert_eq!(read_log(fsimg.device(), fsimg.sb()).unwrap().version, Some(2));
    let (code, out) = fsck(&img.path, &["-n"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("format v1"), "{out}");
}
