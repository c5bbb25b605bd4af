//! `mutate_image`: the structure-aware image fuzzer of the guest test
//! tests/guest/090-fuzz-images.sh (issue 8, item 2).
//!
//! `mutate_image base OUT [--queries Q.fvecs] [--regressions | --pq]` writes a populated base image
//! with the offline writer (the kernel's own format and index code): files with one extent,
//! with an extent block and with holes, nested and two-block directories, a symlink, hard
//! links, files with up to 4 embeddings (inline ids) and with a vector-id block, tombstones and
//! pending vectors; and the format v3 structures (an extent tree of depth 3, FIFOs, sockets
//! and devices, xattr blocks with POSIX ACLs). `--regressions` leaves the v3 structures out:
//! the base guest 090's listed regressions were found over (`testkit::mutate::build_base`).
//! `--pq` keeps PQ codes in node records instead of SQ8 codes (`build_base_pq`): its mutants
//! also hit the codebook, the PQ codes and the superblock's PQ fields.
//! With `--queries` it also writes a few query vectors of the image's dimension (`.fvecs`).
//!
//! `mutate_image gen BASE --seed S --index I --out OUT` writes mutant `I` of seed `S`: a copy of
//! BASE with 1 to 3 mutations (`--mutations K` fixes the number) INSIDE its structures: an
//! inode's fields, a dirent's fields or name, a directory, extent or vector-id block's header
//! and counts, an extent, a vector-map entry, an HNSW level-0 or upper record, the HNSW header,
//! a vector's components, a bitmap bit, the journal superblock, a superblock field. Values are
//! chosen to hurt (0, 1, the largest, off by one, another valid inode, block or slot number,
//! the structure itself or its parent), and every checksum is recomputed with core's own
//! encoders and sealing functions (`Inode::encode`, `seal_header`, `MapEntry::encode`,
//! `HnswHeader::encode`, `Superblock::encode`), so the mutation reaches the code behind the
//! checksum. It prints one line, `mutant S/I: what; what`, from which the same bytes are made
//! again (the choice depends only on BASE, S and I: a failure replays from the line).
//!
//! `mutate_image targets BASE` prints how many structures of each kind BASE offers.

use clap::{Parser, Subcommand};
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use vexfs_image::device::MemDevice;
use vexfs_image::vexfs_core::io::BlockDevice;
use vexfs_image::Image;
use vexfs_testkit::mutate::{
    build_base, build_base_pq, build_base_v3, catalog, err, mutate, queries_fvecs, summary, Res, Rng,
};

#[derive(Parser)]
#[command(about = "Structure-aware mutations of a vexfs image, checksums recomputed (the fuzz test's images)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes the populated base image OUT (8 MiB by default).
    Base {
        /// The image file to write (created or truncated).
        out: PathBuf,
        /// Blocks of the image.
        #[arg(long, default_value_t = 2048)]
        blocks: u64,
        /// Also write query vectors of the image's dimension here (.fvecs, 8 rows).
        #[arg(long)]
        queries: Option<PathBuf>,
        /// The base of guest 090's regressions: no format v3 structures.
        #[arg(long, conflicts_with = "pq")]
        regressions: bool,
        /// PQ codes in node records (the features PQ and NODE_RECORDS) instead of SQ8 codes.
        #[arg(long)]
        pq: bool,
    },
    /// Writes mutant INDEX of SEED of BASE to OUT and prints what was mutated.
    Gen {
        /// The base image (read only).
        base: PathBuf,
        /// The run's seed.
        #[arg(long)]
        seed: u64,
        /// Which mutant of the seed.
        #[arg(long)]
        index: u64,
        /// The mutated image to write.
        #[arg(long)]
        out: PathBuf,
        /// Mutations per image (default: 1 to 3, chosen by the seed).
        #[arg(long)]
        mutations: Option<u32>,
    },
    /// Prints how many structures of each kind BASE offers to the mutations.
    Targets {
        /// The base image.
        base: PathBuf,
    },
}

fn main() -> ExitCode {
    let r = match Cli::parse().cmd {
        Cmd::Base { out, blocks, queries, regressions, pq } => {
            make_base(&out, blocks, queries.as_ref(), regressions, pq)
        }
        Cmd::Gen { base, seed, index, out, mutations } => gen(&base, seed, index, &out, mutations),
        Cmd::Targets { base } => targets(&base),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mutate_image: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The base image: see the module's docs.
fn make_base(out: &PathBuf, blocks: u64, queries: Option<&PathBuf>, regressions: bool, pq: bool) -> Res<()> {
    let bytes = if regressions {
        build_base(blocks)?
    } else if pq {
        build_base_pq(blocks)?
    } else {
        build_base_v3(blocks)?
    };
    fs::write(out, &bytes).map_err(err("writing the base image"))?;
    if let Some(q) = queries {
        let img = Image::open(MemDevice { bytes }).map_err(err("open"))?;
        fs::write(q, queries_fvecs(img.sb().vec_dim)).map_err(err("writing the queries"))?;
    }
    Ok(())
}

fn open_base(path: &PathBuf) -> Res<MemDevice> {
    let bytes = fs::read(path).map_err(err("reading the base image"))?;
    if bytes.len() % 4096 != 0 || bytes.is_empty() {
        return Err(format!("{}: not whole blocks", path.display()));
    }
    Ok(MemDevice { bytes })
}

fn targets(base: &PathBuf) -> Res<()> {
    let img = Image::open(open_base(base)?).map_err(err("open"))?;
    println!("{}", summary(&catalog(&img)?));
    Ok(())
}

fn gen(base: &PathBuf, seed: u64, index: u64, out: &PathBuf, mutations: Option<u32>) -> Res<()> {
    let img = Image::open(open_base(base)?).map_err(err("open"))?;
    let c = catalog(&img)?;
    let mut bytes = img.into_device().bytes;
    let mut rng = Rng::new(seed, index);
    let n = mutations.unwrap_or_else(|| 1 + rng.below(3) as u32);
    let log = mutate(&mut bytes, &c, &mut rng, n);
    let dev = MemDevice { bytes };
    if dev.block_count() != c.sb().block_count {
        eprintln!("mutate_image: note: base has {} blocks, its superblock {}", dev.block_count(), c.sb().block_count);
    }
    fs::write(out, &dev.bytes).map_err(err("writing the mutant"))?;
    let mut line = format!("mutant {seed}/{index}:");
    for (i, w) in log.iter().enumerate() {
        let _ = write!(line, "{} {w}", if i == 0 { "" } else { ";" });
    }
    println!("{line}");
    Ok(())
}
