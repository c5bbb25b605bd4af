//! Commands on an unmounted image or device, read-only: `inspect`, `ls`, `cat`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use vexfs_image::journal::{read_log, recover};
use vexfs_image::overlay::Overlay;
use vexfs_image::show::{device_map, device_map_table, format_uuid};
use vexfs_image::vexfs_core::format::inode::{Inode, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use vexfs_image::vexfs_core::format::journal::{JournalSuper, JOURNAL_CLEAN};
use vexfs_image::vexfs_core::format::superblock::{
    node_record_size, Region, Superblock, FEATURE_INCOMPAT_RECOVER, STATE_CLEAN, STATE_ERRORS,
};
use vexfs_image::vexfs_core::format::vector::HnswHeader;
use vexfs_image::vexfs_core::format::BLOCK_SIZE;
use vexfs_image::{FileDevice, Image};

/// Result of a command: an error message for stderr.
pub type CmdResult = Result<(), String>;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Image file or block device.
    image: PathBuf,
    /// Print JSON (one object) instead of text.
    #[arg(long)]
    json: bool,
    /// Also read the journal's log as recovery would: committed transactions, a torn tail,
    /// free log blocks (`journal.log` in the JSON); and the vector write-ahead log's pending
    /// count from the HNSW header (`wal`).
    #[arg(long)]
    log: bool,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Image file or block device.
    image: PathBuf,
    /// Path inside the filesystem.
    #[arg(default_value = "/")]
    path: String,
    /// Long listing: inode, mode, links, owner, size, modification time.
    #[arg(short = 'l')]
    long: bool,
}

#[derive(Args, Debug)]
pub struct CatArgs {
    /// Image file or block device.
    image: PathBuf,
    /// Path of a file inside the filesystem.
    path: String,
}

fn open(path: &PathBuf) -> Result<Image<FileDevice>, String> {
    let dev = FileDevice::open(path, false).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Image::open(dev).map_err(|e| format!("{}: {e}", path.display()))
}

/// The filesystem of `path` as its next mount will see it: when the superblock asks for
/// recovery (`RECOVER`: mounted read-write or crashed), the journal is replayed into memory
/// with the kernel's code (`vexfs_core::journal::recover`, as `fsck.vexfs -n` does) and a
/// note says so on stderr; the image itself is never written. Errors: the image's, or a log
/// that cannot be replayed.
fn open_replayed(path: &PathBuf) -> Result<Image<Overlay<FileDevice>>, String> {
    let img = open(path)?;
    let sb = img.sb().clone();
    let mut ov = Overlay::new(img.into_device());
    if sb.feature_incompat & FEATURE_INCOMPAT_RECOVER != 0 {
        let (_, r) = recover(&mut ov, &sb).map_err(|e| format!("{}: replaying the journal: {e}", path.display()))?;
        eprintln!(
            "vexctl: note: {} needs recovery; read as its journal's replay leaves it ({} transactions, in memory: the image is not changed)",
            path.display(),
            r.scan.transactions
        );
    }
    Image::open(ov).map_err(|e| format!("{}: {e}", path.display()))
}

#[derive(Serialize)]
struct RegionJson {
    name: &'static str,
    start: u64,
    blocks: u64,
    bytes: u64,
}

/// The journal superblock as `inspect` and `log` show it.
#[derive(Serialize)]
pub(crate) struct JournalJson {
    pub(crate) start: u64,
    pub(crate) blocks: u64,
    /// `clean`, `needs recovery` or `invalid`.
    pub(crate) state: &'static str,
    pub(crate) error: Option<String>,
    pub(crate) next_lsn: Option<u64>,
    pub(crate) checkpoint_lsn: Option<u64>,
    pub(crate) head: Option<u64>,
    /// The journal superblock's version (1 or 2).
    pub(crate) version: Option<u32>,
    /// Its flag bits (bit 0 clean).
    pub(crate) flags: Option<u32>,
    /// The log as recovery reads it (`inspect --log` and `log` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) log: Option<LogJson>,
}

/// One committed transaction of [`LogJson`].
#[derive(Serialize)]
pub(crate) struct TxnJson {
    first_lsn: u64,
    commit_lsn: u64,
    images: u64,
    /// Record block (0-based, after the journal superblock) of the commit block.
    commit_block: u64,
    /// Home blocks of the images, in log order.
    targets: Vec<u64>,
}

/// The log as recovery reads it, as `inspect --log` and `log` show it.
#[derive(Serialize)]
pub(crate) struct LogJson {
    /// Record blocks (the region less its superblock).
    pub(crate) record_blocks: u64,
    /// Record blocks of live transactions (head .. after the last commit).
    pub(crate) used_blocks: u64,
    /// Record blocks free for new transactions.
    pub(crate) free_blocks: u64,
    /// Transactions recovery would replay (0 for a clean journal: recovery does not read it).
    pub(crate) to_replay: u64,
    /// Committed transactions read from `head`, in LSN order.
    pub(crate) transactions: Vec<TxnJson>,
    /// Records after the last commit (a transaction a crash tore: dropped by recovery).
    pub(crate) torn_records: u64,
    /// Last LSN read (0 if none).
    pub(crate) last_lsn: u64,
    /// Why reading stopped (`null`: a zero block or the whole log read).
    pub(crate) stop: Option<String>,
    /// An impossible record: the log cannot be replayed.
    pub(crate) error: Option<String>,
}

/// The vector write-ahead log as `inspect --log` and `log` show it: the HNSW header's counts.
/// A SET without VEXFS_SET_INDEX_NOW stores its vectors pending (level-0 flag NODE_PENDING,
/// counted in the header's `pending`); the index worker links them into the graph.
#[derive(Serialize)]
pub(crate) struct WalJson {
    /// Device block of the HNSW header.
    pub(crate) header_block: u64,
    /// Vectors acknowledged but not yet linked into the graph.
    pub(crate) pending: Option<u32>,
    /// Vectors in the graph, not deleted.
    pub(crate) live: Option<u32>,
    /// Tombstones: removed vectors still routing searches until purged.
    pub(crate) deleted: Option<u32>,
    /// Why the header could not be decoded (`null`: it could).
    pub(crate) error: Option<String>,
}

#[derive(Serialize)]
struct InspectJson {
    format_version: u32,
    block_size: usize,
    block_count: u64,
    free_blocks: u64,
    inode_count: u32,
    free_inodes: u32,
    root_ino: u32,
    state: Vec<&'static str>,
    uuid: String,
    label: String,
    mkfs_time: u64,
    write_time: u64,
    mount_count: u32,
    feature_compat: u32,
    feature_ro_compat: u32,
    feature_incompat: u32,
    vec_dim: u32,
    vec_metric: &'static str,
    vec_capacity: u64,
    vec_stride: u32,
    hnsw_m: u32,
    hnsw_ef_construction: u32,
    hnsw_max_level: u32,
    hnsw_seed: u64,
    /// The SQ8 scale (codes = round(x * 2^sq8_shift)); absent without the feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    sq8_shift: Option<i32>,
    /// PQ sub-quantisers (bytes per code); absent without the feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pq_m: Option<u32>,
    /// Bytes of a node record (each vector with its level-0 links, the feature node_records);
    /// absent without the feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    node_record_bytes: Option<u64>,
    regions: Vec<RegionJson>,
    journal: JournalJson,
    /// The vector write-ahead log (`--log` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    wal: Option<WalJson>,
}

pub(crate) fn state_names(state: u32) -> Vec<&'static str> {
    let mut v = Vec::new();
    if state & STATE_CLEAN != 0 {
        v.push("clean");
    } else {
        v.push("not clean");
    }
    if state & STATE_ERRORS != 0 {
        v.push("errors");
    }
    v
}

pub(crate) fn journal(img: &Image<FileDevice>) -> Result<JournalJson, String> {
    let sb = img.sb();
    let j = sb.region(Region::Journal);
    let b = img.read_block(j.start).map_err(|e| e.to_string())?;
    let mut out = JournalJson {
        start: j.start,
        blocks: j.blocks,
        state: "invalid",
        error: None,
        next_lsn: None,
        checkpoint_lsn: None,
        head: None,
        version: None,
        flags: None,
        log: None,
    };
    match JournalSuper::decode(&b[..], j.start, j.blocks, &sb.uuid) {
        Ok(js) => {
            out.state = if js.flags & JOURNAL_CLEAN != 0 { "clean" } else { "needs recovery" };
            out.next_lsn = Some(js.next_lsn);
            out.checkpoint_lsn = Some(js.checkpoint_lsn);
            out.head = Some(js.head);
            out.version = b.get(16..20).and_then(|v| v.try_into().ok()).map(u32::from_le_bytes);
            out.flags = Some(js.flags);
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    Ok(out)
}

pub(crate) fn log_json(img: &Image<FileDevice>) -> Result<LogJson, String> {
    let info = read_log(img.device(), img.sb()).map_err(|e| e.to_string())?;
    let scan = info.scan.unwrap_or_default();
    Ok(LogJson {
        record_blocks: info.blocks.saturating_sub(1),
        used_blocks: info.used_blocks,
        free_blocks: info.free_blocks,
        to_replay: info.transactions_to_replay(),
        transactions: info
            .transactions
            .iter()
            .map(|t| TxnJson {
                first_lsn: t.first_lsn,
                commit_lsn: t.commit_lsn,
                images: t.images,
                commit_block: t.commit_block,
                targets: t.targets.clone(),
            })
            .collect(),
        torn_records: scan.uncommitted_records,
        last_lsn: scan.last_lsn,
        stop: scan.stop.map(|e| e.to_string()),
        error: info.error.map(|e| e.to_string()),
    })
}

/// The HNSW header's counts (block `sb.region(Region::Hnsw).start`). Errors: the block cannot
/// be read; a header that does not decode is reported in [`WalJson::error`].
pub(crate) fn wal_json(img: &Image<FileDevice>) -> Result<WalJson, String> {
    let header_block = img.sb().region(Region::Hnsw).start;
    let b = img.read_block(header_block).map_err(|e| e.to_string())?;
    Ok(match HnswHeader::decode(&b[..], header_block) {
        Ok(h) => WalJson {
            header_block,
            pending: Some(h.pending),
            live: Some(h.live),
            deleted: Some(h.deleted),
            error: None,
        },
        Err(e) => WalJson { header_block, pending: None, live: None, deleted: None, error: Some(e.to_string()) },
    })
}

/// The "Vector WAL:" line of `inspect --log` and `log`; `extra` is appended to it.
pub(crate) fn print_wal(w: &WalJson, extra: &str) {
    println!("{}", wal_line(w, extra));
}

fn wal_line(w: &WalJson, extra: &str) -> String {
    match (&w.error, w.pending) {
        (None, Some(p)) => format!(
            "Vector WAL:           {p} pending vector{} (acknowledged, not yet linked into the graph); \
             graph: {} live, {} deleted (HNSW header, block {}){extra}",
            if p == 1 { "" } else { "s" },
            w.live.unwrap_or(0),
            w.deleted.unwrap_or(0),
            w.header_block
        ),
        (e, _) => format!(
            "Vector WAL:           unreadable HNSW header (block {}): {}: run fsck.vexfs{extra}",
            w.header_block,
            e.as_deref().unwrap_or("no counts")
        ),
    }
}

fn inspect_json(sb: &Superblock, journal: JournalJson, wal: Option<WalJson>) -> InspectJson {
    InspectJson {
        format_version: sb.format_version,
        block_size: BLOCK_SIZE,
        block_count: sb.block_count,
        free_blocks: sb.free_blocks,
        inode_count: sb.inode_count,
        free_inodes: sb.free_inodes,
        root_ino: sb.root_ino,
        state: state_names(sb.state),
        uuid: format_uuid(&sb.uuid),
        label: sb.label_str().to_string(),
        mkfs_time: sb.mkfs_time,
        write_time: sb.write_time,
        mount_count: sb.mount_count,
        feature_compat: sb.feature_compat,
        feature_ro_compat: sb.feature_ro_compat,
        feature_incompat: sb.feature_incompat,
        vec_dim: sb.vec_dim,
        vec_metric: sb.metric().map(|m| m.name()).unwrap_or("?"),
        vec_capacity: sb.vec_capacity,
        vec_stride: sb.vec_stride,
        hnsw_m: sb.hnsw_m,
        hnsw_ef_construction: sb.hnsw_ef_construction,
        hnsw_max_level: sb.hnsw_max_level,
        hnsw_seed: sb.hnsw_seed,
        sq8_shift: sb.has_sq8().then_some(sb.sq8_shift),
        pq_m: sb.has_pq().then_some(sb.pq_m),
        node_record_bytes: sb.has_node_records().then(|| node_record_size(sb.vec_dim, sb.hnsw_m)),
        regions: device_map(sb)
            .into_iter()
            .map(|r| RegionJson { name: r.name, start: r.start, blocks: r.blocks, bytes: r.bytes() })
            .collect(),
        journal,
        wal,
    }
}

/// `vexctl inspect`.
pub fn inspect(a: &InspectArgs) -> CmdResult {
    let img = open(&a.image)?;
    let sb = img.sb();
    let mut jj = journal(&img)?;
    if a.log && jj.error.is_none() {
        jj.log = Some(log_json(&img)?);
    }
    let wal = if a.log { Some(wal_json(&img)?) } else { None };
    let j = inspect_json(sb, jj, wal);
    if a.json {
        let s = serde_json::to_string_pretty(&j).map_err(|e| e.to_string())?;
        println!("{s}");
        return Ok(());
    }
    println!("Format version:       {}", j.format_version);
    println!("UUID:                 {}", j.uuid);
    println!("Label:                {}", j.label);
    println!("State:                {}", j.state.join(", "));
    println!(
        "Features:             compat {:#x}, ro_compat {:#x}, incompat {:#x}",
        j.feature_compat, j.feature_ro_compat, j.feature_incompat
    );
    println!("Block size:           {}", j.block_size);
    println!("Blocks:               {} ({} free)", j.block_count, j.free_blocks);
    println!("Inodes:               {} ({} free), root {}", j.inode_count, j.free_inodes, j.root_ino);
    println!("Created:              {} ({})", format_time(j.mkfs_time as i64), j.mkfs_time);
    println!("Last written:         {} ({})", format_time(j.write_time as i64), j.write_time);
    println!("Mount count:          {}", j.mount_count);
    println!(
        "Vectors:              {} slots, dim {}, metric {}, stride {} bytes",
        j.vec_capacity, j.vec_dim, j.vec_metric, j.vec_stride
    );
    println!(
        "HNSW:                 m {}, ef_construction {}, max level {}, seed {:#x}",
        j.hnsw_m, j.hnsw_ef_construction, j.hnsw_max_level, j.hnsw_seed
    );
    if let Some(s) = j.sq8_shift {
        println!("SQ8 codes:            one byte per component, scale 2^{s} (searches walk the codes)");
    }
    if let Some(m) = j.pq_m {
        println!("PQ codes:             {m} bytes per vector, 256 centroids per byte (searches walk the codes)");
    }
    if let Some(n) = j.node_record_bytes {
        println!(
            "Node records:         {n} bytes, each vector with its level-0 links (a block read per expanded node)"
        );
    }
    let jr = &j.journal;
    print_journal_line(jr);
    if let Some(l) = &jr.log {
        print_log(jr, l);
    }
    if let Some(w) = &j.wal {
        print_wal(w, "");
    }
    println!();
    print!("{}", device_map_table(sb));
    Ok(())
}

/// The "Journal:" line of `inspect` and `log`: its state and LSNs, or why it is invalid.
pub(crate) fn print_journal_line(jr: &JournalJson) {
    match &jr.error {
        None => println!(
            "Journal:              {}, next lsn {}, checkpoint lsn {}, head {}",
            jr.state,
            jr.next_lsn.unwrap_or(0),
            jr.checkpoint_lsn.unwrap_or(0),
            jr.head.unwrap_or(0)
        ),
        Some(e) => println!("Journal:              invalid: {e}"),
    }
}

pub(crate) fn print_log(jr: &JournalJson, l: &LogJson) {
    println!(
        "Journal superblock:   version {}, flags {:#x}, head {}, checkpoint lsn {}, next lsn {}",
        jr.version.unwrap_or(0),
        jr.flags.unwrap_or(0),
        jr.head.unwrap_or(0),
        jr.checkpoint_lsn.unwrap_or(0),
        jr.next_lsn.unwrap_or(0)
    );
    println!(
        "Log:                  {} record blocks (device blocks {}..{}), {} used, {} free",
        l.record_blocks,
        jr.start + 1,
        jr.start + jr.blocks,
        l.used_blocks,
        l.free_blocks
    );
    if let Some(e) = &l.error {
        println!("Log error:            {e}: the log cannot be replayed (run fsck.vexfs)");
    }
    println!(
        "Transactions:         {} committed from head, {} to replay{}",
        l.transactions.len(),
        l.to_replay,
        if jr.state == "clean" { " (clean: recovery reads nothing)" } else { "" }
    );
    for t in &l.transactions {
        let shown: Vec<String> = t.targets.iter().take(8).map(u64::to_string).collect();
        let more = if t.targets.len() > 8 { format!(", ... ({} more)", t.targets.len() - 8) } else { String::new() };
        println!(
            "  lsn {}..{}: {} image(s), commit in record block {}; home blocks {}{more}",
            t.first_lsn,
            t.commit_lsn,
            t.images,
            t.commit_block,
            shown.join(", ")
        );
    }
    let stop = l.stop.as_deref().unwrap_or("end of the log");
    if l.torn_records > 0 {
        println!(
            "Torn tail:            {} record(s) after the last commit, dropped by recovery ({stop})",
            l.torn_records
        );
    } else {
        println!("Torn tail:            none (reading stopped: {stop})");
    }
}

/// `ls -l` style mode string: `drwxr-xr-x`.
fn mode_string(mode: u16) -> String {
    let t = match mode & S_IFMT {
        S_IFDIR => 'd',
        S_IFLNK => 'l',
        S_IFREG => '-',
        vexfs_image::vexfs_core::format::inode::S_IFIFO => 'p',
        vexfs_image::vexfs_core::format::inode::S_IFSOCK => 's',
        vexfs_image::vexfs_core::format::inode::S_IFCHR => 'c',
        vexfs_image::vexfs_core::format::inode::S_IFBLK => 'b',
        _ => '?',
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (0o400 >> i) != 0 { c } else { '-' });
    }
    s
}

/// `YYYY-MM-DD HH:MM` (UTC) for seconds since the epoch.
fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Days to civil date: H. Hinnant, "chrono-Compatible Low-Level Date Algorithms".
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

fn long_line(img: &Image<Overlay<FileDevice>>, ino: u32, inode: &Inode, name: &str) -> Result<String, String> {
    let mut line = format!(
        "{ino:>7} {} {:>3} {:>5} {:>5} {:>10} {} {name}",
        mode_string(inode.mode),
        inode.links,
        inode.uid,
        inode.gid,
        inode.size,
        format_time(inode.mtime_sec)
    );
    if inode.mode & S_IFMT == S_IFLNK {
        let target = img.read_file(ino, inode).map_err(|e| e.to_string())?;
        line += &format!(" -> {}", String::from_utf8_lossy(&target));
    }
    Ok(line)
}

/// `vexctl ls`.
pub fn ls(a: &LsArgs) -> CmdResult {
    let img = open_replayed(&a.image)?;
    let ino = img.lookup(&a.path).map_err(|e| e.to_string())?;
    let inode = img.inode(ino).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut put = |line: String| writeln!(out, "{line}").map_err(|e| format!("writing output: {e}"));
    if !inode.is_dir() {
        return put(if a.long { long_line(&img, ino, &inode, &a.path)? } else { a.path.clone() });
    }
    let mut entries = img.read_dir(ino, &inode).map_err(|e| e.to_string())?;
    entries.sort_by(|x, y| x.name.cmp(&y.name));
    let mut failed = None;
    for e in entries {
        let name = String::from_utf8_lossy(&e.name).into_owned();
        if !a.long {
            put(name)?;
            continue;
        }
        match img.inode(e.ino).map_err(|e| e.to_string()).and_then(|i| long_line(&img, e.ino, &i, &name)) {
            Ok(line) => put(line)?,
            Err(msg) => {
                eprintln!("vexctl: {name}: {msg}");
                failed = Some(format!("{}: some entries could not be read", a.path));
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// `vexctl cat`.
pub fn cat(a: &CatArgs) -> CmdResult {
    let img = open_replayed(&a.image)?;
    let ino = img.lookup(&a.path).map_err(|e| e.to_string())?;
    let inode = img.inode(ino).map_err(|e| e.to_string())?;
    if inode.is_dir() {
        return Err(format!("{}: is a directory", a.path));
    }
    let data = img.read_file(ino, &inode).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    out.write_all(&data).and_then(|()| out.flush()).map_err(|e| format!("writing output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_modes() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00");
        assert_eq!(mode_string(S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(S_IFLNK | 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(S_IFREG | 0o640), "-rw-r-----");
    }

    #[test]
    fn wal_lines() {
        let w = WalJson { header_block: 90, pending: Some(1), live: Some(12), deleted: Some(2), error: None };
        assert_eq!(
            wal_line(&w, ""),
            "Vector WAL:           1 pending vector (acknowledged, not yet linked into the graph); graph: \
             12 live, 2 deleted (HNSW header, block 90)"
        );
        let w = WalJson { pending: Some(300), ..w };
        assert!(wal_line(&w, "; x").starts_with("Vector WAL:           300 pending vectors (acknowledged,"));
        assert!(wal_line(&w, "; x").ends_with("(HNSW header, block 90); x"));
        let bad = WalJson { header_block: 90, pending: None, live: None, deleted: None, error: Some("bad".into()) };
        assert_eq!(wal_line(&bad, ""), "Vector WAL:           unreadable HNSW header (block 90): bad: run fsck.vexfs");
    }
}
