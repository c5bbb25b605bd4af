//! mkfs.vexfs: creates a vexfs filesystem on a block device or an image file.
//!
//! Exit codes as mke2fs ([`vexfs_image::exit::MKFS`]): 0 success, 1 any failure (including
//! usage errors).

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use vexfs_image::exit::MKFS;
use vexfs_image::mkfs::FormatOpts;
use vexfs_image::show::{device_map_table, encode_label, format_uuid, human_bytes, parse_uuid};
use vexfs_image::vexfs_core::embed::{min_journal_blocks, worst_step_blocks};
use vexfs_image::vexfs_core::format::layout::{MkfsParams, DEFAULT_EF_CONSTRUCTION, DEFAULT_M};
use vexfs_image::vexfs_core::format::superblock::{
    Metric, Region, Superblock, FEATURE_INCOMPAT_DIR_INDEX, FORMAT_VERSION, MAGIC,
};
use vexfs_image::vexfs_core::format::BLOCK_SIZE;
use vexfs_image::vexfs_core::io::BlockDevice;
use vexfs_image::{mkfs, FileDevice};

/// Create a vexfs filesystem (files with vector embeddings) on DEVICE or image FILE.
#[derive(Parser, Debug)]
#[command(
    name = "mkfs.vexfs",
    bin_name = "mkfs.vexfs",
    version = concat!(env!("CARGO_PKG_VERSION"), " (format v3)"),
    after_help = "Exit status (as mke2fs): 0 success, 1 failure (a bad command line included)."
)]
struct Cli {
    /// Overwrite an existing filesystem.
    #[arg(short, long)]
    force: bool,
    /// Print the layout and write nothing.
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
    /// Print more detail.
    #[arg(short, long)]
    verbose: bool,
    /// Volume label (at most 31 bytes).
    #[arg(short = 'L', long, value_name = "LABEL")]
    label: Option<String>,
    /// Filesystem UUID (default: random).
    #[arg(short = 'U', long, value_name = "UUID")]
    uuid: Option<String>,
    /// Number of inodes (default: one per 16 KiB, rounded up to whole inode-table blocks).
    #[arg(short = 'N', long = "inodes", value_name = "INODES")]
    inodes: Option<u32>,
    /// Journal size in blocks (default: 1/16 of the device, 1024..=32768, at most 1/4 of it).
    #[arg(long, value_name = "N")]
    journal_blocks: Option<u64>,
    /// Vector slots (default: what fits in a quarter of the device).
    #[arg(long, value_name = "N")]
    vectors: Option<u64>,
    /// Vector dimension (float32 components per embedding).
    #[arg(long, value_name = "N")]
    dim: u32,
    /// Distance metric of the vectors.
    #[arg(long, value_enum)]
    metric: MetricArg,
    /// HNSW neighbours per node above level 0.
    #[arg(long = "hnsw-m", value_name = "M", default_value_t = DEFAULT_M)]
    hnsw_m: u32,
    /// HNSW candidate list size while inserting.
    #[arg(long, value_name = "E", default_value_t = DEFAULT_EF_CONSTRUCTION)]
    ef_construction: u32,
    /// Seed of the HNSW level generator (default: random). The same data inserted in the same
    /// order into images made with the same seed gives the same graph.
    #[arg(long, value_name = "SEED")]
    seed: Option<u64>,
    /// Indexed directories (the incompat feature dir_index): a directory whose one block is
    /// full becomes a hash-indexed one. On by default, unless an explicit --journal-blocks is
    /// too small for a bucket split (then off, with a note); with this flag such a journal is
    /// an error instead. A kernel without the feature refuses the filesystem.
    #[arg(long, conflicts_with = "no_dir_index")]
    dir_index: bool,
    /// Linear directories only (no dir_index feature): the filesystem mounts on kernels that
    /// predate indexed directories.
    #[arg(long)]
    no_dir_index: bool,
    /// Block device or image file.
    #[arg(value_name = "DEVICE|FILE")]
    device: PathBuf,
    /// Filesystem size: bytes, or with a K, M, G or T suffix (powers of 1024). Creates or
    /// resizes an image file; default: the size of the existing device or file.
    #[arg(value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MetricArg {
    L2,
    Cosine,
    Ip,
}

impl From<MetricArg> for Metric {
    fn from(m: MetricArg) -> Metric {
        match m {
            MetricArg::L2 => Metric::L2,
            MetricArg::Cosine => Metric::Cosine,
            MetricArg::Ip => Metric::InnerProduct,
        }
    }
}

/// Parses `4096`, `64K`, `512M`, `1G`, `2T` (case-insensitive; powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown size suffix '{c}' (use K, M, G or T)")),
            };
            (&s[..i], shift)
        }
        _ => (s, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("invalid size '{s}'"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("size '{s}' is too large"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(MKFS.after_parse(e.use_stderr()));
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::from(MKFS.ok),
        Err(msg) => {
            eprintln!("mkfs.vexfs: {msg}");
            ExitCode::from(MKFS.failed)
        }
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(b)
}

/// What is at the target path.
enum Target {
    Missing,
    File(u64),
    BlockDevice(u64),
}

fn inspect_target(path: &Path) -> Result<Target, String> {
    let shown = path.display();
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::Missing),
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    if meta.file_type().is_block_device() {
        let dev = FileDevice::open(path, false).map_err(|e| format!("{shown}: {e}"))?;
        Ok(Target::BlockDevice(dev.block_count() * BLOCK_SIZE as u64))
    } else if meta.is_file() {
        Ok(Target::File(meta.len()))
    } else {
        Err(format!("{shown} is neither a block device nor a regular file"))
    }
}

/// Names the filesystem already on `path`, if any: vexfs (magic at byte 0) or ext2/3/4
/// (0xEF53 at byte 1080).
fn existing_filesystem(path: &Path) -> Result<Option<String>, String> {
    let mut head = Vec::with_capacity(BLOCK_SIZE);
    File::open(path)
        .and_then(|f| f.take(BLOCK_SIZE as u64).read_to_end(&mut head))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if head.len() >= 4 && u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == MAGIC {
        let label = Superblock::decode(&head).map(|sb| sb.label_str().to_string()).unwrap_or_default();
        return Ok(Some(if label.is_empty() {
            "a vexfs filesystem".into()
        } else {
            format!("a vexfs filesystem (label '{label}')")
        }));
    }
    if head.len() >= 1082 && u16::from_le_bytes([head[1080], head[1081]]) == 0xEF53 {
        return Ok(Some("an ext2/3/4 filesystem".into()));
    }
    Ok(None)
}

fn run(cli: &Cli) -> Result<(), String> {
    let shown = cli.device.display();
    let label = encode_label(cli.label.as_deref().unwrap_or(""))?;
    let uuid = match cli.uuid.as_deref() {
        None | Some("random") => {
            let mut u: [u8; 16] = random_bytes()?;
            u[6] = (u[6] & 0x0f) | 0x40; // version 4
            u[8] = (u[8] & 0x3f) | 0x80; // RFC 4122 variant
            u
        }
        Some(s) => parse_uuid(s)?,
    };
    let target = inspect_target(&cli.device)?;
    let bytes = match (&target, cli.size) {
        (Target::Missing, None) => return Err(format!("{shown} does not exist; give a SIZE to create an image file")),
        (Target::BlockDevice(dev), Some(size)) if size > *dev => {
            return Err(format!("{shown} has {dev} bytes, less than the requested {size}"))
        }
        (_, Some(size)) => size,
        (Target::File(n) | Target::BlockDevice(n), None) => *n,
    };
    if !cli.force && !matches!(target, Target::Missing) {
        if let Some(what) = existing_filesystem(&cli.device)? {
            return Err(format!("{shown} contains {what}; use -f to overwrite it"));
        }
    }
    let mut params = MkfsParams {
        block_count: bytes / BLOCK_SIZE as u64,
        inode_count: cli.inodes,
        journal_blocks: cli.journal_blocks,
        vec_capacity: cli.vectors,
        dim: cli.dim,
        metric: cli.metric.into(),
        m: cli.hnsw_m,
        ef_construction: cli.ef_construction,
        uuid,
        label,
        now: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        seed: match cli.seed {
            Some(s) => s,
            None => u64::from_le_bytes(random_bytes()?),
        },
    };
    let mut opts = FormatOpts { dir_index: !cli.no_dir_index };
    // The features are set on the superblock the journal's floor is computed from.
    let lay = |p: &MkfsParams, opts: FormatOpts| mkfs::layout_with(p, opts);
    let mut sb =
        lay(&params, opts).map_err(|e| format!("cannot lay out {} bytes with these parameters: {e}", bytes))?;
    // The kernel refuses a read-write mount of a journal three quarters of which cannot hold the
    // filesystem's largest transaction step (docs/DURABILITY.md): grow the default journal to
    // that floor, refuse a smaller --journal-blocks; when the device cannot hold it and the
    // vector capacity is the default, halve the capacity (which bounds the step) until it can.
    loop {
        let need = journal_floor(&sb);
        if sb.region(Region::Journal).blocks >= need {
            break;
        }
        let worst = worst_step_blocks(&sb);
        if let Some(n) = cli.journal_blocks {
            if opts.dir_index && !cli.dir_index {
                // The default gives way to an explicit journal: linear directories only.
                let without = FormatOpts { dir_index: false };
                let s = lay(&params, without).map_err(|e| format!("cannot lay out {} bytes: {e}", bytes))?;
                if s.region(Region::Journal).blocks >= journal_floor(&s) {
                    if !cli.quiet {
                        eprintln!(
                            "mkfs.vexfs: note: --journal-blocks {n} cannot hold a directory bucket split: no dir_index"
                        );
                    }
                    opts = without;
                    sb = s;
                    continue;
                }
            }
            let with = if opts.dir_index { " (the split of a directory bucket counted)" } else { "" };
            return Err(format!(
                "--journal-blocks {n} is too small: this filesystem's largest transaction step{with} takes \
                 {worst} blocks and must fit three quarters of the log, so the journal needs at least {need} blocks"
            ));
        }
        let grown = MkfsParams { journal_blocks: Some(need), ..params.clone() };
        match lay(&grown, opts) {
            Ok(s) => {
                params = grown;
                sb = s;
            }
            Err(_) if cli.vectors.is_none() && sb.vec_capacity > 64 => {
                params.vec_capacity = Some(sb.vec_capacity / 2);
                sb = lay(&params, opts)
                    .map_err(|e| format!("cannot lay out {} bytes with these parameters: {e}", bytes))?;
            }
            Err(e) => {
                return Err(format!(
                    "{shown}: {bytes} bytes cannot hold the journal this filesystem needs: {need} blocks ({}), \
                     for its largest transaction step of {worst} blocks, with the other regions ({e}); \
                     use a larger device or fewer --vectors",
                    human_bytes(need * BLOCK_SIZE as u64)
                ))
            }
        }
    }
    if !cli.quiet {
        print_summary(cli, &sb);
    }
    if cli.dry_run {
        if !cli.quiet {
            println!("Dry run (-n): nothing written.");
        }
        return Ok(());
    }
    let (mut dev, zeroed) = match target {
        Target::BlockDevice(_) => (FileDevice::open(&cli.device, true).map_err(|e| format!("{shown}: {e}"))?, false),
        Target::File(_) | Target::Missing => {
            // Truncating to zero and back leaves a sparse file that reads as zeros.
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&cli.device)
                .and_then(|f| f.set_len(bytes).map(|()| f))
                .map_err(|e| format!("{shown}: {e}"))?;
            (FileDevice::from_file(f).map_err(|e| format!("{shown}: {e}"))?, true)
        }
    };
    if cli.verbose && !cli.quiet {
        println!("Writing metadata{}...", if zeroed { "" } else { " (zeroing the metadata regions)" });
    }
    mkfs::format_with(&mut dev, &params, zeroed, opts).map_err(|e| format!("{shown}: {e}"))?;
    if !cli.quiet {
        println!("Done: {shown} holds vexfs format v{FORMAT_VERSION}.");
    }
    Ok(())
}

/// Journal blocks a filesystem laid out as `sb` needs (`core::embed::min_journal_blocks`).
fn journal_floor(sb: &Superblock) -> u64 {
    min_journal_blocks(sb)
}

fn print_summary(cli: &Cli, sb: &Superblock) {
    let bytes = sb.block_count * BLOCK_SIZE as u64;
    println!(
        "Creating vexfs on {}: {} blocks of {BLOCK_SIZE} bytes ({})",
        cli.device.display(),
        sb.block_count,
        human_bytes(bytes)
    );
    println!("UUID:     {}", format_uuid(&sb.uuid));
    if !sb.label_str().is_empty() {
        println!("Label:    {}", sb.label_str());
    }
    println!("Inodes:   {}", sb.inode_count);
    let metric = sb.metric().map(|m| m.name()).unwrap_or("?");
    println!("Vectors:  {} slots of dimension {}, metric {metric}", sb.vec_capacity, sb.vec_dim);
    println!("HNSW:     m {}, ef_construction {}", sb.hnsw_m, sb.hnsw_ef_construction);
    if sb.feature_incompat & FEATURE_INCOMPAT_DIR_INDEX != 0 {
        println!("Features: dir_index (indexed directories)");
    }
    if cli.verbose {
        println!(
            "Vector stride {} bytes, HNSW max level {}, seed {:#x}",
            sb.vec_stride, sb.hnsw_max_level, sb.hnsw_seed
        );
    }
    print!("{}", device_map_table(sb));
}
