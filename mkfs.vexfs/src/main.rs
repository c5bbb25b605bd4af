//! mkfs.vexfs: creates a vexfs filesystem on a block device or an image file, and with
//! `--import` populates it from an `.fvecs` file (`vexfs_image::bulk`), as `mke2fs -d` does
//! from a directory.
//!
//! Exit codes as mke2fs ([`vexfs_image::exit::MKFS`]): 0 success, 1 any failure (including
//! usage errors).

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, IsTerminal, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vexfs_image::bulk::{self, ImportOpts, Phase, SlotOrder};
use vexfs_image::exit::MKFS;
use vexfs_image::mkfs::FormatOpts;
use vexfs_image::pq_train;
use vexfs_image::show::{device_map_table, encode_label, format_uuid, human_bytes, parse_uuid};
use vexfs_image::texts::Texts;
use vexfs_image::vecfile::Fvecs;
use vexfs_image::vexfs_core::embed::{min_journal_blocks, worst_step_blocks};
use vexfs_image::vexfs_core::format::layout::{MkfsParams, DEFAULT_EF_CONSTRUCTION, DEFAULT_M, NODE_RECORDS_DEFAULT_M};
use vexfs_image::vexfs_core::format::superblock::{
    node_record_size, Metric, Region, Superblock, FEATURE_INCOMPAT_DIR_INDEX, FORMAT_VERSION, MAGIC,
};
use vexfs_image::vexfs_core::format::BLOCK_SIZE;
use vexfs_image::vexfs_core::io::BlockDevice;
use vexfs_image::vexfs_core::pq;
use vexfs_image::vexfs_core::sq8;
use vexfs_image::writer::Writer;
use vexfs_image::{mkfs, FileDevice, Image, ReadCache};

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
    /// Journal size in blocks (default: 1/16 of the device, 1024..=65536, at most 1/4 of it).
    #[arg(long, value_name = "N")]
    journal_blocks: Option<u64>,
    /// Vector slots (default: what fits in a quarter of the device).
    #[arg(long, value_name = "N")]
    vectors: Option<u64>,
    /// Vector dimension (float32 components per embedding); with --import, that of the file
    /// by default.
    #[arg(long, value_name = "N", required_unless_present = "import")]
    dim: Option<u32>,
    /// Distance metric of the vectors.
    #[arg(long, value_enum, required_unless_present = "resume")]
    metric: Option<MetricArg>,
    /// Populate the new filesystem from VECTORS.fvecs: row i becomes the file DIR/i (see
    /// --import-dir) with row i as its embedding, every vector linked into the HNSW graph, as
    /// `vexctl import` and the index worker would do on the mounted filesystem. The default
    /// vector slots and inodes grow to hold every row, and a quarter more.
    #[arg(long, value_name = "VECTORS.fvecs")]
    import: Option<PathBuf>,
    /// With --import: passages, one JSON object per line; the "text" of line i is the content
    /// of file i (without this option the files are empty).
    #[arg(long, value_name = "PASSAGES.jsonl", requires = "import")]
    texts: Option<PathBuf>,
    /// With --import: the directory of the files, below the root (default: the root itself).
    #[arg(long, value_name = "NAME", requires = "import")]
    import_dir: Option<String>,
    /// With --import: rows per journal sync while files are made; an interrupted import loses
    /// at most this many and goes on with --resume (while vectors are linked: a sync every 30
    /// s, and what was not linked is linked by --resume).
    #[arg(long, value_name = "N", default_value_t = bulk::DEFAULT_BATCH, requires = "import",
          value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// With --import: threads that plan the HNSW inserts (the default, 1, links one vector
    /// at a time as the kernel's index worker does, in row order). With 2 or more, batches of 64 vectors
    /// are planned at once over the graph and linked in order, each batch's vectors
    /// candidates of each other; the image is the same for every THREADS from 2 up.
    #[arg(short = 'j', long = "jobs", value_name = "THREADS", default_value_t = 1, requires = "import",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: u32,
    /// With --import: where the rows' vectors go in the vector regions. locality (the
    /// default): near rows share 4 KiB blocks (a PCA tree over all the rows, read into memory
    /// first; the vectors are still linked into the graph in row order), so a
    /// search under a memory budget (mount option index_mem=) reads fewer blocks. rows: row i
    /// in the i-th free slot, as `vexctl import` stores them. The files hold the same either
    /// way (made in slot order: their inode numbers differ); give --resume the order the
    /// import began with.
    #[arg(long, value_enum, value_name = "locality|rows", default_value = "locality", requires = "import")]
    slot_order: SlotOrderArg,
    /// With --import into a filesystem without codes (--quant none): the distances the HNSW
    /// graph is built on. float: the vectors' own. sq8: codes of one signed byte per
    /// component held in memory for the build only (the scale the largest |component| of the
    /// rows sets, as --quant sq8's; a quarter of the vectors' size more memory), whose integer
    /// distances the links' searches and neighbour selection compare, as a filesystem with
    /// --quant sq8 is built on its codes: a faster build (about 1.6x at 384-d), a graph as good
    /// on real embeddings (bench/REPORT.md, "Bulk build"); the image, its searches and the
    /// distances they return stay float32. auto (the default): sq8 when the codes keep the
    /// rows' neighbours, else float: in a sample of the rows (4,096, 256 of them as queries),
    /// the codes' distances must find at least 0.95 of each query's 10 nearest by the float
    /// distances (vectors whose components differ much in magnitude code the small ones
    /// coarsely). sq8 is only for --quant none; auto with --quant sq8 or pq, or on a
    /// filesystem with codes (--resume), leaves the build to the filesystem's distances.
    #[arg(long, value_enum, value_name = "auto|float|sq8", default_value = "auto", requires = "import")]
    build_on: BuildOnArg,
    /// With --import: do not format; go on with an interrupted import into the vexfs on
    /// DEVICE|FILE (rows whose file already carries an embedding are skipped).
    #[arg(long, requires = "import", conflicts_with_all = ["size", "dry_run"])]
    resume: bool,
    /// HNSW neighbours per node above level 0 (2M at level 0). Default: 16; with node records
    /// (--quant pq and the records layout), 32 where such a record fits in a block (up to 952
    /// dimensions): the record block a search reads holds the denser links at no extra read.
    #[arg(long = "hnsw-m", value_name = "M")]
    hnsw_m: Option<u32>,
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
    /// Vector quantisation for the HNSW traversal. sq8 (the incompat feature sq8): every
    /// vector also keeps a code of one signed byte per component, searches walk the graph on
    /// the codes' integer distances and re-rank their candidates with the float vectors
    /// (docs/FORMAT.md, "Vector codes"). pq or pq:M (the incompat feature pq): every vector
    /// also keeps a product-quantisation code of M bytes (M sub-quantisers of 256 centroids,
    /// trained here on --train's vectors, else --import's; default M: the largest divisor of
    /// the dimension at most dimension / 4), searches walk the graph on the codes' table
    /// distances and re-rank with the float vectors ("PQ codes"); the graph is built on the
    /// float vectors. A kernel without the feature refuses the filesystem.
    #[arg(long, value_name = "none|sq8|pq[:M]", default_value = "none", value_parser = parse_quant)]
    quant: QuantArg,
    /// With --quant sq8: the scale, codes = round(x * 2^SHIFT) clamped to +-127. Default:
    /// the largest SHIFT that codes the largest |component| of --train's vectors, else of
    /// --import's, without clamping; with neither, 7 (components of unit-norm vectors).
    #[arg(long, value_name = "SHIFT", allow_negative_numbers = true, conflicts_with = "train",
          value_parser = clap::value_parser!(i32).range(sq8::MIN_SHIFT as i64..=sq8::MAX_SHIFT as i64))]
    sq8_shift: Option<i32>,
    /// With --quant sq8: vectors like those the filesystem will hold (.fvecs, a sample is
    /// enough), whose largest |component| sets the scale (see --sq8-shift); for a filesystem
    /// that will be filled through the kernel rather than by --import. With --quant pq: the
    /// vectors the codebook is trained on (at most 16,384 rows of it, evenly spaced).
    #[arg(long, value_name = "VECTORS.fvecs")]
    train: Option<PathBuf>,
    /// With --quant pq: where the float vectors and the level-0 HNSW links lie. records (the
    /// incompat feature node_records, DiskANN's layout): each vector and its links together in
    /// one record that never crosses a block, so a search that expands a node reads one block,
    /// which also gives the node's exact distance, and re-ranks every candidate it expanded
    /// (docs/FORMAT.md, "Node records"); for indexes larger than their memory budget. split:
    /// vectors and links in their own regions (denser links; a search re-ranks its 10k
    /// nearest candidates by code from the vector region). Default: records when a record fits
    /// in a block (up to 952 dimensions at the default m of 32, 984 at m 16), else split.
    #[arg(long, value_enum, value_name = "records|split")]
    pq_layout: Option<PqLayout>,
    /// Block device or image file.
    #[arg(value_name = "DEVICE|FILE")]
    device: PathBuf,
    /// Filesystem size: bytes, or with a K, M, G or T suffix (powers of 1024). Creates or
    /// resizes an image file; default: the size of the existing device or file.
    #[arg(value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
}

/// `--slot-order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SlotOrderArg {
    /// Near rows in the same blocks.
    Locality,
    /// Row order.
    Rows,
}

/// `--build-on auto` builds on SQ8 codes when, in a sample of the rows, they find at least
/// this share of each query's 10 nearest by the float distances
/// (`bulk::code_neighbour_recall`): 0.978 on pydocs-1m, 0.958 on glove-100, whose graphs built
/// so search as well as the float-built ones (bench/REPORT.md, "Bulk build").
const BUILD_ON_SQ8_MIN_RECALL: f64 = 0.95;

/// `--build-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BuildOnArg {
    /// SQ8 codes when they keep a sample's neighbours, else the floats.
    Auto,
    /// The float vectors.
    Float,
    /// Transient SQ8 codes.
    Sq8,
}

/// `--pq-layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PqLayout {
    /// Node records (vector and level-0 links together).
    Records,
    /// Vectors and links in their own regions.
    Split,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuantArg {
    /// Float vectors only.
    None,
    /// One signed byte per component.
    Sq8,
    /// Product quantisation with this many sub-quantisers (`None`: `pq::default_m`).
    Pq(Option<u32>),
}

/// `--quant`: `none`, `sq8`, `pq` or `pq:M` (M sub-quantisers, 1 to 256).
fn parse_quant(s: &str) -> Result<QuantArg, String> {
    match s {
        "none" => Ok(QuantArg::None),
        "sq8" => Ok(QuantArg::Sq8),
        "pq" => Ok(QuantArg::Pq(None)),
        _ => match s.strip_prefix("pq:").map(str::parse::<u32>) {
            Some(Ok(m)) if (1..=pq::MAX_M).contains(&m) => Ok(QuantArg::Pq(Some(m))),
            Some(_) => Err(format!("{s}: pq:M needs M from 1 to {}", pq::MAX_M)),
            None => Err(format!("{s}: none, sq8, pq or pq:M")),
        },
    }
}

/// Every how many rows of `rows` a sample of vectors takes one: at most `pq_train::MAX_TRAIN`
/// rows, evenly spaced.
fn sample_step(rows: u64) -> u64 {
    rows.div_ceil(pq_train::MAX_TRAIN as u64).max(1)
}

/// Rows of `path` to train a PQ codebook on: at most `pq_train::MAX_TRAIN`, evenly spaced
/// (every [`sample_step`]th), as one flat `rows * dim` array.
fn pq_training_rows(path: &std::path::Path, dim: u32) -> Result<Vec<f32>, String> {
    let mut v = Fvecs::open(path)?;
    if v.dim() != dim {
        return Err(format!("{}: dimension {}, the filesystem's is {dim}", path.display(), v.dim()));
    }
    let step = sample_step(v.rows());
    let mut flat = Vec::new();
    v.for_each(|i, row| {
        if i % step == 0 {
            flat.extend_from_slice(row);
        }
        Ok::<(), vexfs_image::Error>(())
    })?;
    Ok(flat)
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

/// The vectors and passages of `--import`, checked whole before anything is written.
struct ImportInput {
    vecs: Fvecs<BufReader<File>>,
    texts: Option<Texts<BufReader<File>>>,
    /// The bit pattern of the largest |component| of the vectors (`sq8::max_abs_bits`).
    max_abs_bits: u32,
    /// The rows [`pq_training_rows`] would read from the file (every [`sample_step`]th), taken
    /// in the same pass as `max_abs_bits` when a use for them is known at open: a PQ codebook
    /// without --train, --build-on auto with --quant none. Else empty.
    sample: Vec<f32>,
}

impl ImportInput {
    /// [`Self::sample`], for a filesystem of dimension `dim`. Errors: the file's dimension
    /// is not `dim` (as [`pq_training_rows`]); no sample was taken from a file with rows.
    fn sample(&self, dim: u32) -> Result<&[f32], String> {
        if self.vecs.dim() != dim {
            return Err(format!("{}: dimension {}, the filesystem's is {dim}", self.vecs.name(), self.vecs.dim()));
        }
        if self.sample.is_empty() && self.vecs.rows() > 0 {
            return Err(format!("{}: no sample of the rows was taken", self.vecs.name()));
        }
        Ok(&self.sample)
    }
}

fn open_import(cli: &Cli) -> Result<Option<ImportInput>, String> {
    let Some(path) = &cli.import else { return Ok(None) };
    let mut vecs = Fvecs::open(path)?;
    let mut max_abs_bits = 0u32;
    let wanted = matches!((cli.quant, &cli.train), (QuantArg::Pq(_), None))
        || cli.quant == QuantArg::None && cli.build_on == BuildOnArg::Auto;
    let step = sample_step(vecs.rows());
    let mut sample = Vec::new();
    vecs.for_each(|i, v| {
        max_abs_bits = v.iter().map(|x| x.to_bits() & 0x7fff_ffff).fold(max_abs_bits, u32::max);
        if wanted && i % step == 0 {
            sample.extend_from_slice(v);
        }
        Ok::<(), vexfs_image::Error>(())
    })?;
    let texts = match &cli.texts {
        Some(p) => {
            let lines = Texts::open(p)?.check_all()?;
            if lines < vecs.rows() {
                return Err(format!(
                    "{} has {lines} lines but {} has {} rows: line i holds the text of row i",
                    p.display(),
                    path.display(),
                    vecs.rows()
                ));
            }
            Some(Texts::open(p)?)
        }
        None => None,
    };
    Ok(Some(ImportInput { vecs, texts, max_abs_bits, sample }))
}

/// Runs the import into `dev`'s filesystem with a progress bar (hidden by --quiet or when
/// stderr is not a terminal) and prints what it did.
/// Blocks of the bulk loader's read cache in front of the device (`ReadCache`): 64 MiB, the
/// directory and extent-tree blocks each new file's name lookup reads again.
const IMPORT_READ_CACHE_BLOCKS: usize = 16384;

fn run_import(cli: &Cli, dev: FileDevice, mut input: ImportInput) -> Result<(), String> {
    let shown = cli.device.display();
    let img = Image::open(ReadCache::new(dev, IMPORT_READ_CACHE_BLOCKS)).map_err(|e| format!("{shown}: {e}"))?;
    let mut w = Writer::new(img).map_err(|e| format!("{shown}: {e}"))?;
    let bar = ProgressBar::new(input.vecs.rows());
    if cli.quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = |what: &str| {
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {what}, {{per_sec}}, eta {{eta}}"
        ))
        .map(|s| s.progress_chars("=> "))
        .map_err(|e| e.to_string())
    };
    bar.set_style(style("files")?);
    let links_style = style("vectors linked")?;
    let order = match cli.slot_order {
        SlotOrderArg::Locality => SlotOrder::Locality,
        SlotOrderArg::Rows => SlotOrder::Rows,
    };
    let shift = sq8::shift_for_max(input.max_abs_bits);
    let say = |what: String| {
        if !cli.quiet {
            println!("Build:    {what}");
        }
    };
    let sb = w.image().sb().clone();
    let build_codes = match cli.build_on {
        _ if sb.has_codes() => None,
        BuildOnArg::Float => None,
        BuildOnArg::Sq8 => {
            say(format!("the graph on SQ8 codes at scale 2^{shift} held in memory (--build-on sq8)"));
            Some(shift)
        }
        BuildOnArg::Auto => {
            let rows = input.sample(sb.vec_dim)?;
            let r = bulk::code_neighbour_recall(rows, sb.vec_dim as usize, sb.vec_metric, shift);
            let on_codes = r >= BUILD_ON_SQ8_MIN_RECALL;
            let how = format!(
                "SQ8 codes at scale 2^{shift} find {r:.3} of the float distances' 10 nearest in a sample, \
                 {} {BUILD_ON_SQ8_MIN_RECALL}",
                if on_codes { "at least" } else { "under" }
            );
            if on_codes {
                say(format!("the graph on SQ8 codes held in memory (--build-on auto: {how})"));
                Some(shift)
            } else {
                say(format!("the graph on the float vectors (--build-on auto: {how})"));
                None
            }
        }
    };
    // Used: its memory back before the import.
    input.sample = Vec::new();
    let opts =
        ImportOpts { dir: cli.import_dir.clone(), batch: cli.batch, threads: cli.jobs as usize, order, build_codes };
    let mut phase = Phase::Files;
    let result = bulk::import(&mut w, &mut input.vecs, input.texts.as_mut(), &opts, |p, done, total| {
        if p != phase {
            phase = p;
            bar.set_style(links_style.clone());
            bar.set_length(total);
            bar.reset();
        }
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let st = result.map_err(|e| {
        format!("{shown}: {e}\nmkfs.vexfs: the import stopped; what was done is on the device: run the same command with --resume to go on")
    })?;
    w.commit().map_err(|e| format!("{shown}: {e}"))?;
    if !cli.quiet {
        let dir = cli.import_dir.as_deref().unwrap_or("");
        let rate = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        println!(
            "Imported {} rows into /{dir} (skipped {}, already embedded): files in {:.1} s ({:.0}/s), \
             {} vectors linked in {:.1} s ({:.0}/s); of which journal commits {:.1} s and {:.1} s.",
            st.imported,
            st.skipped,
            st.files_secs,
            rate(st.imported, st.files_secs),
            st.linked,
            st.links_secs,
            rate(st.linked, st.links_secs),
            st.files_commit_secs,
            st.links_commit_secs
        );
    }
    Ok(())
}

fn run(cli: &Cli) -> Result<(), String> {
    let shown = cli.device.display();
    let input = open_import(cli)?;
    if cli.resume {
        let Some(input) = input else { return Err("--resume needs --import".into()) };
        let dev = FileDevice::open(&cli.device, true).map_err(|e| format!("{shown}: {e}"))?;
        return run_import(cli, dev, input);
    }
    let dim = match (cli.dim, &input) {
        (Some(d), _) => d,
        (None, Some(i)) => i.vecs.dim(),
        (None, None) => return Err("--dim is required".into()),
    };
    let metric = cli.metric.ok_or("--metric is required")?;
    let rows = input.as_ref().map_or(0, |i| i.vecs.rows());
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
    // Node records wanted (PQ, not the split layout): a denser default graph where it fits.
    let records_wanted = matches!(cli.quant, QuantArg::Pq(_)) && cli.pq_layout != Some(PqLayout::Split);
    let record_fits = |m: u32| node_record_size(dim, m) <= BLOCK_SIZE as u64;
    let hnsw_m = match cli.hnsw_m {
        Some(m) => m,
        None if records_wanted && record_fits(NODE_RECORDS_DEFAULT_M) => NODE_RECORDS_DEFAULT_M,
        None => DEFAULT_M,
    };
    let mut params = MkfsParams {
        block_count: bytes / BLOCK_SIZE as u64,
        inode_count: cli.inodes,
        journal_blocks: cli.journal_blocks,
        vec_capacity: cli.vectors,
        dim,
        metric: metric.into(),
        m: hnsw_m,
        ef_construction: cli.ef_construction,
        uuid,
        label,
        now: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        seed: match cli.seed {
            Some(s) => s,
            None => u64::from_le_bytes(random_bytes()?),
        },
    };
    let trained = match &cli.train {
        Some(p) => {
            let mut v = Fvecs::open(p)?;
            if v.dim() != dim {
                return Err(format!("{}: dimension {}, the filesystem's is {dim}", p.display(), v.dim()));
            }
            let mut max = 0u32;
            v.for_each(|_, row| {
                max = row.iter().map(|x| x.to_bits() & 0x7fff_ffff).fold(max, u32::max);
                Ok::<(), vexfs_image::Error>(())
            })?;
            Some(max)
        }
        None => input.as_ref().map(|i| i.max_abs_bits),
    };
    if cli.build_on == BuildOnArg::Sq8 && cli.quant != QuantArg::None {
        return Err(
            "--build-on sq8 is for --quant none (with sq8 the graph is built on its codes, with pq on the floats)"
                .into(),
        );
    }
    let sq8_shift = match (cli.quant, cli.sq8_shift, trained) {
        (QuantArg::None, None, _) if cli.train.is_none() => None,
        (QuantArg::None, ..) => return Err("--sq8-shift and --train need --quant sq8 or pq".into()),
        (QuantArg::Pq(_), Some(_), _) => return Err("--sq8-shift needs --quant sq8".into()),
        (QuantArg::Pq(_), ..) => None,
        (QuantArg::Sq8, Some(s), _) => Some(s),
        (QuantArg::Sq8, None, Some(max)) => Some(sq8::shift_for_max(max)),
        (QuantArg::Sq8, None, None) => Some(sq8::DEFAULT_SHIFT),
    };
    let pq_codebook = match cli.quant {
        QuantArg::Pq(m) => {
            let m = m.unwrap_or_else(|| pq::default_m(dim));
            if !pq::valid_m(dim, m) {
                return Err(format!(
                    "--quant pq:{m}: {m} sub-quantisers must divide the dimension {dim} (at most {} components each)",
                    pq::MAX_DSUB
                ));
            }
            // --train's rows, else those of --import sampled as it was opened.
            let trained;
            let rows = match (&cli.train, &input) {
                (Some(path), _) => {
                    trained = pq_training_rows(path, dim)?;
                    &trained[..]
                }
                (None, Some(i)) => i.sample(dim)?,
                (None, None) => {
                    return Err("--quant pq trains its codebook on vectors: give --train or --import".into())
                }
            };
            let t0 = std::time::Instant::now();
            let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let centroids = pq_train::train(rows, dim as usize, m as usize, params.seed, threads)
                .map_err(|e| format!("training the PQ codebook: {e}"))?;
            if !cli.quiet {
                println!(
                    "PQ:       codebook of {m} x 256 centroids trained on {} rows in {:.1} s",
                    rows.len() / dim as usize,
                    t0.elapsed().as_secs_f64()
                );
            }
            Some(mkfs::PqCodebook { m, centroids: centroids.into() })
        }
        _ => None,
    };
    let fits = record_fits(hnsw_m);
    if cli.pq_layout.is_some() && !matches!(cli.quant, QuantArg::Pq(_)) {
        return Err("--pq-layout needs --quant pq".into());
    }
    let node_records = match cli.pq_layout {
        Some(PqLayout::Records) if !fits => {
            return Err(format!(
                "--pq-layout records: a {dim}-d vector and its level-0 links at m {} take {} bytes, more than a block",
                hnsw_m,
                node_record_size(dim, hnsw_m)
            ))
        }
        Some(l) => l == PqLayout::Records,
        None => fits,
    };
    let mut opts = FormatOpts { dir_index: !cli.no_dir_index, sq8_shift, pq: pq_codebook, node_records };
    // The features are set on the superblock the journal's floor is computed from.
    let lay = |p: &MkfsParams, opts: &FormatOpts| mkfs::layout_with(p, opts);
    let mut sb =
        lay(&params, &opts).map_err(|e| format!("cannot lay out {} bytes with these parameters: {e}", bytes))?;
    // An import needs a slot per row and an inode per row (plus the root and its directory);
    // a grown default leaves a quarter more (at least 1,024) for the files that come after.
    let inodes_needed = rows.saturating_add(2);
    let spare = |n: u64| n.saturating_add((n / 4).max(1024));
    if cli.vectors.is_none() && sb.vec_capacity < rows {
        params.vec_capacity = Some(spare(rows));
    }
    if cli.inodes.is_none() && u64::from(sb.inode_count) < inodes_needed {
        let n = spare(inodes_needed).min(u64::from(u32::MAX));
        params.inode_count = Some(u32::try_from(n).map_err(|_| format!("{rows} rows: too many files"))?);
    }
    if params.vec_capacity != cli.vectors || params.inode_count != cli.inodes {
        sb = lay(&params, &opts)
            .map_err(|e| format!("{bytes} bytes cannot hold the {rows} rows to import ({e}): give a larger SIZE"))?;
    }
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
                let without = FormatOpts { dir_index: false, ..opts.clone() };
                let s = lay(&params, &without).map_err(|e| format!("cannot lay out {} bytes: {e}", bytes))?;
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
        match lay(&grown, &opts) {
            Ok(s) => {
                params = grown;
                sb = s;
            }
            Err(_) if cli.vectors.is_none() && sb.vec_capacity > 64 => {
                params.vec_capacity = Some(sb.vec_capacity / 2);
                sb = lay(&params, &opts)
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
    if sb.vec_capacity < rows || u64::from(sb.inode_count) < inodes_needed {
        return Err(format!(
            "{bytes} bytes hold {} vector slots and {} inodes, too few for the {rows} rows to import: \
             give a larger SIZE (or more --vectors and --inodes)",
            sb.vec_capacity, sb.inode_count
        ));
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
    if let Some(input) = input {
        run_import(cli, dev, input)?;
    }
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
    if sb.has_sq8() {
        println!("Codes:    sq8, one byte per component at scale 2^{} (searches walk the codes)", sb.sq8_shift);
    }
    if sb.has_pq() {
        println!("Codes:    pq, {} bytes per vector (searches walk the codes)", sb.pq_m);
        if sb.has_node_records() {
            println!("Layout:   node records (each vector with its level-0 links)");
        }
    }
    if cli.verbose {
        println!(
            "Vector stride {} bytes, HNSW max level {}, seed {:#x}",
            sb.vec_stride, sb.hnsw_max_level, sb.hnsw_seed
        );
    }
    print!("{}", device_map_table(sb));
}
