//! `stress MNT --workers N --seconds S --seed X`: several processes, as different users, work in
//! the same directories of a freshly mounted vexfs at once, and every search result is checked
//! against the caller's right to read the file (issue 8, item 6; tests/guest/095-stress.sh).
//!
//! Run as root. Setup: `MNT/s0` .. `MNT/s3`, mode 0777 without the sticky bit (everyone renames
//! and unlinks everyone's entries there), and for each worker a fixed set of files `fx-W-J`
//! (owner uid 1000+i, gid 1000+i%2, so users 1000 and 1002 share a group, as do 1001 and 1003;
//! root is worker 0), two of each mode 0600, 0640, 0644 and 0666, each with two embeddings. The
//! fixed files are never unlinked, chmodded or chowned during the run (only their owner renames
//! them, between the shared directories, under their own names), so their inode numbers and
//! (uid, gid, mode) are a table that a search result can be checked against exactly, without
//! races. Every other file is created during the run with mode 0666, readable by all, so a result
//! outside the table needs no check.
//!
//! Then N unprivileged workers and one root worker are forked; each drops its privileges
//! (setgroups, setgid, setuid) and for S seconds runs random operations with its own seeded
//! generator on a small set of names (`sD/nI` files, `sD/dE` directories, `sD/dE/nI` files, so
//! the workers collide): create, churn (create, SET, unlink: a short-lived file with
//! embeddings, whose inode number the next create reuses), write, append, truncate, rename
//! (files, directories, its own fixed files), unlink, link, mkdir, rmdir (half the time after
//! unlinking the directory's files), fsync, readdir; SET of 1 to 8 chunks (flags 0, sometimes
//! VEXFS_SET_TRUNCATE or VEXFS_SET_INDEX_NOW), REMOVE and GET of embeddings on its fixed files,
//! on files it saw in a readdir and on random names (the kernel refuses what it may not do:
//! EACCES); searches at k 1, 10, 50 and ef_search 0, 16, 200 (ef at least k) with queries near
//! the vectors in use, so private vectors are real candidates. A worker stops early after 30
//! failures.
//!
//! Checked: every search result in the fixed table is readable by the caller by (uid, gid, mode)
//! (root: everything), else a violation is counted and printed; results are nearest first,
//! finite, at most k, no embedding twice; a GET copies min(capacity, total) vectors. Expected
//! errnos (ENOENT, EEXIST, ENOTEMPTY, EACCES, EPERM, ENOSPC, EXDEV, ENOTDIR, EISDIR, EMLINK,
//! EFBIG) are counted by name; any other errno (EIO, EUCLEAN, EROFS, EFAULT, EINVAL, ...) from
//! these well-formed calls is a failure, printed. The parent waits until S plus a margin: a
//! worker still running then is a suspected deadlock: its /proc wchan, stack and syscall, and
//! those of every task in uninterruptible sleep, are printed, the workers killed, the run failed.
//! After the workers: every fixed file is still there, once, under its name, with its owner and
//! mode. Printed: per operation kind the successes and errnos, the searches, results, results
//! checked against the table, violations, ops/s; the last line starts with `stress-figures:`.
//! Exit status 0 only if nothing failed. `--ops churn,search` (any subset of the operations'
//! names) narrows a reproduction down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe, setgid, setgroups, setuid, ForkResult, Gid, Pid, Uid};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vexctl::abi::{VexfsSearchResult, VEXFS_SET_INDEX_NOW, VEXFS_SET_TRUNCATE};
use vexctl::ioctl;

/// `eprintln!` in one write(2): the workers' lines do not interleave on the console.
macro_rules! elog {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }};
}

/// Shared directories `s0` ..
const SHARED_DIRS: usize = 4;
/// File names `nI` per directory (few, so that the workers' names collide).
const NAMES: usize = 24;
/// Subdirectory names `dE` per shared directory.
const SUBDIRS: usize = 3;
/// Modes of the fixed files, each `FIXED_PER_MODE` times per worker.
const FIXED_MODES: [u32; 4] = [0o600, 0o640, 0o644, 0o666];
const FIXED_PER_MODE: usize = 2;
/// Clusters the vectors and queries are drawn around.
const CENTERS: usize = 16;
/// Spread of a vector around its centre (components of the centres are in [-1, 1]).
const SPREAD: f32 = 0.1;
/// Largest file a write or an append makes (bytes): a few extents per file.
const MAX_FILE: u64 = 96 * 1024;
/// Most unexpected outcomes a worker prints (all are counted).
const MAX_PRINTED: u32 = 30;

#[derive(Parser)]
#[command(
    about = "Multi-user stress test of a mounted vexfs: every search result checked against the caller's permissions"
)]
struct Cli {
    /// Mount point of a freshly made vexfs (run as root).
    mnt: PathBuf,
    /// Unprivileged workers (uid 1000+i, gid 1000+i%2); a root worker runs besides them.
    #[arg(long, default_value_t = 4)]
    workers: u32,
    /// Seconds each worker runs its random operations.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seed of the run (each worker's generator is derived from it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds the parent waits past --seconds before it calls a worker stuck
    /// (default: 60 or half of --seconds, whichever is more).
    #[arg(long)]
    margin: Option<u64>,
    /// Only these operations (comma-separated names, as the figures print them; set also
    /// makes set-now), to narrow a reproduction down. Default: all.
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
}

/// A worker's credentials.
#[derive(Clone, Copy, Debug)]
struct Who {
    uid: u32,
    gid: u32,
}

/// Owner and mode of a fixed file (constant during the run).
#[derive(Clone, Copy, Debug)]
struct Fixed {
    uid: u32,
    gid: u32,
    mode: u32,
}

impl Who {
    /// MAY_READ by mode bits, as generic_permission decides for a caller whose only group is
    /// its gid and who has no capability (root: always).
    fn may_read(self, f: Fixed) -> bool {
        if self.uid == 0 {
            return true;
        }
        let bit = if self.uid == f.uid {
            0o400
        } else if self.gid == f.gid {
            0o040
        } else {
            0o004
        };
        f.mode & bit != 0
    }
}

/// Errnos that the operations meet in normal use (races between workers, permissions, a full
/// filesystem). Any other errno from a well-formed call is a failure.
const EXPECTED: [Errno; 11] = [
    Errno::ENOENT,
    Errno::EEXIST,
    Errno::ENOTEMPTY,
    Errno::EACCES,
    Errno::EPERM,
    Errno::ENOSPC,
    Errno::EXDEV,
    Errno::ENOTDIR,
    Errno::EISDIR,
    Errno::EMLINK,
    Errno::EFBIG,
];

/// A worker's counts; sent to the parent as text lines (`op KIND ERRNO N`, `n NAME V`).
#[derive(Default)]
struct Tally {
    /// (operation kind, errno or 0 for success) -> count.
    ops: BTreeMap<(String, i32), u64>,
    /// Named figures: searches, results, checked, violations, failures, ...
    n: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, name: &str, v: u64) {
        *self.n.entry(name.to_string()).or_default() += v;
    }
    fn get(&self, name: &str) -> u64 {
        self.n.get(name).copied().unwrap_or(0)
    }
    fn encode(&self) -> String {
        let mut s = String::new();
        for ((kind, e), c) in &self.ops {
            let _ = writeln!(s, "op {kind} {e} {c}");
        }
        for (name, v) in &self.n {
            let _ = writeln!(s, "n {name} {v}");
        }
        s
    }
    /// Adds a worker's encoded tally; false if a line is malformed.
    fn merge(&mut self, text: &str) -> bool {
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["op", kind, e, c] => match (e.parse::<i32>(), c.parse::<u64>()) {
                    (Ok(e), Ok(c)) => *self.ops.entry((kind.to_string(), e)).or_default() += c,
                    _ => return false,
                },
                ["n", name, v] => match v.parse::<u64>() {
                    Ok(v) => self.add(name, v),
                    Err(_) => return false,
                },
                _ => return false,
            }
        }
        true
    }
    /// One line per operation kind: successes, then each errno by name.
    fn op_lines(&self) -> Vec<String> {
        let mut by_kind: BTreeMap<&str, Vec<(i32, u64)>> = BTreeMap::new();
        for ((kind, e), c) in &self.ops {
            by_kind.entry(kind).or_default().push((*e, *c));
        }
        by_kind
            .into_iter()
            .map(|(kind, v)| {
                let mut s = format!("{kind:<12}");
                for (e, c) in v {
                    if e == 0 {
                        let _ = write!(s, " ok {c}");
                    } else {
                        let _ = write!(s, " {:?} {c}", Errno::from_raw(e));
                    }
                }
                s
            })
            .collect()
    }
}

fn errno(e: io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

/// An operation of the workers.
type Op = fn(&mut Worker<'_>);

/// The operations: name (for --ops), weight (out of 100), body.
const OPS: [(&str, u32, Op); 16] = [
    ("create", 5, |w| w.create()),
    ("churn", 3, |w| w.churn()),
    ("write", 8, |w| w.write()),
    ("append", 5, |w| w.append()),
    ("truncate", 5, |w| w.truncate()),
    ("rename", 8, |w| w.rename()),
    ("unlink", 6, |w| w.unlink()),
    ("link", 4, |w| w.link()),
    ("mkdir", 3, |w| w.mkdir()),
    ("rmdir", 3, |w| w.rmdir()),
    ("fsync", 3, |w| w.fsync()),
    ("readdir", 4, |w| w.readdir()),
    ("set", 13, |w| w.set()),
    ("remove", 5, |w| w.remove()),
    ("get", 7, |w| w.get()),
    ("search", 18, |w| w.search()),
];

/// The operations a run uses (all, or those --ops names), as (cumulative weight, body).
fn op_table(names: &[String]) -> Result<Vec<(u32, Op)>, String> {
    if let Some(bad) = names.iter().find(|n| !OPS.iter().any(|o| o.0 == n.as_str())) {
        let all: Vec<&str> = OPS.iter().map(|o| o.0).collect();
        return Err(format!("unknown operation {bad} (operations: {})", all.join(",")));
    }
    let mut sum = 0;
    Ok(OPS
        .iter()
        .filter(|o| names.is_empty() || names.iter().any(|n| n == o.0))
        .map(|&(_, w, op)| {
            sum += w;
            (sum, op)
        })
        .collect())
}

/// One worker process's state.
struct Worker<'a> {
    /// The operations it picks from ([`op_table`]).
    ops: Vec<(u32, Op)>,
    id: usize,
    who: Who,
    mnt: PathBuf,
    dim: u32,
    rng: SmallRng,
    centers: &'a [Vec<f32>],
    table: &'a HashMap<u64, Fixed>,
    /// Where this worker's fixed files are now (only it renames them).
    own: Vec<PathBuf>,
    /// Files seen by the last readdirs (any owner).
    seen: Vec<PathBuf>,
    root: File,
    t: Tally,
    printed: u32,
}

impl Worker<'_> {
    /// Counts the outcome of one operation; an unexpected errno is a failure, printed.
    fn record(&mut self, kind: &str, what: &dyn std::fmt::Display, r: Result<(), Errno>) {
        let e = match r {
            Ok(()) => 0,
            Err(e) => {
                if !EXPECTED.contains(&e) {
                    self.fail(format_args!("{kind} {what}: {e:?} ({})", e.desc()));
                }
                e as i32
            }
        };
        *self.t.ops.entry((kind.to_string(), e)).or_default() += 1;
    }

    fn fail(&mut self, msg: std::fmt::Arguments) {
        self.t.add("failures", 1);
        self.say(msg);
    }

    fn say(&mut self, msg: std::fmt::Arguments) {
        if self.printed < MAX_PRINTED {
            self.printed += 1;
            elog!("stress: worker {} (uid {}): {msg}", self.id, self.who.uid);
        }
    }

    fn shared(&mut self) -> PathBuf {
        self.mnt.join(format!("s{}", self.rng.gen_range(0..SHARED_DIRS)))
    }
    /// A random file name: `sD/nI` or `sD/dE/nI`.
    fn file_name(&mut self) -> PathBuf {
        let d = self.shared();
        let n = format!("n{}", self.rng.gen_range(0..NAMES));
        if self.rng.gen_bool(0.25) {
            d.join(format!("d{}", self.rng.gen_range(0..SUBDIRS))).join(n)
        } else {
            d.join(n)
        }
    }
    fn dir_name(&mut self) -> PathBuf {
        let d = self.shared();
        d.join(format!("d{}", self.rng.gen_range(0..SUBDIRS)))
    }
    /// A file to work on: one of its own fixed files, one seen in a readdir, or a random name.
    fn target(&mut self) -> PathBuf {
        let x: f64 = self.rng.gen();
        if x < 0.4 || (x < 0.7 && self.seen.is_empty()) {
            let j = self.rng.gen_range(0..self.own.len());
            self.own[j].clone()
        } else if x < 0.7 {
            let j = self.rng.gen_range(0..self.seen.len());
            self.seen[j].clone()
        } else {
            self.file_name()
        }
    }
    fn vector(&mut self, out: &mut Vec<f32>) {
        let c = self.rng.gen_range(0..CENTERS);
        for i in 0..self.dim as usize {
            let x = self.centers[c][i] + self.rng.gen_range(-SPREAD..SPREAD);
            out.push(x);
        }
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.rng.gen_range(1..=max);
        let b: u8 = self.rng.gen();
        (0..n).map(|i| b.wrapping_add(i as u8)).collect()
    }

    fn run(&mut self, until: Instant) {
        // A worker stops early after MAX_PRINTED failures: the filesystem is likely read-only
        // by then (an aborted journal), and the rest of the run would only count EROFS.
        while Instant::now() < until && self.t.get("failures") < u64::from(MAX_PRINTED) {
            self.t.add("ops", 1);
            let total = self.ops.last().map_or(0, |o| o.0);
            let x = self.rng.gen_range(0..total);
            let Some(&(_, op)) = self.ops.iter().find(|o| o.0 > x) else { return };
            op(self);
        }
    }

    fn create(&mut self) {
        let p = self.file_name();
        let data = self.bytes(2048);
        let trunc = self.rng.gen_bool(0.5);
        let r = (|| {
            let f = OpenOptions::new().write(true).create(true).truncate(trunc).mode(0o666).open(&p)?;
            f.write_at(&data, 0)?;
            Ok(())
        })();
        self.record("create", &p.display(), r.map_err(errno));
    }
    /// A short-lived file with embeddings: create, SET, unlink. Its inode number is freed at
    /// once and taken by the next create, while searches may still be naming it.
    fn churn(&mut self) {
        let p = self.file_name();
        let count = self.rng.gen_range(1..=4);
        let mut v = Vec::with_capacity(count * self.dim as usize);
        for _ in 0..count {
            self.vector(&mut v);
        }
        let r = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(&p)
            .map_err(errno)
            .and_then(|f| ioctl::set_embeddings(&f, self.dim, 0, 0, &v))
            .and_then(|()| fs::remove_file(&p).map_err(errno));
        self.record("churn", &p.display(), r);
    }
    fn write(&mut self) {
        let p = self.target();
        let data = self.bytes(16 * 1024);
        let off = self.rng.gen_range(0..MAX_FILE - data.len() as u64);
        let r = OpenOptions::new().write(true).open(&p).and_then(|f| f.write_at(&data, off).map(drop));
        self.record("write", &p.display(), r.map_err(errno));
    }
    fn append(&mut self) {
        let p = self.target();
        let data = self.bytes(4096);
        let r = (|| {
            let mut f = OpenOptions::new().append(true).open(&p)?;
            if f.metadata()?.len() + data.len() as u64 > MAX_FILE {
                f.set_len(0)?;
            }
            f.write_all(&data)
        })();
        self.record("append", &p.display(), r.map_err(errno));
    }
    fn truncate(&mut self) {
        let p = self.target();
        let len = self.rng.gen_range(0..MAX_FILE);
        let r = OpenOptions::new().write(true).open(&p).and_then(|f| f.set_len(len));
        self.record("truncate", &p.display(), r.map_err(errno));
    }
    fn rename(&mut self) {
        let x: f64 = self.rng.gen();
        if x < 0.25 {
            // One of its fixed files, to another shared directory under its own name.
            let j = self.rng.gen_range(0..self.own.len());
            let Some(name) = self.own[j].file_name().map(|n| n.to_os_string()) else { return };
            let to = self.shared().join(name);
            let from = self.own[j].clone();
            let r = fs::rename(&from, &to).map_err(errno);
            match r {
                Ok(()) => self.own[j] = to,
                // Nobody else moves or removes it: an expected errno other than a full
                // filesystem's is a failure too (record() fails the unexpected ones).
                Err(e) if e != Errno::ENOSPC && EXPECTED.contains(&e) => {
                    self.fail(format_args!("rename of its fixed file {}: {e:?}", from.display()));
                }
                Err(_) => {}
            }
            self.record("rename-fixed", &from.display(), r);
        } else if x < 0.8 {
            let (a, b) = (self.file_name(), self.file_name());
            self.record("rename", &a.display(), fs::rename(&a, &b).map_err(errno));
        } else {
            let (a, b) = (self.dir_name(), self.dir_name());
            self.record("rename-dir", &a.display(), fs::rename(&a, &b).map_err(errno));
        }
    }
    fn unlink(&mut self) {
        let p = self.file_name();
        self.record("unlink", &p.display(), fs::remove_file(&p).map_err(errno));
    }
    fn link(&mut self) {
        let from = if self.rng.gen_bool(0.3) {
            let j = self.rng.gen_range(0..self.own.len());
            self.own[j].clone()
        } else {
            self.file_name()
        };
        let to = self.file_name();
        self.record("link", &to.display(), fs::hard_link(&from, &to).map_err(errno));
    }
    fn mkdir(&mut self) {
        let p = self.dir_name();
        self.record("mkdir", &p.display(), DirBuilder::new().mode(0o777).create(&p).map_err(errno));
    }
    /// rmdir of a subdirectory; half the time its files are unlinked first (one by one, counted
    /// as unlinks), so that directories come and go while others create in them.
    fn rmdir(&mut self) {
        let p = self.dir_name();
        if self.rng.gen_bool(0.5) {
            let names: Vec<PathBuf> = match fs::read_dir(&p) {
                Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(e) => return self.record("readdir", &p.display(), Err(errno(e))),
            };
            self.record("readdir", &"", Ok(()));
            for n in names {
                self.record("unlink", &n.display(), fs::remove_file(&n).map_err(errno));
            }
        }
        self.record("rmdir", &p.display(), fs::remove_dir(&p).map_err(errno));
    }
    fn fsync(&mut self) {
        let p = self.target();
        let data = self.rng.gen_bool(0.5);
        let r = File::open(&p).and_then(|f| if data { f.sync_data() } else { f.sync_all() });
        self.record("fsync", &p.display(), r.map_err(errno));
    }
    fn readdir(&mut self) {
        let d = if self.rng.gen_bool(0.7) { self.shared() } else { self.dir_name() };
        let r = (|| {
            let mut found = Vec::new();
            for e in fs::read_dir(&d)? {
                let e = e?;
                if e.file_type()?.is_file() {
                    found.push(e.path());
                }
            }
            Ok(found)
        })();
        match r {
            Ok(found) => {
                self.seen = found;
                self.record("readdir", &"", Ok(()));
            }
            Err(e) => self.record("readdir", &d.display(), Err(errno(e))),
        }
    }
    fn set(&mut self) {
        let p = self.target();
        let count = self.rng.gen_range(1..=8);
        let mut v = Vec::with_capacity(count * self.dim as usize);
        for _ in 0..count {
            self.vector(&mut v);
        }
        let flags = match self.rng.gen_range(0..8) {
            0 => VEXFS_SET_INDEX_NOW,
            1 | 2 => VEXFS_SET_TRUNCATE,
            _ => 0,
        };
        let kind = if flags & VEXFS_SET_INDEX_NOW != 0 { "set-now" } else { "set" };
        let r = OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(errno)
            .and_then(|f| ioctl::set_embeddings(&f, self.dim, 0, flags, &v));
        self.record(kind, &p.display(), r);
    }
    fn remove(&mut self) {
        let p = self.target();
        let r = OpenOptions::new().write(true).open(&p).map_err(errno).and_then(ioctl::remove_embeddings);
        self.record("remove", &p.display(), r);
    }
    fn get(&mut self) {
        let p = self.target();
        const CAP: u32 = 16;
        let r = File::open(&p).map_err(errno).and_then(|f| ioctl::get_embeddings(&f, self.dim, 0, CAP));
        if let Ok(g) = &r {
            if g.count != g.total.min(CAP) || g.vectors.len() != g.count as usize * self.dim as usize {
                let (c, t) = (g.count, g.total);
                self.fail(format_args!("GET {}: copied {c} vectors of total {t} (capacity {CAP})", p.display()));
            }
        }
        self.record("get", &p.display(), r.map(drop));
    }
    fn search(&mut self) {
        let k = [1u32, 10, 50][self.rng.gen_range(0..3)];
        let efs: Vec<u32> = [0u32, 16, 200].into_iter().filter(|&e| e == 0 || e >= k).collect();
        let ef = efs[self.rng.gen_range(0..efs.len())];
        let mut q = Vec::with_capacity(self.dim as usize);
        self.vector(&mut q);
        let r = ioctl::search(&self.root, &q, k, ef, 0);
        if let Ok(res) = &r {
            self.check(res, k, ef);
        }
        self.record("search", &format_args!("k {k} ef {ef}"), r.map(drop));
    }
    /// The checks of one answer (see the module's doc).
    fn check(&mut self, res: &[VexfsSearchResult], k: u32, ef: u32) {
        self.t.add("searches", 1);
        self.t.add("results", res.len() as u64);
        if res.len() < k as usize {
            self.t.add("short-answers", 1);
        }
        if res.len() > k as usize {
            self.fail(format_args!("search k {k} ef {ef}: {} results", res.len()));
        }
        let mut prev = f32::NEG_INFINITY;
        let mut seen = HashSet::new();
        for r in res {
            let (ino, chunk, d) = (r.ino, r.chunk, r.distance);
            if !d.is_finite() || d < 0.0 || d < prev {
                self.fail(format_args!("search k {k} ef {ef}: distance {d} after {prev} (ino {ino} chunk {chunk})"));
            }
            prev = d;
            if !seen.insert((ino, chunk)) {
                self.t.add("duplicates", 1);
                self.fail(format_args!("search k {k} ef {ef}: ino {ino} chunk {chunk} twice in one answer"));
            }
            let Some(&f) = self.table.get(&ino) else { continue };
            self.t.add("checked", 1);
            if !self.who.may_read(f) {
                self.t.add("violations", 1);
                self.t.add("failures", 1);
                // The first ones are printed whatever else was (all are counted).
                if self.t.get("violations") > u64::from(MAX_PRINTED) {
                    continue;
                }
                elog!(
                    "stress: VIOLATION: worker {} (uid {} gid {}) got ino {ino} chunk {chunk} distance {d} of a file \
                     with uid {} gid {} mode {:04o} (search k {k} ef {ef})",
                    self.id,
                    self.who.uid,
                    self.who.gid,
                    f.uid,
                    f.gid,
                    f.mode
                );
            } else if self.who.uid == 0 && f.uid != 0 && f.mode & 0o004 == 0 {
                self.t.add("private-seen-by-root", 1);
            } else if self.who.uid != 0 && f.uid != self.who.uid {
                self.t.add("others-readable", 1);
            }
        }
    }
}

/// Credentials of worker `w` (0 is root).
fn who(w: usize) -> Who {
    if w == 0 {
        Who { uid: 0, gid: 0 }
    } else {
        let i = (w - 1) as u32;
        Who { uid: 1000 + i, gid: 1000 + i % 2 }
    }
}

fn rng_of(seed: u64, w: usize) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// What setup made: the fixed files' table and each worker's fixed paths.
struct Setup {
    table: HashMap<u64, Fixed>,
    own: Vec<Vec<PathBuf>>,
    centers: Vec<Vec<f32>>,
}

fn setup(mnt: &Path, workers: usize, dim: u32, seed: u64) -> io::Result<Setup> {
    umask(Mode::empty());
    fs::set_permissions(mnt, fs::Permissions::from_mode(0o755))?;
    for d in 0..SHARED_DIRS {
        DirBuilder::new().mode(0o777).create(mnt.join(format!("s{d}")))?;
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let centers: Vec<Vec<f32>> =
        (0..CENTERS).map(|_| (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect()).collect();
    let mut table = HashMap::new();
    let mut own = Vec::new();
    for w in 0..workers {
        let who = who(w);
        let mut paths = Vec::new();
        for j in 0..FIXED_MODES.len() * FIXED_PER_MODE {
            let mode = FIXED_MODES[j / FIXED_PER_MODE];
            let p = mnt.join(format!("s{}", j % SHARED_DIRS)).join(format!("fx-{w}-{j}"));
            let f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&p)?;
            f.write_all_at(format!("fixed file {j} of worker {w}\n").as_bytes(), 0)?;
            let mut v = Vec::new();
            for _ in 0..2 {
                let c = rng.gen_range(0..CENTERS);
                v.extend(centers[c].iter().map(|x| x + rng.gen_range(-SPREAD..SPREAD)));
            }
            let flags = if j % 2 == 0 { VEXFS_SET_INDEX_NOW } else { 0 };
            ioctl::set_embeddings(&f, dim, 0, flags, &v).map_err(io::Error::from)?;
            std::os::unix::fs::fchown(&f, Some(who.uid), Some(who.gid))?;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            let md = f.metadata()?;
            table.insert(md.ino(), Fixed { uid: who.uid, gid: who.gid, mode });
            paths.push(p);
        }
        own.push(paths);
    }
    Ok(Setup { table, own, centers })
}

/// Drops root's privileges for worker `who` (root's own worker keeps them).
fn become_user(who: Who) -> nix::Result<()> {
    if who.uid == 0 {
        return Ok(());
    }
    setgroups(&[Gid::from_raw(who.gid)])?;
    setgid(Gid::from_raw(who.gid))?;
    setuid(Uid::from_raw(who.uid))
}

/// The body of worker `w` in its own process; returns its exit status.
fn worker_main(w: usize, cli: &Cli, dim: u32, s: &Setup, until: Instant, out: File) -> i32 {
    let who = who(w);
    if let Err(e) = become_user(who) {
        elog!("stress: worker {w}: cannot become uid {} gid {}: {e}", who.uid, who.gid);
        return 2;
    }
    let root = match File::open(&cli.mnt) {
        Ok(f) => f,
        Err(e) => {
            elog!("stress: worker {w}: cannot open {}: {e}", cli.mnt.display());
            return 2;
        }
    };
    let ops = match op_table(&cli.ops) {
        Ok(o) => o,
        Err(e) => {
            elog!("stress: {e}");
            return 2;
        }
    };
    let mut wk = Worker {
        ops,
        id: w,
        who,
        mnt: cli.mnt.clone(),
        dim,
        rng: rng_of(cli.seed, w),
        centers: &s.centers,
        table: &s.table,
        own: s.own[w].clone(),
        seen: Vec::new(),
        root,
        t: Tally::default(),
        printed: 0,
    };
    wk.run(until);
    let t = &wk.t;
    println!(
        "stress: worker {w} (uid {} gid {}): ops {} searches {} results {} checked {} violations {} failures {}",
        who.uid,
        who.gid,
        t.get("ops"),
        t.get("searches"),
        t.get("results"),
        t.get("checked"),
        t.get("violations"),
        t.get("failures")
    );
    let mut out = out;
    if out.write_all(t.encode().as_bytes()).is_err() {
        return 2;
    }
    i32::from(t.get("failures") > 0)
}

/// Prints what the kernel says about a task (a suspected deadlock).
fn dump_task(pid: &str, why: &str) {
    let read = |f: &str| fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_else(|e| format!("({e})"));
    let comm = read("comm");
    let state = read("status").lines().find(|l| l.starts_with("State:")).unwrap_or("").to_string();
    elog!("stress: {why}: pid {pid} {} {state}", comm.trim());
    elog!("stress:   wchan: {}", read("wchan").trim());
    elog!("stress:   syscall: {}", read("syscall").trim());
    match fs::read_to_string(format!("/proc/{pid}/stack")) {
        Ok(stack) => stack.lines().for_each(|l| elog!("stress:   stack: {l}")),
        Err(e) => elog!("stress:   stack: unavailable ({e}; the kernel needs CONFIG_STACKTRACE)"),
    }
}

/// Every task in uninterruptible sleep (D), the vexfs kernel threads included when they are.
fn dump_blocked() {
    let Ok(rd) = fs::read_dir("/proc") else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let status = fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if status.lines().any(|l| l.starts_with("State:") && l.contains("D ")) || comm.contains("vexfs") {
            dump_task(pid, "task");
        }
    }
}

/// Whether every fixed file is in a shared directory once, under its own name, with its owner
/// and mode.
fn check_fixed(mnt: &Path, s: &Setup) -> io::Result<bool> {
    let mut found: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    for d in 0..SHARED_DIRS {
        for e in fs::read_dir(mnt.join(format!("s{d}")))? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("fx-") {
                let md = fs::symlink_metadata(e.path())?;
                found.entry(md.ino()).or_default().push(e.path());
            }
        }
    }
    let mut ok = true;
    for own in &s.own {
        for p in own {
            let name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            let hit: Vec<(u64, &PathBuf)> = found
                .iter()
                .flat_map(|(ino, ps)| ps.iter().map(move |p| (*ino, p)))
                .filter(|(_, q)| q.file_name() == Some(name.as_os_str()))
                .collect();
            let [(ino, q)] = hit.as_slice() else {
                elog!("stress: fixed file {}: {} entries by that name", name.to_string_lossy(), hit.len());
                ok = false;
                continue;
            };
            let md = fs::symlink_metadata(q)?;
            match s.table.get(ino) {
                Some(f) if f.uid == md.uid() && f.gid == md.gid() && f.mode == md.mode() & 0o7777 => {}
                other => {
                    elog!(
                        "stress: fixed file {}: ino {ino} uid {} gid {} mode {:04o}, table says {other:?}",
                        q.display(),
                        md.uid(),
                        md.gid(),
                        md.mode() & 0o7777
                    );
                    ok = false;
                }
            }
        }
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !Uid::effective().is_root() {
        elog!("stress: run as root (setup chowns files and the workers change user)");
        return ExitCode::from(2);
    }
    let stats = match File::open(&cli.mnt).map_err(errno).and_then(ioctl::stats) {
        Ok(s) => s,
        Err(e) => {
            elog!("stress: STATS on {}: {e} (not a mounted vexfs?)", cli.mnt.display());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = op_table(&cli.ops) {
        elog!("stress: --ops: {e}");
        return ExitCode::from(2);
    }
    let dim = stats.dim;
    let nworkers = cli.workers as usize + 1;
    let s = match setup(&cli.mnt, nworkers, dim, cli.seed) {
        Ok(s) => s,
        Err(e) => {
            elog!("stress: setup in {}: {e} (a fresh filesystem is needed)", cli.mnt.display());
            return ExitCode::from(1);
        }
    };
    let margin = cli.margin.unwrap_or((cli.seconds / 2).max(60));
    println!(
        "stress: seed {} dim {dim} workers {} (uids 0, 1000..{}) seconds {} margin {margin}; {} fixed files",
        cli.seed,
        nworkers,
        999 + cli.workers,
        cli.seconds,
        s.table.len()
    );
    let _ = io::stdout().flush();
    let start = Instant::now();
    let until = start + Duration::from_secs(cli.seconds);
    let mut live: Vec<(usize, Pid, File)> = Vec::new();
    let mut failed = false;
    for w in 0..nworkers {
        let (rd, wr) = match pipe() {
            Ok(p) => p,
            Err(e) => {
                elog!("stress: pipe: {e}");
                failed = true;
                break;
            }
        };
        // SAFETY: this process is single-threaded (no thread was started), so the child may run
        // any code; it only runs worker_main and exits without returning to main.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop(rd);
                let code = worker_main(w, &cli, dim, &s, until, File::from(wr));
                let _ = io::stdout().flush();
                std::process::exit(code);
            }
            Ok(ForkResult::Parent { child }) => {
                drop(wr);
                live.push((w, child, File::from(rd)));
            }
            Err(e) => {
                elog!("stress: fork: {e}");
                failed = true;
                break;
            }
        }
    }
    let deadline = until + Duration::from_secs(margin);
    let mut total = Tally::default();
    while !live.is_empty() && Instant::now() < deadline {
        let mut i = 0;
        while i < live.len() {
            match waitpid(live[i].1, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => i += 1,
                Ok(st) => {
                    let (w, _, mut rd) = live.swap_remove(i);
                    let mut text = String::new();
                    if rd.read_to_string(&mut text).is_err() || !total.merge(&text) {
                        elog!("stress: worker {w}: unreadable tally");
                        failed = true;
                    }
                    if !matches!(st, WaitStatus::Exited(_, 0)) {
                        elog!("stress: worker {w} ended with {st:?}");
                        failed = true;
                    }
                }
                Err(e) => {
                    elog!("stress: waitpid worker {}: {e}", live[i].0);
                    live.swap_remove(i);
                    failed = true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !live.is_empty() {
        elog!(
            "stress: SUSPECTED DEADLOCK: {} workers still running {} s after the end of the run (seed {})",
            live.len(),
            margin,
            cli.seed
        );
        for (w, pid, _) in &live {
            dump_task(&pid.to_string(), &format!("worker {w}"));
        }
        dump_blocked();
        for (_, pid, _) in &live {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_secs(2));
        for (_, pid, _) in &live {
            let _ = waitpid(*pid, Some(WaitPidFlag::WNOHANG));
        }
        println!("stress-figures: seed {} deadlock {} workers", cli.seed, live.len());
        return ExitCode::from(1);
    }
    let elapsed = start.elapsed().as_secs_f64().max(0.001);
    println!("stress: operations (successes, then errnos):");
    for l in total.op_lines() {
        println!("stress:   {l}");
    }
    match check_fixed(&cli.mnt, &s) {
        Ok(true) => {}
        Ok(false) => failed = true,
        Err(e) => {
            elog!("stress: checking the fixed files: {e}");
            failed = true;
        }
    }
    match File::open(&cli.mnt).map_err(errno).and_then(ioctl::stats) {
        Ok(st) => println!(
            "stress: index after the run: vectors {} pending {} deleted {} capacity {}",
            st.vectors, st.pending, st.deleted, st.capacity
        ),
        Err(e) => {
            elog!("stress: STATS after the run: {e}");
            failed = true;
        }
    }
    let g = |n: &str| total.get(n);
    println!(
        "stress-figures: seed {} workers {nworkers} seconds {:.0} ops {} ops/s {:.0} searches {} results {} checked {} \
         others-readable {} private-seen-by-root {} short-answers {} violations {} failures {}",
        cli.seed,
        elapsed,
        g("ops"),
        g("ops") as f64 / elapsed,
        g("searches"),
        g("results"),
        g("checked"),
        g("others-readable"),
        g("private-seen-by-root"),
        g("short-answers"),
        g("violations"),
        g("failures")
    );
    if failed || g("failures") > 0 || g("violations") > 0 {
        elog!("stress: FAILED (seed {})", cli.seed);
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
