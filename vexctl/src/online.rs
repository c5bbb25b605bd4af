//! Commands on a mounted vexfs, through the ioctls of `include/vexfs.h`: `import`, `set`, `get`,
//! `rm-embedding`, `search`, `stats`.
//!
//! Each opens its target read-only unless it writes, checks with statfs that the target is on a
//! vexfs before the first ioctl, and checks its inputs (dimension against STATS, finiteness,
//! ranges) before calling, so that a refusal names the bad value; an ioctl error is shown with
//! its errno name and the meaning the header documents, and what to do about it.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nix::errno::Errno;
use serde::Serialize;

use crate::abi::{
    distance_impl_name, metric_name, VexfsStats, VEXFS_ABI_VERSION, VEXFS_MAX_CHUNKS, VEXFS_MAX_EF, VEXFS_MAX_K,
    VEXFS_NO_ENTRY_POINT, VEXFS_SET_TRUNCATE,
};
use crate::ioctl;
use crate::mount::{check_vexfs, mount_root, InodeMap};
use crate::offline::CmdResult;
use crate::vecfile::{Fvecs, Texts};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Vectors (.fvecs: per row an int32 dimension, then that many float32).
    #[arg(value_name = "VECTORS.fvecs")]
    vectors: PathBuf,
    /// Directory on a mounted vexfs (created if missing): row i becomes the file DIR/i.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Passages, one JSON object per line: the "text" of line i is the content of DIR/i
    /// (without this option the files are empty).
    #[arg(long, value_name = "PASSAGES.jsonl")]
    texts: Option<PathBuf>,
    /// Rows per batch: the filesystem is synced (syncfs) after each, so a crash loses at most
    /// one batch; run the same command again to resume.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// A regular file on a mounted vexfs (opened for writing).
    file: PathBuf,
    /// The vectors (.fvecs).
    #[arg(long, value_name = "F")]
    fvecs: PathBuf,
    /// Row of F that becomes the file's only embedding (chunk 0) [default: 0].
    #[arg(long, value_name = "R", conflicts_with = "rows")]
    row: Option<u64>,
    /// Rows A to B-1 of F (A..B; A..=B includes B) become chunks 0, 1, ... of the file, and
    /// its only ones, in one atomic call.
    #[arg(long, value_name = "A..B", value_parser = parse_rows)]
    rows: Option<Range<u64>>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// A file on a mounted vexfs.
    file: PathBuf,
    /// Print one JSON object: {"path": FILE, "chunks": [[...], ...]}.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct RmEmbeddingArgs {
    /// A file on a mounted vexfs (opened for writing); a file without embeddings is no error.
    file: PathBuf,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Any file or directory of the mounted vexfs: the whole filesystem is searched, and
    /// results are shown relative to its mount point.
    path: PathBuf,
    /// The queries (.fvecs).
    #[arg(long, value_name = "Q")]
    fvecs: PathBuf,
    /// The row of Q to search for [default: 0].
    #[arg(long, value_name = "R", conflicts_with = "all")]
    row: Option<u64>,
    /// Search for every row of Q, in order.
    #[arg(long)]
    all: bool,
    /// Results per query.
    #[arg(short, long, value_name = "K", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(VEXFS_MAX_K)))]
    k: u32,
    /// HNSW candidate list size, at least K [default: the kernel's, max(K, 64)].
    #[arg(long, value_name = "EF",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(VEXFS_MAX_EF)))]
    ef: Option<u32>,
    /// One JSON object per query and line: {"query": R, "results": [{"path", "ino", "chunk",
    /// "distance"}, ...]}.
    #[arg(long)]
    json: bool,
    /// With --json, add each result's "text": the start of its file (at most 64 KiB). The
    /// table always shows the first line of each file.
    #[arg(long)]
    texts_from_files: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Any file or directory of a mounted vexfs.
    path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl SearchArgs {
    /// Checks what clap cannot: --ef against -k.
    pub fn check(&self) -> Result<(), String> {
        match self.ef {
            Some(ef) if ef < self.k => {
                Err(format!("--ef {ef} is below -k {}: the candidate list must hold at least K entries", self.k))
            }
            _ => Ok(()),
        }
    }
}

/// `A..B` (B excluded) or `A..=B` (B included), not empty.
fn parse_rows(s: &str) -> Result<Range<u64>, String> {
    let num = |x: &str| x.trim().parse::<u64>().map_err(|_| format!("'{x}' is not a row number"));
    let (a, b) = s.split_once("..").ok_or_else(|| format!("'{s}' is not a range A..B"))?;
    let a = num(a)?;
    let end = match b.strip_prefix('=') {
        Some(b) => num(b)?.checked_add(1).ok_or("range too large")?,
        None => num(b)?,
    };
    if end <= a {
        return Err(format!("'{s}' is empty"));
    }
    Ok(a..end)
}

// Errors -------------------------------------------------------------------------------------

/// The vexfs ioctls, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Set,
    Get,
    Remove,
    Search,
    Stats,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Set => "VEXFS_IOC_SET_EMBEDDINGS",
            Call::Get => "VEXFS_IOC_GET_EMBEDDINGS",
            Call::Remove => "VEXFS_IOC_REMOVE_EMBEDDINGS",
            Call::Search => "VEXFS_IOC_SEARCH",
            Call::Stats => "VEXFS_IOC_STATS",
        }
    }
}

/// What vexctl sent, for the EINVAL and ERANGE messages.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    dim: u32,
    first_chunk: u32,
    count: u32,
    k: u32,
    ef: u32,
}

/// What an errno of `call` means (include/vexfs.h) and what to do next.
fn meaning(call: Call, e: Errno, s: Sent) -> String {
    let abi = format!(
        "vexctl checked this before calling, so suspect a vexfs.ko of another ABI version than \
         vexctl's ({VEXFS_ABI_VERSION}): rebuild and reload the module"
    );
    match (call, e) {
        (_, Errno::ENOTTY) => format!(
            "the ioctl went to a file of another filesystem, or the loaded vexfs.ko does not \
             know it: is the module older than vexctl (ABI version {VEXFS_ABI_VERSION})?"
        ),
        (_, Errno::EUCLEAN) => "the index on disk is corrupt (dmesg names the problem): unmount \
             the filesystem and run fsck.vexfs on its device"
            .into(),
        (_, Errno::EFAULT) => "the kernel could not access vexctl's buffers: a bug in vexctl or \
             the module; please report it"
            .into(),
        (Call::Set | Call::Remove, Errno::EBADF) => {
            "the file is not open for writing (vexctl opens it so: was it replaced meanwhile?)".into()
        }
        (Call::Set | Call::Remove, Errno::EROFS) => {
            "the filesystem is mounted read-only: remount it read-write (mount -o remount,rw \
             MOUNTPOINT)"
                .into()
        }
        (Call::Set, Errno::EISDIR) => "embeddings go on regular files, not directories".into(),
        (Call::Set, Errno::ENOSPC) => "the vector region is full: mkfs with a larger --vectors \
             (vexctl stats shows the capacity), or remove embeddings no longer needed"
            .into(),
        (Call::Set, Errno::E2BIG) => format!(
            "chunks {} to {} are past the limit: a file carries at most {VEXFS_MAX_CHUNKS} \
             embeddings (VEXFS_MAX_CHUNKS)",
            s.first_chunk,
            u64::from(s.first_chunk) + u64::from(s.count).saturating_sub(1)
        ),
        (Call::Set, Errno::EINVAL) => format!(
            "the module refused dim {}, count {}, first_chunk {} (it must not leave a gap after \
             the file's chunks), a NaN or infinite component, or the flags/reserved fields; {abi}",
            s.dim, s.count, s.first_chunk
        ),
        (Call::Get, Errno::EINVAL) => format!("the module refused dim {} or the flags/reserved fields; {abi}", s.dim),
        (Call::Get, Errno::ERANGE) => {
            format!("chunk {} is past the file's last chunk (did the file change meanwhile? run again)", s.first_chunk)
        }
        (Call::Search, Errno::EINVAL) => format!(
            "the module refused query dim {}, k {} (1 to {VEXFS_MAX_K}), ef_search {} (0, or k \
             to {VEXFS_MAX_EF}), a NaN or infinite component, or the flags/reserved fields; {abi}",
            s.dim, s.k, s.ef
        ),
        (Call::Stats | Call::Remove, Errno::EINVAL) => {
            format!("the module refused the flags/reserved fields; {abi}")
        }
        (_, Errno::E2BIG) => format!("the module does not know this size of the argument struct; {abi}"),
        (_, e) => e.desc().to_string(),
    }
}

/// `PATH: VEXFS_IOC_SEARCH failed: EINVAL (Invalid argument): <meaning>`.
fn ioctl_error(path: &Path, call: Call, e: Errno, s: Sent) -> String {
    format!("{}: {} failed: {e:?} ({}): {}", path.display(), call.name(), e.desc(), meaning(call, e, s))
}

// Opening ------------------------------------------------------------------------------------

/// Opens `path` (read-only, or write-only for `write`) and checks that it is on a vexfs.
fn open_vexfs(path: &Path, write: bool) -> Result<File, String> {
    let f = if write { OpenOptions::new().write(true).open(path) } else { File::open(path) };
    let f = f.map_err(|e| {
        let hint = match e.raw_os_error().map(Errno::from_raw) {
            Some(Errno::EISDIR) => ": embeddings go on regular files",
            Some(Errno::EROFS) => ": the filesystem is mounted read-only (mount -o remount,rw)",
            _ => "",
        };
        let mode = if write { " for writing" } else { "" };
        format!("cannot open {}{mode}: {e}{hint}", path.display())
    })?;
    check_vexfs(&f, path)?;
    Ok(f)
}

fn stats_of(f: &File, path: &Path) -> Result<VexfsStats, String> {
    ioctl::stats(f).map_err(|e| ioctl_error(path, Call::Stats, e, Sent::default()))
}

/// Fails unless the vector file's dimension is the filesystem's.
fn check_dim<R>(v: &Fvecs<R>, fs_dim: u32, path: &Path) -> Result<(), String> {
    if v.dim() != fs_dim {
        return Err(format!(
            "{} has vectors of dimension {}, but the vexfs at {} has dimension {fs_dim} (fixed by \
             mkfs.vexfs --dim): use vectors of the model the filesystem was made for",
            v.name(),
            v.dim(),
            path.display()
        ));
    }
    Ok(())
}

// set, get, rm-embedding ---------------------------------------------------------------------

/// `vexctl set`.
pub fn set(a: &SetArgs) -> CmdResult {
    let mut v = Fvecs::open(&a.fvecs)?;
    let f = open_vexfs(&a.file, true)?;
    let dim = stats_of(&f, &a.file)?.dim;
    check_dim(&v, dim, &a.file)?;
    let rows = match &a.rows {
        Some(r) => r.clone(),
        None => {
            let r = a.row.unwrap_or(0);
            r..r.saturating_add(1)
        }
    };
    let n = rows.end - rows.start;
    if n > u64::from(VEXFS_MAX_CHUNKS) {
        return Err(format!(
            "--rows {}..{} is {n} vectors: a file carries at most {VEXFS_MAX_CHUNKS} embeddings",
            rows.start, rows.end
        ));
    }
    let vectors = v.rows_range(rows.start, n)?;
    let sent = Sent { dim, count: u32::try_from(n).unwrap_or(u32::MAX), ..Sent::default() };
    ioctl::set_embeddings(&f, dim, 0, VEXFS_SET_TRUNCATE, &vectors)
        .map_err(|e| ioctl_error(&a.file, Call::Set, e, sent))
}

/// All the embeddings of `f`, one vector per chunk, from one GET that had room for all of them.
fn all_embeddings(f: &File, path: &Path, dim: u32) -> Result<Vec<Vec<f32>>, String> {
    let mut capacity = 16;
    loop {
        let sent = Sent { dim, count: capacity, ..Sent::default() };
        let got = ioctl::get_embeddings(f, dim, 0, capacity).map_err(|e| ioctl_error(path, Call::Get, e, sent))?;
        if got.total <= got.count {
            let d = usize::try_from(dim).unwrap_or(usize::MAX).max(1);
            return Ok(got.vectors.chunks(d).map(<[f32]>::to_vec).collect());
        }
        // More chunks than room: ask again for all of them at once.
        capacity = got.total;
    }
}

#[derive(Serialize)]
struct GetJson<'a> {
    path: &'a str,
    chunks: &'a [Vec<f32>],
}

fn format_get(path: &str, dim: u32, chunks: &[Vec<f32>], json: bool) -> String {
    if json {
        let j = GetJson { path, chunks };
        return serde_json::to_string(&j).unwrap_or_default() + "\n";
    }
    let mut s =
        format!("{path}: {} chunk{} of dimension {dim}\n", chunks.len(), if chunks.len() == 1 { "" } else { "s" });
    for (i, c) in chunks.iter().enumerate() {
        let _ = write!(s, "chunk {i}:");
        for x in c {
            let _ = write!(s, " {x}");
        }
        s.push('\n');
    }
    s
}

/// `vexctl get`.
pub fn get(a: &GetArgs) -> CmdResult {
    let f = open_vexfs(&a.file, false)?;
    let dim = stats_of(&f, &a.file)?.dim;
    let chunks = all_embeddings(&f, &a.file, dim)?;
    print_out(&format_get(&a.file.display().to_string(), dim, &chunks, a.json))
}

/// `vexctl rm-embedding`.
pub fn rm_embedding(a: &RmEmbeddingArgs) -> CmdResult {
    let f = open_vexfs(&a.file, true)?;
    ioctl::remove_embeddings(&f).map_err(|e| ioctl_error(&a.file, Call::Remove, e, Sent::default()))
}

fn print_out(s: &str) -> CmdResult {
    let mut out = io::stdout().lock();
    out.write_all(s.as_bytes()).and_then(|()| out.flush()).map_err(|e| format!("writing output: {e}"))
}

// stats --------------------------------------------------------------------------------------

#[derive(Serialize, Debug, PartialEq)]
struct StatsJson {
    dim: u32,
    metric: String,
    m: u32,
    ef_construction: u32,
    vectors: u64,
    deleted: u64,
    capacity: u64,
    levels: u32,
    entry_point: Option<u32>,
    bytes_on_disk: u64,
    distance_impl: String,
}

fn stats_json(s: &VexfsStats) -> StatsJson {
    StatsJson {
        dim: s.dim,
        metric: metric_name(s.metric).map_or_else(|| format!("unknown ({})", s.metric), |m| m.0.into()),
        m: s.m,
        ef_construction: s.ef_construction,
        vectors: s.vectors,
        deleted: s.deleted,
        capacity: s.capacity,
        levels: s.levels,
        entry_point: (s.entry_point != VEXFS_NO_ENTRY_POINT).then_some(s.entry_point),
        bytes_on_disk: s.bytes_on_disk,
        distance_impl: distance_impl_name(s.distance_impl)
            .map_or_else(|| format!("unknown ({})", s.distance_impl), |d| d.0.into()),
    }
}

/// `1536 B`, `3.0 KiB`, `12.5 MiB`, `2.00 GiB`.
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn format_stats(s: &VexfsStats) -> String {
    let j = stats_json(s);
    let metric = match metric_name(s.metric) {
        Some((n, what)) => format!("{n} ({what})"),
        None => j.metric.clone(),
    };
    let used = if s.capacity > 0 {
        format!(" ({:.1}% used)", s.vectors as f64 * 100.0 / s.capacity as f64)
    } else {
        String::new()
    };
    let entry = match j.entry_point {
        Some(e) => format!("slot {e}"),
        None => "none (empty)".into(),
    };
    let mut o = String::new();
    let _ = writeln!(o, "Dimension:            {}", s.dim);
    let _ = writeln!(o, "Metric:               {metric}");
    let _ = writeln!(o, "Vectors:              {}", s.vectors);
    let _ = writeln!(o, "Deleted:              {} (not yet purged from the graph)", s.deleted);
    let _ = writeln!(o, "Capacity:             {} slots{used}", s.capacity);
    let _ = writeln!(
        o,
        "HNSW:                 m {} (level 0: {} links), ef_construction {}",
        s.m,
        u64::from(s.m) * 2,
        s.ef_construction
    );
    let _ = writeln!(o, "Levels:               {}", s.levels);
    let _ = writeln!(o, "Entry point:          {entry}");
    let _ = writeln!(
        o,
        "On disk:              {} ({} bytes, vector and index regions)",
        human_bytes(s.bytes_on_disk),
        s.bytes_on_disk
    );
    let dist = match distance_impl_name(s.distance_impl) {
        Some((n, what)) => format!("{n} ({what})"),
        None => j.distance_impl.clone(),
    };
    let _ = writeln!(o, "Distance kernel:      {dist}");
    o
}

/// `vexctl stats`.
pub fn stats(a: &StatsArgs) -> CmdResult {
    let f = open_vexfs(&a.path, false)?;
    let s = stats_of(&f, &a.path)?;
    if a.json {
        let j = serde_json::to_string_pretty(&stats_json(&s)).map_err(|e| e.to_string())?;
        return print_out(&(j + "\n"));
    }
    print_out(&format_stats(&s))
}

// search -------------------------------------------------------------------------------------

/// One search result, with its path.
#[derive(Serialize, Debug, Clone, PartialEq)]
struct Hit {
    /// Relative to the mount root; `null` when the walk did not find the inode (a file created
    /// or removed meanwhile, or in a directory vexctl could not read).
    path: Option<String>,
    ino: u64,
    chunk: u32,
    distance: f32,
    /// With --texts-from-files.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

#[derive(Serialize)]
struct QueryJson<'a> {
    query: u64,
    results: &'a [Hit],
}

fn format_json(query: u64, hits: &[Hit]) -> String {
    serde_json::to_string(&QueryJson { query, results: hits }).unwrap_or_default() + "\n"
}

/// Replaces control characters (tabs, escapes) by spaces: table cells stay on one line and
/// cannot drive the terminal.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// At most `width` characters of `s`, the last one `…` when cut.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        out.push('…');
    }
    out
}

/// The table of one query: rank, distance, path, chunk and the first line of the file's text
/// (`first_lines[i]` for `hits[i]`), each line cut to `width` characters.
fn format_table(query: u64, metric: &str, hits: &[Hit], first_lines: &[String], width: usize) -> String {
    let mut o = String::new();
    if hits.is_empty() {
        let _ = writeln!(o, "query {query}: no results (the filesystem holds no embeddings)");
        return o;
    }
    let _ = writeln!(o, "query {query}: {} nearest ({metric})", hits.len());
    let paths: Vec<String> = hits
        .iter()
        .map(|h| match &h.path {
            Some(p) => printable(p),
            None => format!("<inode {}>", h.ino),
        })
        .collect();
    let pw = paths.iter().map(|p| p.chars().count()).max().unwrap_or(0).max(4);
    let mut lines = vec![format!("{:>4}  {:>10}  {:<pw$}  {:>5}  text", "rank", "distance", "path", "chunk")];
    for (i, h) in hits.iter().enumerate() {
        let text = first_lines.get(i).map(String::as_str).unwrap_or("");
        lines.push(format!(
            "{:>4}  {:>10.4}  {:<pw$}  {:>5}  {}",
            i + 1,
            h.distance,
            paths[i],
            h.chunk,
            printable(text)
        ));
    }
    for l in lines {
        o += fit(l.trim_end(), width).as_str();
        o.push('\n');
    }
    o
}

/// At most `limit` bytes from the start of `path`, as text (invalid UTF-8 replaced).
fn read_start(path: &Path, limit: u64) -> Option<String> {
    let mut buf = Vec::new();
    File::open(path).ok()?.take(limit).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Columns of the terminal on stdout, else `COLUMNS`, else 80.
fn output_width() -> usize {
    let out = io::stdout();
    if out.is_terminal() {
        if let Some(c) = ioctl::terminal_columns(&out).filter(|&c| c > 0) {
            return usize::from(c);
        }
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&c| c > 0).unwrap_or(80)
}

/// `vexctl search`.
pub fn search(a: &SearchArgs) -> CmdResult {
    a.check()?;
    let mut q = Fvecs::open(&a.fvecs)?;
    let f = open_vexfs(&a.path, false)?;
    let st = stats_of(&f, &a.path)?;
    check_dim(&q, st.dim, &a.path)?;
    let metric = metric_name(st.metric).map_or("?", |m| m.0);
    let rows = if a.all {
        0..q.rows()
    } else {
        let r = a.row.unwrap_or(0);
        r..r.saturating_add(1)
    };
    let root = mount_root(&a.path)?;
    // Built at the first non-empty result, once for all queries.
    let mut map: Option<InodeMap> = None;
    let width = output_width();
    let ef = a.ef.unwrap_or(0);
    let mut out = io::stdout().lock();
    for r in rows {
        let v = q.row(r)?;
        let sent = Sent { dim: st.dim, k: a.k, ef, ..Sent::default() };
        let results = ioctl::search(&f, &v, a.k, ef).map_err(|e| ioctl_error(&a.path, Call::Search, e, sent))?;
        if map.is_none() && !results.is_empty() {
            let m = InodeMap::build(&root)?;
            for d in &m.unreadable {
                eprintln!("vexctl: warning: cannot list {}: results below it have no path", root.join(d).display());
            }
            map = Some(m);
        }
        let mut hits: Vec<Hit> = results
            .iter()
            .map(|x| Hit {
                path: map.as_ref().and_then(|m| m.path(x.ino)).map(|p| p.to_string_lossy().into_owned()),
                ino: x.ino,
                chunk: x.chunk,
                distance: x.distance,
                text: None,
            })
            .collect();
        let text_of = |h: &Hit, limit| h.path.as_ref().and_then(|p| read_start(&root.join(p), limit));
        let s = if a.json {
            if a.texts_from_files {
                for h in &mut hits {
                    h.text = Some(text_of(h, 64 * 1024).unwrap_or_default());
                }
            }
            format_json(r, &hits)
        } else {
            let first_lines: Vec<String> = hits
                .iter()
                .map(|h| {
                    let t = text_of(h, 4096).unwrap_or_default();
                    t.lines().next().unwrap_or("").to_string()
                })
                .collect();
            let mut t = format_table(r, metric, &hits, &first_lines, width);
            if a.all {
                t.push('\n');
            }
            t
        };
        out.write_all(s.as_bytes()).map_err(|e| format!("writing output: {e}"))?;
    }
    out.flush().map_err(|e| format!("writing output: {e}"))
}

// import -------------------------------------------------------------------------------------

/// The deepest existing directory at or above `p`.
fn existing_ancestor(p: &Path) -> PathBuf {
    let mut cur = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    loop {
        if cur.exists() {
            return cur.to_path_buf();
        }
        match cur.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => cur = parent,
            _ => return PathBuf::from("."),
        }
    }
}

/// Imports one row: `Ok(false)` if its file already carries an embedding (skipped).
fn import_row(path: &Path, dim: u32, text: &str, v: &[f32]) -> Result<bool, String> {
    match File::open(path) {
        Ok(f) => {
            if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                return Err(format!(
                    "{} is a directory: import into a directory without one named after a row",
                    path.display()
                ));
            }
            let sent = Sent { dim, count: 1, ..Sent::default() };
            let chunks = ioctl::chunk_count(&f, dim).map_err(|e| ioctl_error(path, Call::Get, e, sent))?;
            if chunks > 0 {
                return Ok(false);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))?;
    let sent = Sent { dim, count: 1, ..Sent::default() };
    ioctl::set_embeddings(&f, dim, 0, VEXFS_SET_TRUNCATE, v).map_err(|e| ioctl_error(path, Call::Set, e, sent))?;
    Ok(true)
}

/// `imported 2000 rows into DIR, skipped 0 (already embedded), in 1.2 s: 1666.7 vectors/s`.
fn import_summary(dir: &Path, imported: u64, skipped: u64, secs: f64) -> String {
    let rate = if secs > 0.0 { imported as f64 / secs } else { 0.0 };
    format!(
        "imported {imported} rows into {}, skipped {skipped} (already embedded), in {secs:.1} s: \
         {rate:.1} vectors/s",
        dir.display()
    )
}

/// `vexctl import`.
pub fn import(a: &ImportArgs) -> CmdResult {
    let mut vecs = Fvecs::open(&a.vectors)?;
    // The filesystem first (before creating DIR), then every input row (before the first change).
    let above = existing_ancestor(&a.dir);
    open_vexfs(&above, false).map_err(|e| format!("cannot import into {}: {e}", a.dir.display()))?;
    std::fs::create_dir_all(&a.dir).map_err(|e| format!("cannot create {}: {e}", a.dir.display()))?;
    let dirf = open_vexfs(&a.dir, false)?;
    let st = stats_of(&dirf, &a.dir)?;
    check_dim(&vecs, st.dim, &a.dir)?;
    vecs.for_each(|_, _| Ok(()))?;
    let rows = vecs.rows();
    let mut texts = match &a.texts {
        Some(p) => {
            let lines = Texts::open(p)?.check_all()?;
            if lines < rows {
                return Err(format!(
                    "{} has {lines} lines but {} has {rows} rows: line i holds the text of row i",
                    p.display(),
                    a.vectors.display()
                ));
            }
            if lines > rows {
                eprintln!(
                    "vexctl: note: {} has {lines} lines, {} only {rows} rows: lines {rows} on are not used",
                    p.display(),
                    a.vectors.display()
                );
            }
            Some(Texts::open(p)?)
        }
        None => None,
    };

    let bar = ProgressBar::new(rows);
    if a.quiet || !io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} rows, {per_sec}, eta {eta}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let start = Instant::now();
    let (mut imported, mut skipped) = (0u64, 0u64);
    let sync = |dirf: &File| nix::unistd::syncfs(dirf).map_err(|e| format!("syncfs {}: {e}", a.dir.display()));
    let result = vecs.for_each(|row, v| {
        let text = match &mut texts {
            Some(t) => t.next_text()?.unwrap_or_default(),
            None => String::new(),
        };
        if import_row(&a.dir.join(row.to_string()), st.dim, &text, v)? {
            imported += 1;
        } else {
            skipped += 1;
        }
        bar.inc(1);
        if (row + 1) % a.batch == 0 {
            sync(&dirf)?;
        }
        Ok(())
    });
    let result = result.and_then(|()| sync(&dirf));
    bar.finish_and_clear();
    let summary = import_summary(&a.dir, imported, skipped, start.elapsed().as_secs_f64());
    match result {
        Ok(()) => print_out(&(summary + "\n")),
        Err(e) => Err(format!(
            "{e}\nvexctl: stopped: {summary}; run the same command again to resume (rows whose \
             file already carries an embedding are skipped)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(path: Option<&str>, ino: u64, chunk: u32, distance: f32) -> Hit {
        Hit { path: path.map(str::to_string), ino, chunk, distance, text: None }
    }

    #[test]
    fn search_json_shape() {
        let hits = [hit(Some("docs/12"), 14, 0, 0.5), hit(None, 99, 3, 1.25)];
        let s = format_json(7, &hits);
        assert_eq!(
            s,
            "{\"query\":7,\"results\":[{\"path\":\"docs/12\",\"ino\":14,\"chunk\":0,\"distance\":0.5},\
             {\"path\":null,\"ino\":99,\"chunk\":3,\"distance\":1.25}]}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["query"], 7);
        let r = v["results"].as_array().unwrap();
        assert_eq!(r.len(), 2);
        for x in r {
            let keys: Vec<&str> = x.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 4);
            for k in ["path", "ino", "chunk", "distance"] {
                assert!(keys.contains(&k), "{k}");
            }
        }
        // f32 distances print as the shortest decimal that reads back the same f32.
        let d = 0.903_621_2_f32;
        let v: serde_json::Value = serde_json::from_str(&format_json(0, &[hit(Some("a"), 1, 0, d)])).unwrap();
        assert_eq!(v["results"][0]["distance"].as_f64().unwrap() as f32, d);
        assert_eq!(format_json(3, &[]), "{\"query\":3,\"results\":[]}\n");
        let mut t = hit(Some("a"), 1, 0, 0.0);
        t.text = Some("line one\nline two".into());
        assert_eq!(
            format_json(0, &[t]),
            "{\"query\":0,\"results\":[{\"path\":\"a\",\"ino\":1,\"chunk\":0,\"distance\":0.0,\
             \"text\":\"line one\\nline two\"}]}\n"
        );
    }

    #[test]
    fn search_table() {
        let hits = [hit(Some("docs/12"), 14, 0, 0.5), hit(Some("docs/1999"), 2001, 2, 1.234_56), hit(None, 99, 0, 2.0)];
        let lines =
            ["Instances of set are compared to instances of frozenset".to_string(), "tab\there".into(), String::new()];
        let t = format_table(4, "l2", &hits, &lines, 100);
        assert_eq!(
            t,
            "query 4: 3 nearest (l2)\n\
             rank    distance  path        chunk  text\n   \
             1      0.5000  docs/12         0  Instances of set are compared to instances of frozenset\n   \
             2      1.2346  docs/1999       2  tab here\n   \
             3      2.0000  <inode 99>      0\n"
        );
        // Cut to the width, with an ellipsis.
        let narrow = format_table(4, "l2", &hits, &lines, 50);
        for l in narrow.lines() {
            assert!(l.chars().count() <= 50, "{l}");
        }
        assert!(narrow.contains("docs/12         0  Instances of…\n"), "{narrow}");
        assert_eq!(format_table(0, "l2", &[], &[], 80), "query 0: no results (the filesystem holds no embeddings)\n");
    }

    #[test]
    fn get_output() {
        let chunks = vec![vec![0.5, -1.0, 3.25], vec![0.1, 0.0, 1e-7]];
        assert_eq!(
            format_get("/mnt/a", 3, &chunks, false),
            "/mnt/a: 2 chunks of dimension 3\nchunk 0: 0.5 -1 3.25\nchunk 1: 0.1 0 0.0000001\n"
        );
        assert_eq!(
            format_get("/mnt/a", 3, &chunks, true),
            "{\"path\":\"/mnt/a\",\"chunks\":[[0.5,-1.0,3.25],[0.1,0.0,1e-7]]}\n"
        );
        assert_eq!(format_get("b", 3, &[], true), "{\"path\":\"b\",\"chunks\":[]}\n");
        assert_eq!(format_get("b", 3, &[], false), "b: 0 chunks of dimension 3\n");
    }

    #[test]
    fn stats_output() {
        let s = VexfsStats {
            size: 88,
            dim: 384,
            metric: 0,
            m: 16,
            ef_construction: 200,
            vectors: 2000,
            deleted: 3,
            capacity: 16000,
            levels: 3,
            entry_point: 17,
            bytes_on_disk: 12 * 1024 * 1024 + 512 * 1024,
            distance_impl: 1,
            ..VexfsStats::default()
        };
        let t = format_stats(&s);
        for want in [
            "Dimension:            384\n",
            "Metric:               l2 (squared Euclidean distance)\n",
            "Vectors:              2000\n",
            "Deleted:              3 (not yet purged from the graph)\n",
            "Capacity:             16000 slots (12.5% used)\n",
            "HNSW:                 m 16 (level 0: 32 links), ef_construction 200\n",
            "Levels:               3\n",
            "Entry point:          slot 17\n",
            "On disk:              12.5 MiB (13107200 bytes, vector and index regions)\n",
            "Distance kernel:      sse2 (SSE2)\n",
        ] {
            assert!(t.contains(want), "{want}: {t}");
        }
        let v = serde_json::to_value(stats_json(&s)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"dim": 384, "metric": "l2", "m": 16, "ef_construction": 200,
                "vectors": 2000, "deleted": 3, "capacity": 16000, "levels": 3, "entry_point": 17,
                "bytes_on_disk": 13_107_200u64, "distance_impl": "sse2"})
        );
        let empty = VexfsStats { entry_point: VEXFS_NO_ENTRY_POINT, metric: 9, distance_impl: 7, ..s };
        assert_eq!(stats_json(&empty).entry_point, None);
        assert_eq!(stats_json(&empty).metric, "unknown (9)");
        assert_eq!(stats_json(&empty).distance_impl, "unknown (7)");
        assert!(format_stats(&empty).contains("Entry point:          none (empty)\n"));
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn row_ranges() {
        assert_eq!(parse_rows("3..7"), Ok(3..7));
        assert_eq!(parse_rows("3..=7"), Ok(3..8));
        assert_eq!(parse_rows("0..1"), Ok(0..1));
        assert!(parse_rows("5..5").unwrap_err().contains("empty"));
        assert!(parse_rows("7..3").is_err());
        assert!(parse_rows("3").unwrap_err().contains("not a range"));
        assert!(parse_rows("a..3").unwrap_err().contains("not a row number"));
    }

    #[test]
    fn errors_say_what_to_do() {
        let p = Path::new("/mnt/f");
        let e = ioctl_error(p, Call::Set, Errno::ENOSPC, Sent::default());
        assert_eq!(
            e,
            "/mnt/f: VEXFS_IOC_SET_EMBEDDINGS failed: ENOSPC (No space left on device): the vector \
             region is full: mkfs with a larger --vectors (vexctl stats shows the capacity), or \
             remove embeddings no longer needed"
        );
        let s = Sent { dim: 384, k: 10, ef: 5, ..Sent::default() };
        let e = ioctl_error(p, Call::Search, Errno::EINVAL, s);
        assert!(
            e.contains("EINVAL (Invalid argument): the module refused query dim 384, k 10 (1 to 1024), ef_search 5"),
            "{e}"
        );
        let e = ioctl_error(p, Call::Get, Errno::ERANGE, Sent { first_chunk: 4, ..s });
        assert!(e.contains("ERANGE") && e.contains("chunk 4 is past"), "{e}");
        let e = ioctl_error(p, Call::Set, Errno::E2BIG, Sent { count: 1021, ..Sent::default() });
        assert!(e.contains("chunks 0 to 1020 are past the limit"), "{e}");
        let e = ioctl_error(p, Call::Stats, Errno::ENOTTY, Sent::default());
        assert!(e.contains("ENOTTY") && e.contains("another filesystem"), "{e}");
        let e = ioctl_error(p, Call::Remove, Errno::EROFS, Sent::default());
        assert!(e.contains("mount -o remount,rw"), "{e}");
        let e = ioctl_error(p, Call::Stats, Errno::EIO, Sent::default());
        assert!(e.ends_with("EIO (I/O error): I/O error"), "{e}");
    }

    #[test]
    fn search_checks_ef_against_k() {
        let a = SearchArgs {
            path: PathBuf::from("/"),
            fvecs: PathBuf::from("q"),
            row: None,
            all: false,
            k: 10,
            ef: Some(9),
            json: false,
            texts_from_files: false,
        };
        assert_eq!(a.check().unwrap_err(), "--ef 9 is below -k 10: the candidate list must hold at least K entries");
        assert!(SearchArgs { ef: Some(10), ..a }.check().is_ok());
    }

    #[test]
    fn summary_and_fit() {
        assert_eq!(
            import_summary(Path::new("/mnt/docs"), 2000, 5, 4.0),
            "imported 2000 rows into /mnt/docs, skipped 5 (already embedded), in 4.0 s: 500.0 vectors/s"
        );
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 3), "abc");
        assert_eq!(fit("ééé", 2), "é…");
        assert_eq!(printable("a\tb\x1b[31m"), "a b [31m");
        let t = tempfile::tempdir().unwrap();
        assert_eq!(existing_ancestor(&t.path().join("x/y/z")), t.path());
    }
}
