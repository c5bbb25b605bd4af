//! fsck.vexfs: checks a vexfs filesystem and repairs what it can.
//!
//! Exit codes as e2fsck (bits OR-ed, [`vexfs_image::exit::FsckStatus`]): 0 no errors, 1 errors
//! corrected, 4 errors left uncorrected, 8 operational error, 16 usage error.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vexfs_image::exit::{FsckStatus, FSCK};
use vexfs_image::fsck::{self, Fix, Mode};
use vexfs_image::show::format_uuid;
use vexfs_image::FileDevice;

/// Check a vexfs filesystem and repair what can be repaired. The journal is replayed first:
/// on the device with -y or -p, into memory with -n (nothing is written without -y or -p). The
/// check is always complete (clean filesystems are checked too). -y also upgrades a format v1
/// or v2 filesystem to v3.
#[derive(Parser, Debug)]
#[command(
    name = "fsck.vexfs",
    bin_name = "fsck.vexfs",
    version = concat!(env!("CARGO_PKG_VERSION"), " (format v3)"),
    after_help = "Exit status (as e2fsck, bits OR-ed): 0 no errors, 1 errors corrected, 4 errors left \
                  uncorrected, 8 operational error, 16 usage error."
)]
struct Cli {
    /// Open read-only and answer "no" to every repair.
    #[arg(short = 'n', conflicts_with_all = ["yes", "preen"])]
    no: bool,
    /// Repair every problem that can be repaired.
    #[arg(short = 'y', conflicts_with = "preen")]
    yes: bool,
    /// Preen: repair what is safe without asking (counts, bitmaps, link counts, backup
    /// superblock); anything else exits 4. `-a` is the same.
    #[arg(short = 'p', short_alias = 'a')]
    preen: bool,
    /// Force a check of a clean filesystem (accepted for compatibility: vexfs always checks).
    #[arg(short = 'f')]
    force: bool,
    /// Describe the filesystem and the repair.
    #[arg(short = 'v')]
    verbose: bool,
    /// Image file or block device.
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(FSCK.after_parse(e.use_stderr()));
        }
    };
    ExitCode::from(run(&cli).code())
}

fn run(cli: &Cli) -> FsckStatus {
    let name = cli.image.display().to_string();
    let mode = if cli.yes {
        Mode::Repair
    } else if cli.preen {
        Mode::Preen
    } else {
        Mode::Check
    };
    let dev = match FileDevice::open(&cli.image, mode != Mode::Check) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("fsck.vexfs: cannot open {name}: {e}");
            return FsckStatus::OPERATIONAL;
        }
    };
    let (out, _) = match fsck::run(dev, mode) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fsck.vexfs: {name}: {e}");
            return FsckStatus::OPERATIONAL;
        }
    };
    let sb = &out.report.sb;
    if cli.verbose {
        println!(
            "{name}: vexfs format v{}, UUID {}, label '{}', {} blocks, {} inodes",
            sb.format_version,
            format_uuid(&sb.uuid),
            sb.label_str(),
            sb.block_count,
            sb.inode_count
        );
    }
    for note in &out.notes {
        println!("{name}: {note}.");
    }
    if let (Some(r), true) = (&out.replay, out.replay_applied) {
        if r.applied > 0 {
            println!(
                "{name}: journal: {} block image(s) of {} transaction(s) written home.",
                r.applied, r.scan.transactions
            );
        }
    }
    for (p, &fixed) in out.report.problems.iter().zip(&out.fixed) {
        let what = match (&p.fix, fixed, mode) {
            (_, true, _) => "Fixed.",
            (None, _, _) => "Cannot be fixed by fsck.vexfs.",
            (Some(_), false, Mode::Check) => "Not fixed (run fsck.vexfs -y).",
            (Some(_), false, _) => "Not fixed in preen mode (run fsck.vexfs -y).",
        };
        println!("{name}: {p}. {what}");
    }
    let rebuild_left = out.report.problems.iter().zip(&out.fixed).any(|(p, &f)| p.fix == Some(Fix::RebuildGraph) && !f);
    if rebuild_left {
        println!("{name}: graph damaged: rebuild with -y (the HNSW graph is rebuilt from the vectors).");
    }
    if let Some(r) = out.rebuilt {
        println!(
            "{name}: HNSW graph rebuilt from the vectors: {} vector(s) linked again in their slots, {} tombstone(s) dropped.",
            r.live, r.dropped
        );
    }
    let changed = out.fixed.iter().any(|&f| f);
    if changed {
        for p in &out.remaining {
            println!("{name}: after repair: {p}");
        }
    }
    let r = &out.report;
    let usage =
        format!("{}/{} inodes, {}/{} blocks used", r.inodes_used, sb.inode_count, r.blocks_used, sb.block_count);
    let n = r.problems.len();
    let status = if n == 0 {
        "clean".to_string()
    } else if out.remaining.is_empty() {
        format!("{n} problem(s) found, all fixed")
    } else if changed {
        format!("{n} problem(s) found, {} left uncorrected", out.remaining.len())
    } else {
        format!("{n} problem(s) found, not fixed")
    };
    println!("{name}: {usage}, {status}");
    if mode == Mode::Preen && !out.remaining.is_empty() {
        println!("{name}: UNEXPECTED INCONSISTENCY; RUN fsck.vexfs MANUALLY (without -p).");
    }
    out.status()
}
