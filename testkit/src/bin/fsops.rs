//! `fsops`: reproducible random filesystem operations, for the ext4 oracle test
//! (tests/guest/080-ext4-oracle.sh).
//!
//! `fsops run --seed S --count N --log LOG DIR` runs seed S's sequence of N operations in DIR
//! (which it creates) and writes one line per operation to LOG: its number, what it did and its
//! result (`ok`, with what it read, or the errno's name). The choice of each operation depends only
//! on the seed and on a model of the tree that is updated from the results, so two filesystems
//! that give the same results run the same operations, and the first line where their logs differ
//! is the first operation where they behaved differently. The model also holds every file's
//! content: each read is checked against it, and at the end the whole tree is checked against it
//! (exit status 1 on a difference, even if both filesystems agree).
//!
//! `fsops dump [--mtimes] DIR` prints the tree under DIR canonically (sorted paths; type, mode,
//! link count, size, sha256 of the contents, symlink target, which paths are hard links of one
//! inode; with `--mtimes` also mtime to the nanosecond). Directory sizes are not printed: they
//! depend on each filesystem's directory format. `fsops stamp --seed S DIR` sets every entry's
//! atime and mtime to nanosecond times derived from S and the path, so that mtimes can be compared
//! after the run. `fsops diff A B` prints the first line where two logs or dumps differ.
//!
//! Operations: create (O_EXCL, and O_CREAT|O_TRUNC of an existing file), pwrite at random offsets
//! and sizes (inside the file, appends, sparse writes past EOF), O_APPEND writes, appends to two
//! files in turn, truncate (path and fd, grow and shrink), pread, rename (over files, over empty
//! and non-empty directories, across types, into its own subtree, with RENAME_NOREPLACE), link,
//! symlink (up to the 4,095-byte limit), readlink, unlink, mkdir, rmdir, fsync, fdatasync, sync,
//! chmod (with set-id bits), utimensat with nanoseconds (files, directories, symlinks), lstat,
//! lseek SEEK_DATA/SEEK_HOLE, FIEMAP (the file ranges mapped), writes through a shared mapping,
//! fallocate (punch, zero range, allocate, keep size), setxattr/getxattr/removexattr/listxattr of
//! `user.` attributes (and every file's `user.` attributes in the final trees);
//! names of 255 and 256 bytes; RENAME_EXCHANGE; "wide" batches of 40 to 120 files in one
//! directory (so that vexfs indexes it and splits its buckets). Left out (issue 11): mknod,
//! O_TMPFILE, RENAME_WHITEOUT (vexfs has them; the model does not yet: guest 018 tests them), `trusted.` and `security.`
//! attributes (guest 018), O_DIRECT (guest 019 compares it and fallocate's bytes with ext4's).
//!
//! Sizes are bounded so that no file has more than `--file-blocks` allocated 4 KiB blocks (default
//! 200) and a seed's files together no more than `--total-blocks` (default 4096), to keep a seed
//! short. `--big` raises both (and the interleaved appends): files of thousands of scattered
//! blocks, which vexfs before format v3 (extent trees) refused with EFBIG where ext4 succeeded.

use clap::{Args, Parser, Subcommand};
use nix::errno::Errno;
use nix::sys::stat::{utimensat, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const BLOCK: u64 = 4096;
/// Names a directory's entries are drawn from (few, so that names collide and replace).
const NAMES: [&str; 12] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
/// Deepest directory the generator makes (the work directory is depth 0).
const MAX_DEPTH: usize = 5;
/// Above this many entries, the generator favours removing over adding.
const MAX_ENTRIES: usize = 160;

#[derive(Parser)]
#[command(about = "Reproducible random filesystem operations and canonical tree dumps (the ext4 oracle)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs seed SEED's sequence of COUNT operations in DIR (created; must not exist).
    /// Exit status 0, or 1 if the filesystem disagreed with the model, 2 on a setup error.
    Run(RunArgs),
    /// Prints the tree under DIR canonically (DIR itself excluded), one line per entry.
    Dump {
        /// Also print each entry's mtime (seconds.nanoseconds).
        #[arg(long)]
        mtimes: bool,
        /// The directory to dump.
        dir: PathBuf,
    },
    /// Sets the atime and mtime of every entry under DIR to times derived from SEED and its path.
    Stamp {
        /// Seed of the times.
        #[arg(long)]
        seed: u64,
        /// The directory whose entries to stamp.
        dir: PathBuf,
    },
    /// Compares two logs or dumps line by line: prints the first difference and exits 1.
    Diff {
        /// The reference (ext4's).
        a: PathBuf,
        /// The file checked against it (vexfs's).
        b: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Seed of the operation sequence.
    #[arg(long)]
    seed: u64,
    /// Number of operations.
    #[arg(long)]
    count: u64,
    /// Where to write the operation log.
    #[arg(long)]
    log: PathBuf,
    /// Larger files and interleaved appends (files of thousands of scattered blocks).
    #[arg(long)]
    big: bool,
    /// Most allocated 4 KiB blocks in one file (default 200, or 4096 with --big).
    #[arg(long)]
    file_blocks: Option<usize>,
    /// Most allocated 4 KiB blocks in all of the seed's files (default 4096, or 16384 with --big).
    #[arg(long)]
    total_blocks: Option<usize>,
    /// The work directory.
    dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run(&a),
        Cmd::Dump { mtimes, dir } => dump(&dir, mtimes).map(|_| true),
        Cmd::Stamp { seed, dir } => stamp(seed, &dir).map(|_| true),
        Cmd::Diff { a, b } => diff(&a, &b),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fsops: {e}");
            ExitCode::from(2)
        }
    }
}

// ---- the model ----------------------------------------------------------------------------------

/// A path below the work directory, as its components.
type Rel = Vec<String>;

fn show(p: &[String]) -> String {
    if p.is_empty() {
        ".".to_string()
    } else {
        p.join("/")
    }
}

/// A directory of the model: its entries by name.
#[derive(Default, Clone)]
struct Dir {
    entries: BTreeMap<String, Node>,
}

#[derive(Clone)]
enum Node {
    Dir(Dir),
    /// A regular file or a symlink: an inode of [`Model::inodes`].
    Ino(u64),
}

enum InoKind {
    File {
        size: u64,
        /// Allocated blocks and their content (holes are absent).
        blocks: BTreeMap<u64, Vec<u8>>,
    },
    Symlink(String),
}

struct Ino {
    nlink: u64,
    kind: InoKind,
    /// `user.` extended attributes (regular files): name, value.
    xattrs: BTreeMap<String, Vec<u8>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    File,
    Dir,
    Symlink,
}

struct Model {
    root: Dir,
    inodes: BTreeMap<u64, Ino>,
    next_ino: u64,
    /// Allocated blocks of all files.
    total_blocks: usize,
    /// Set when a result could not be applied to the model (a filesystem that did the impossible).
    broken: Option<String>,
}

impl Model {
    fn dir(&self, p: &[String]) -> Option<&Dir> {
        let mut d = &self.root;
        for c in p {
            match d.entries.get(c) {
                Some(Node::Dir(x)) => d = x,
                _ => return None,
            }
        }
        Some(d)
    }

    fn dir_mut(&mut self, p: &[String]) -> Option<&mut Dir> {
        let mut d = &mut self.root;
        for c in p {
            match d.entries.get_mut(c) {
                Some(Node::Dir(x)) => d = x,
                _ => return None,
            }
        }
        Some(d)
    }

    fn node(&self, p: &[String]) -> Option<&Node> {
        let (name, parent) = p.split_last()?;
        self.dir(parent)?.entries.get(name)
    }

    fn kind_of(&self, n: &Node) -> Kind {
        match n {
            Node::Dir(_) => Kind::Dir,
            Node::Ino(i) => match self.inodes.get(i).map(|x| &x.kind) {
                Some(InoKind::Symlink(_)) => Kind::Symlink,
                _ => Kind::File,
            },
        }
    }

    /// Every entry below the root, depth first in name order: (path, kind, inode number).
    fn walk(&self) -> Vec<(Rel, Kind, Option<u64>)> {
        let mut out = Vec::new();
        let mut stack = vec![(Vec::new(), &self.root)];
        while let Some((p, d)) = stack.pop() {
            // Reverse order on the stack, so that entries come out in name order.
            for (name, n) in d.entries.iter() {
                let mut q = p.clone();
                q.push(name.clone());
                match n {
                    Node::Dir(_) => out.push((q, Kind::Dir, None)),
                    Node::Ino(i) => out.push((q, self.kind_of(n), Some(*i))),
                }
            }
            for (name, n) in d.entries.iter().rev() {
                if let Node::Dir(x) = n {
                    let mut q = p.clone();
                    q.push(name.clone());
                    stack.push((q, x));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn file(&mut self, ino: u64) -> Option<(&mut u64, &mut BTreeMap<u64, Vec<u8>>)> {
        match self.inodes.get_mut(&ino).map(|x| &mut x.kind) {
            Some(InoKind::File { size, blocks }) => Some((size, blocks)),
            _ => None,
        }
    }

    fn ino_at(&self, p: &[String]) -> Option<u64> {
        match self.node(p) {
            Some(Node::Ino(i)) => Some(*i),
            _ => None,
        }
    }

    fn fail(&mut self, msg: String) {
        if self.broken.is_none() {
            self.broken = Some(msg);
        }
    }

    /// Inserts `n` at `p` (replacing nothing: the caller removed any old entry).
    fn insert(&mut self, p: &[String], n: Node) {
        let Some((name, parent)) = p.split_last() else { return self.fail("insert at the root".into()) };
        match self.dir_mut(parent) {
            Some(d) => {
                d.entries.insert(name.clone(), n);
            }
            None => self.fail(format!("no directory {} in the model", show(parent))),
        }
    }

    fn new_ino(&mut self, kind: InoKind) -> u64 {
        let i = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(i, Ino { nlink: 1, kind, xattrs: BTreeMap::new() });
        i
    }

    /// Removes the entry at `p` and drops a link of its inode.
    fn remove(&mut self, p: &[String]) -> Option<Node> {
        let (name, parent) = p.split_last()?;
        let n = self.dir_mut(parent)?.entries.remove(name)?;
        if let Node::Ino(i) = n {
            self.drop_link(i);
        }
        Some(n)
    }

    fn drop_link(&mut self, i: u64) {
        let gone = match self.inodes.get_mut(&i) {
            Some(x) => {
                x.nlink = x.nlink.saturating_sub(1);
                x.nlink == 0
            }
            None => false,
        };
        if gone {
            if let Some(Ino { kind: InoKind::File { blocks, .. }, .. }) = self.inodes.remove(&i) {
                self.total_blocks -= blocks.len();
            }
        }
    }

    /// The effect of a successful write of `data` at `off` of inode `ino`.
    fn write(&mut self, ino: u64, off: u64, data: &[u8]) {
        if data.is_empty() {
            // Nothing written: the size does not move, even for an offset past the end.
            return;
        }
        let mut added = 0;
        let Some((size, blocks)) = self.file(ino) else { return self.fail(format!("write to non-file inode {ino}")) };
        let mut pos = off;
        let mut rest = data;
        while !rest.is_empty() {
            let b = pos / BLOCK;
            let in_b = (pos % BLOCK) as usize;
            let n = rest.len().min(BLOCK as usize - in_b);
            let blk = blocks.entry(b).or_insert_with(|| {
                added += 1;
                vec![0; BLOCK as usize]
            });
            blk[in_b..in_b + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            pos += n as u64;
        }
        if pos > *size {
            *size = pos;
        }
        self.total_blocks += added;
    }

    fn truncate(&mut self, ino: u64, new: u64) {
        let Some((size, blocks)) = self.file(ino) else {
            return self.fail(format!("truncate of non-file inode {ino}"));
        };
        let keep = new.div_ceil(BLOCK);
        let before = blocks.len();
        blocks.retain(|b, _| *b < keep);
        if new % BLOCK != 0 {
            if let Some(blk) = blocks.get_mut(&(new / BLOCK)) {
                blk[(new % BLOCK) as usize..].fill(0);
            }
        }
        *size = new;
        let removed = before - blocks.len();
        self.total_blocks -= removed;
    }

    /// `len` bytes at `off` of file `ino`, as a read would return them (short at EOF).
    fn read(&self, ino: u64, off: u64, len: u64) -> Vec<u8> {
        let Some(Ino { kind: InoKind::File { size, blocks }, .. }) = self.inodes.get(&ino) else { return Vec::new() };
        let end = (off + len).min(*size);
        let mut out = Vec::new();
        let mut pos = off;
        while pos < end {
            let b = pos / BLOCK;
            let in_b = (pos % BLOCK) as usize;
            let n = ((end - pos) as usize).min(BLOCK as usize - in_b);
            match blocks.get(&b) {
                Some(blk) => out.extend_from_slice(&blk[in_b..in_b + n]),
                None => out.resize(out.len() + n, 0),
            }
            pos += n as u64;
        }
        out
    }

    /// The allocated blocks a write of `len` bytes at `off` would add to `ino`.
    fn new_blocks(&self, ino: u64, off: u64, len: u64) -> usize {
        let Some(Ino { kind: InoKind::File { blocks, .. }, .. }) = self.inodes.get(&ino) else { return 0 };
        if len == 0 {
            return 0;
        }
        (off / BLOCK..=(off + len - 1) / BLOCK).filter(|b| !blocks.contains_key(b)).count()
    }

    fn file_blocks(&self, ino: u64) -> usize {
        match self.inodes.get(&ino).map(|x| &x.kind) {
            Some(InoKind::File { blocks, .. }) => blocks.len(),
            _ => 0,
        }
    }

    fn size(&self, ino: u64) -> u64 {
        match self.inodes.get(&ino).map(|x| &x.kind) {
            Some(InoKind::File { size, .. }) => *size,
            Some(InoKind::Symlink(t)) => t.len() as u64,
            None => 0,
        }
    }

    /// The successful `RENAME_EXCHANGE` of `a` and `b`: the two entries swap what they name.
    fn exchange(&mut self, a: &[String], b: &[String]) {
        if a == b {
            return;
        }
        if a.starts_with(b) || b.starts_with(a) {
            return self.fail(format!("exchange of {} and {}, one inside the other, succeeded", show(a), show(b)));
        }
        let (Some((na, pa)), Some((nb, pb))) = (a.split_last(), b.split_last()) else {
            return self.fail("exchange of the root".into());
        };
        let x = self.dir_mut(pa).and_then(|d| d.entries.remove(na));
        let y = self.dir_mut(pb).and_then(|d| d.entries.remove(nb));
        let (Some(x), Some(y)) = (x, y) else {
            return self.fail(format!("exchange of {} and {}: not both in the model", show(a), show(b)));
        };
        self.insert(a, y);
        self.insert(b, x);
    }

    /// The successful rename of `from` to `to` (POSIX: the same inode under both names is a no-op).
    fn rename(&mut self, from: &[String], to: &[String]) {
        if from == to {
            return;
        }
        if let (Some(a), Some(b)) = (self.ino_at(from), self.ino_at(to)) {
            if a == b {
                return;
            }
        }
        if to.starts_with(from) {
            return self.fail(format!("rename of {} into itself succeeded", show(from)));
        }
        let Some((name, parent)) = from.split_last() else { return self.fail("rename of the root".into()) };
        let Some(n) = self.dir_mut(parent).and_then(|d| d.entries.remove(name)) else {
            return self.fail(format!("rename source {} not in the model", show(from)));
        };
        if self.node(to).is_some() {
            self.remove(to);
        }
        self.insert(to, n);
    }
}

// ---- the generator ------------------------------------------------------------------------------

struct Gen {
    rng: SmallRng,
    m: Model,
    base: PathBuf,
    file_blocks: usize,
    total_blocks: usize,
    max_size: u64,
    interleave_rounds: u32,
    /// First difference between a read and the model.
    mismatch: Option<String>,
    /// Files whose size the last operation changed (their sizes are then checked).
    touched: Vec<Rel>,
    /// Number of results per name (ok, ENOENT, ...).
    results: BTreeMap<String, u64>,
    /// Inodes fallocate touched: ext4 keeps their preallocated blocks unwritten (SEEK_DATA
    /// skips them, FIEMAP maps them past the end) where vexfs writes zeros, so seeks and
    /// FIEMAP are not compared on them.
    fallocated: std::collections::BTreeSet<u64>,
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("{:?}", Errno::from_raw(n)),
        None => format!("{:?}", e.kind()),
    }
}

fn nix_name(e: Errno) -> String {
    format!("{e:?}")
}

fn hex(d: &[u8]) -> String {
    d.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sha(d: &[u8]) -> String {
    hex(&Sha256::digest(d))
}

/// One operation's outcome: what to log after the arrow.
type Outcome = Result<String, String>;

/// The `user.` attributes of the file at `p` (other namespaces are the system's: not compared).
fn real_xattrs(p: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let c = cstr(p)?;
    let mut names = vec![0u8; 65536];
    // SAFETY: listxattr(2) into a buffer of the size given; `c` is NUL-terminated.
    let n = unsafe { nix::libc::listxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(format!("listxattr {}: {}", p.display(), io::Error::last_os_error()));
    }
    let mut out = BTreeMap::new();
    for name in names[..n as usize].split(|&b| b == 0).filter(|s| s.starts_with(b"user.")) {
        let cn = CString::new(name).map_err(|_| "a name with a NUL".to_string())?;
        let mut v = vec![0u8; 65536];
        // SAFETY: getxattr(2) into a buffer of the size given.
        let m = unsafe { nix::libc::getxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if m < 0 {
            return Err(format!("getxattr {}: {}", p.display(), io::Error::last_os_error()));
        }
        v.truncate(m as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), v);
    }
    Ok(out)
}

/// `name:sha256-prefix` of each attribute, sorted, comma-separated (`-` for none).
fn xattr_summary(x: &BTreeMap<String, Vec<u8>>) -> String {
    if x.is_empty() {
        return "-".into();
    }
    x.iter().map(|(k, v)| format!("{k}:{}", &sha(v)[..12])).collect::<Vec<_>>().join(",")
}

/// The attribute names fsops uses (few, so that sets replace and removes find them).
const XATTR_NAMES: [&str; 4] = ["user.a", "user.b", "user.color", "user.long"];

/// `FS_IOC_FIEMAP`: `_IOWR('f', 11, struct fiemap)` (32-byte header).
const FS_IOC_FIEMAP: u64 = 0xC020_660B;
/// `FIEMAP_FLAG_SYNC`: write dirty data before mapping.
const FIEMAP_FLAG_SYNC: u32 = 1;
/// `FIEMAP_EXTENT_LAST`.
const FIEMAP_EXTENT_LAST: u32 = 1;
/// Extents asked for per call (each 56 bytes after the 32-byte header).
const FIEMAP_BATCH: usize = 64;

/// The byte ranges `f` maps by `FS_IOC_FIEMAP` (`<start>-<end>` merged where they touch) and the
/// `FIEMAP_EXTENT_LAST` flag of the last extent: `ok ranges=... last=0|1`.
fn fiemap_ranges(f: &File) -> io::Result<String> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut last = false;
    let mut start = 0u64;
    loop {
        // struct fiemap { u64 fm_start, fm_length; u32 fm_flags, fm_mapped_extents,
        // fm_extent_count, fm_reserved; struct fiemap_extent fm_extents[]; } and each extent
        // { u64 fe_logical, fe_physical, fe_length, fe_reserved64[2]; u32 fe_flags, fe_reserved[3]; }
        let mut buf = vec![0u64; (32 + 56 * FIEMAP_BATCH) / 8];
        buf[0] = start;
        buf[1] = u64::MAX - start;
        buf[2] = u64::from(FIEMAP_FLAG_SYNC);
        buf[3] = FIEMAP_BATCH as u64; // fm_extent_count (low half of word 3), fm_reserved 0
                                      // SAFETY: FS_IOC_FIEMAP reads and writes the buffer, sized for FIEMAP_BATCH extents.
        let r = unsafe { nix::libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(f), FS_IOC_FIEMAP as _, buf.as_mut_ptr()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mapped = (buf[2] >> 32) as usize;
        for i in 0..mapped.min(FIEMAP_BATCH) {
            let e = &buf[4 + i * 7..4 + (i + 1) * 7];
            let (logical, len, flags) = (e[0], e[2], e[5] as u32);
            match ranges.last_mut() {
                Some(r) if r.1 == logical => r.1 += len,
                _ => ranges.push((logical, logical + len)),
            }
            last = flags & FIEMAP_EXTENT_LAST != 0;
            start = logical + len;
        }
        if mapped < FIEMAP_BATCH || last {
            break;
        }
    }
    let list: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    Ok(format!("ok ranges={} last={}", list.join(","), u8::from(last)))
}

/// An operation of the generator: what it did and its outcome.
type Op = fn(&mut Gen) -> (String, Outcome);

fn res<T>(r: io::Result<T>) -> Result<T, String> {
    r.map_err(|e| errno_name(&e))
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| "EINVAL".to_string())
}

/// Writes `data` to `f` at its file position (the end, for O_APPEND) with as many write calls as
/// it takes: the bytes written, and `ok` or the error (with the bytes written before it, if any).
fn write_counted(f: &mut File, data: &[u8]) -> (usize, Outcome) {
    let mut done = 0;
    while done < data.len() {
        match f.write(&data[done..]) {
            Ok(0) => return (done, Err(format!("short write after {done}"))),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if done > 0 => return (done, Err(format!("{} after {done}", errno_name(&e)))),
            Err(e) => return (done, Err(errno_name(&e))),
        }
    }
    (done, Ok("ok".into()))
}

/// renameat2 (nix offers it only with glibc; the guest tools are musl).
fn rename_noreplace(from: &Path, to: &Path) -> Outcome {
    renameat2(from, to, nix::libc::RENAME_NOREPLACE)
}

/// `renameat2(from, to, flags)` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
fn renameat2(from: &Path, to: &Path, flags: nix::libc::c_uint) -> Outcome {
    let (a, b) = (cstr(from)?, cstr(to)?);
    // SAFETY: both pointers are NUL-terminated strings that outlive the call; renameat2 reads
    // them only, and AT_FDCWD is a valid directory descriptor for it.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_renameat2,
            nix::libc::AT_FDCWD,
            a.as_ptr(),
            nix::libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok("ok".into())
    } else {
        Err(errno_name(&io::Error::last_os_error()))
    }
}

impl Gen {
    fn path(&self, p: &[String]) -> PathBuf {
        let mut x = self.base.clone();
        x.extend(p);
        x
    }

    fn pick<T: Clone>(&mut self, v: &[T]) -> Option<T> {
        if v.is_empty() {
            None
        } else {
            Some(v[self.rng.gen_range(0..v.len())].clone())
        }
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.gen_range(0..100) < percent
    }

    fn entries(&self) -> Vec<(Rel, Kind, Option<u64>)> {
        self.m.walk()
    }

    fn of_kind(&self, k: Kind) -> Vec<Rel> {
        self.entries().into_iter().filter(|e| e.1 == k).map(|e| e.0).collect()
    }

    /// Directories (the work directory included) where a new entry may go.
    fn dirs_for_new(&self) -> Vec<Rel> {
        let mut v = vec![Vec::new()];
        v.extend(self.of_kind(Kind::Dir).into_iter().filter(|p| p.len() < MAX_DEPTH));
        v
    }

    /// A name not yet in `dir`: one of [`NAMES`], or rarely one of 255 or 256 bytes.
    fn fresh_name(&mut self, dir: &[String]) -> String {
        if self.chance(1) {
            let len = if self.chance(50) { 255 } else { 256 };
            let c = char::from(b'm' + self.rng.gen_range(0..3u8));
            return std::iter::repeat(c).take(len).collect();
        }
        let taken: Vec<String> = self.m.dir(dir).map(|d| d.entries.keys().cloned().collect()).unwrap_or_default();
        let free: Vec<&str> = NAMES.iter().copied().filter(|n| !taken.iter().any(|t| t == n)).collect();
        match self.pick(&free) {
            Some(n) => n.to_string(),
            None => format!("z{}", self.rng.gen_range(0..1000)),
        }
    }

    /// A new path in a random directory.
    fn fresh_path(&mut self) -> Rel {
        let dirs = self.dirs_for_new();
        let mut d = self.pick(&dirs).unwrap_or_default();
        let n = self.fresh_name(&d);
        d.push(n);
        d
    }

    fn any_entry(&mut self) -> Option<Rel> {
        let e: Vec<Rel> = self.entries().into_iter().map(|e| e.0).collect();
        self.pick(&e)
    }

    /// A file to write to, with its inode.
    fn pick_file(&mut self) -> Option<(Rel, u64)> {
        let v: Vec<(Rel, u64)> =
            self.entries().into_iter().filter(|e| e.1 == Kind::File).filter_map(|e| Some((e.0, e.2?))).collect();
        self.pick(&v)
    }

    fn mode(&mut self, dir: bool) -> u32 {
        const COMMON: [u32; 8] = [0o644, 0o600, 0o755, 0o700, 0o444, 0o4755, 0o2755, 0o1777];
        if self.chance(70) {
            let m = COMMON[self.rng.gen_range(0..COMMON.len())];
            if dir {
                m | 0o700
            } else {
                m
            }
        } else {
            self.rng.gen_range(0..0o10000)
        }
    }

    fn data(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        // Runs of zeros now and then, so that zero-filled and hole blocks get compared too.
        if !self.chance(10) {
            self.rng.fill_bytes(&mut v);
        }
        v
    }

    fn write_len(&mut self) -> u64 {
        match self.rng.gen_range(0..4) {
            0 => self.rng.gen_range(1..=512),
            1 => self.rng.gen_range(1..=16384),
            2 => BLOCK * self.rng.gen_range(1..=16),
            _ => self.rng.gen_range(16384..=65536),
        }
    }

    /// Whether adding `new` blocks to inode `ino` stays within the limits.
    fn fits(&self, ino: u64, new: usize) -> bool {
        self.m.file_blocks(ino) + new <= self.file_blocks && self.m.total_blocks + new <= self.total_blocks
    }

    // ---- operations: each returns (description, outcome) and updates the model on success ----

    fn op_create(&mut self) -> (String, Outcome) {
        let files = self.of_kind(Kind::File);
        if !files.is_empty() && self.chance(12) {
            // O_CREAT|O_TRUNC of an existing file: it opens and truncates to 0.
            let Some(p) = self.pick(&files) else { return self.op_mkdir() };
            let r = OpenOptions::new().write(true).create(true).truncate(true).open(self.path(&p));
            let out = res(r).map(|_| "ok".to_string());
            if out.is_ok() {
                if let Some(i) = self.m.ino_at(&p) {
                    self.m.truncate(i, 0);
                    self.touched.push(p.clone());
                }
            }
            return (format!("create-trunc {}", show(&p)), out);
        }
        let p = if self.chance(8) { self.any_entry().unwrap_or_else(|| self.fresh_path()) } else { self.fresh_path() };
        let mode = self.mode(false);
        let r = OpenOptions::new().write(true).create_new(true).mode(mode).open(self.path(&p));
        let out = res(r).map(|_| "ok".to_string());
        if out.is_ok() {
            let i = self.m.new_ino(InoKind::File { size: 0, blocks: BTreeMap::new() });
            self.m.insert(&p, Node::Ino(i));
        }
        (format!("create {} mode={mode:o}", show(&p)), out)
    }

    /// Many empty files at once in one directory (40 to 120, names of 68 to 208 bytes): more
    /// than a directory block holds, so vexfs indexes the directory and splits its buckets;
    /// later operations pick them like any entry (the tree is crowded then: mostly unlinks).
    fn op_wide(&mut self) -> (String, Outcome) {
        let dirs = self.dirs_for_new();
        let d = self.pick(&dirs).unwrap_or_default();
        let n = self.rng.gen_range(40..=120);
        let tag = self.rng.gen_range(0..1000u32);
        let desc = format!("wide {} n={n} tag={tag}", show(&d));
        let mut made = 0;
        for k in 0..n {
            let len = self.rng.gen_range(60..=200);
            let mut p = d.clone();
            p.push(format!("w{tag:03}-{k:03}-{}", "x".repeat(len)));
            if self.m.node(&p).is_some() {
                continue;
            }
            match OpenOptions::new().write(true).create_new(true).mode(0o644).open(self.path(&p)) {
                Ok(_) => {
                    let i = self.m.new_ino(InoKind::File { size: 0, blocks: BTreeMap::new() });
                    self.m.insert(&p, Node::Ino(i));
                    made += 1;
                }
                Err(e) => return (desc, Err(format!("{} after {made}", errno_name(&e)))),
            }
        }
        (desc, Ok(format!("ok created={made}")))
    }

    fn op_mkdir(&mut self) -> (String, Outcome) {
        let p = if self.chance(8) { self.any_entry().unwrap_or_else(|| self.fresh_path()) } else { self.fresh_path() };
        let mode = self.mode(true);
        let out = res(fs::DirBuilder::new().mode(mode).create(self.path(&p))).map(|_| "ok".to_string());
        if out.is_ok() {
            self.m.insert(&p, Node::Dir(Dir::default()));
        }
        (format!("mkdir {} mode={mode:o}", show(&p)), out)
    }

    fn op_write(&mut self) -> (String, Outcome) {
        let Some((p, ino)) = self.pick_file() else { return self.op_create() };
        let size = self.m.size(ino);
        let mut off = match self.rng.gen_range(0..5) {
            0 => size,
            1 => self.rng.gen_range(0..=size),
            2 => size + self.rng.gen_range(1..=16 * BLOCK),
            3 => BLOCK * self.rng.gen_range(0..=size / BLOCK + 8),
            _ => size + BLOCK * self.rng.gen_range(1..=64) + self.rng.gen_range(0..BLOCK),
        };
        let mut len = self.write_len();
        if off + len > self.max_size {
            off = self.rng.gen_range(0..self.max_size / 2);
            len = len.min(self.max_size - off);
        }
        if !self.fits(ino, self.m.new_blocks(ino, off, len)) {
            // Over the limits: overwrite inside the file, or shrink it.
            if size > 0 && self.chance(50) {
                off = self.rng.gen_range(0..size);
                len = len.min(size - off);
            }
            if !self.fits(ino, self.m.new_blocks(ino, off, len)) {
                let new = self.rng.gen_range(0..=size / 2);
                return self.truncate_to(p, ino, new, false);
            }
        }
        let data = self.data(len as usize);
        let mut done = 0usize;
        let out = (|| {
            let f = res(OpenOptions::new().write(true).open(self.path(&p)))?;
            while done < data.len() {
                match f.write_at(&data[done..], off + done as u64) {
                    Ok(0) => return Err(format!("short write after {done}")),
                    Ok(n) => done += n,
                    Err(e) if done > 0 => return Err(format!("{} after {done}", errno_name(&e))),
                    Err(e) => return Err(errno_name(&e)),
                }
            }
            Ok("ok".to_string())
        })();
        self.m.write(ino, off, &data[..done]);
        self.touched.push(p.clone());
        (format!("write {} off={off} len={len} sha={}", show(&p), &sha(&data)[..16]), out)
    }

    fn op_append(&mut self) -> (String, Outcome) {
        let Some((p, ino)) = self.pick_file() else { return self.op_create() };
        let size = self.m.size(ino);
        let len = self.write_len().min(self.max_size.saturating_sub(size));
        if len == 0 || !self.fits(ino, self.m.new_blocks(ino, size, len)) {
            let new = self.rng.gen_range(0..=size / 2);
            return self.truncate_to(p, ino, new, false);
        }
        let data = self.data(len as usize);
        let (done, out) = match OpenOptions::new().append(true).open(self.path(&p)) {
            Ok(mut f) => write_counted(&mut f, &data),
            Err(e) => (0, Err(errno_name(&e))),
        };
        self.m.write(ino, size, &data[..done]);
        self.touched.push(p.clone());
        (format!("append {} len={len} sha={}", show(&p), &sha(&data)[..16]), out)
    }

    /// Appends to two files in turn (each write lands at its file's end).
    fn op_interleave(&mut self) -> (String, Outcome) {
        let files: Vec<(Rel, u64)> =
            self.entries().into_iter().filter(|e| e.1 == Kind::File).filter_map(|e| Some((e.0, e.2?))).collect();
        let Some(a) = self.pick(&files) else { return self.op_create() };
        let others: Vec<(Rel, u64)> = files.into_iter().filter(|f| f.1 != a.1).collect();
        let Some(b) = self.pick(&others) else { return self.op_create() };
        let chunk = if self.chance(50) { BLOCK } else { self.rng.gen_range(1..=3 * BLOCK) };
        let mut rounds = self.rng.gen_range(1..=self.interleave_rounds);
        // Each round adds at most chunk/BLOCK + 1 blocks to each file.
        let per = (chunk / BLOCK + 1) as usize;
        while rounds > 0 {
            let n = per * rounds as usize;
            let sizes_ok = self.m.size(a.1).max(self.m.size(b.1)) + chunk * u64::from(rounds) <= self.max_size;
            if sizes_ok
                && self.m.file_blocks(a.1) + n <= self.file_blocks
                && self.m.file_blocks(b.1) + n <= self.file_blocks
                && self.m.total_blocks + 2 * n <= self.total_blocks
            {
                break;
            }
            rounds /= 2;
        }
        if rounds == 0 {
            let size = self.m.size(a.1);
            let new = self.rng.gen_range(0..=size / 2);
            return self.truncate_to(a.0, a.1, new, false);
        }
        let desc = format!("interleave {} {} chunk={chunk} rounds={rounds}", show(&a.0), show(&b.0));
        let fa = OpenOptions::new().append(true).open(self.path(&a.0));
        let fb = OpenOptions::new().append(true).open(self.path(&b.0));
        let (mut fa, mut fb) = match (fa, fb) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) | (_, Err(e)) => return (desc, Err(errno_name(&e))),
        };
        let mut all = Sha256::new();
        for r in 0..rounds {
            for (f, p, ino) in [(&mut fa, &a.0, a.1), (&mut fb, &b.0, b.1)] {
                let data = self.data(chunk as usize);
                all.update(&data);
                let (done, out) = write_counted(f, &data);
                let size = self.m.size(ino);
                self.m.write(ino, size, &data[..done]);
                self.touched.push(p.clone());
                if let Err(e) = out {
                    return (desc, Err(format!("{e} in round {r} on {}", show(p))));
                }
            }
        }
        (format!("{desc} sha={}", &hex(&all.finalize())[..16]), Ok("ok".into()))
    }

    fn truncate_to(&mut self, p: Rel, ino: u64, new: u64, by_path: bool) -> (String, Outcome) {
        let path = self.path(&p);
        let out = if by_path {
            nix::unistd::truncate(&path, new as i64).map(|_| "ok".to_string()).map_err(nix_name)
        } else {
            res(OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(new))).map(|_| "ok".to_string())
        };
        if out.is_ok() {
            self.m.truncate(ino, new);
            self.touched.push(p.clone());
        }
        (format!("truncate{} {} size={new}", if by_path { "-path" } else { "" }, show(&p)), out)
    }

    fn op_truncate(&mut self) -> (String, Outcome) {
        if self.chance(5) {
            // Truncate of a directory or a missing path.
            let p = if self.chance(50) { self.pick(&self.of_kind(Kind::Dir)) } else { None };
            let p = p.unwrap_or_else(|| self.fresh_path());
            let out = nix::unistd::truncate(&self.path(&p), 0).map(|_| "ok".to_string()).map_err(nix_name);
            return (format!("truncate-path {} size=0", show(&p)), out);
        }
        let Some((p, ino)) = self.pick_file() else { return self.op_create() };
        let size = self.m.size(ino);
        let new = match self.rng.gen_range(0..5) {
            0 => 0,
            1 => self.rng.gen_range(0..=size),
            2 => size,
            3 => (size + self.rng.gen_range(1..=32 * BLOCK)).min(self.max_size),
            _ => BLOCK * self.rng.gen_range(0..=size / BLOCK + 2),
        };
        let by_path = self.chance(50);
        self.truncate_to(p, ino, new, by_path)
    }

    fn op_read(&mut self) -> (String, Outcome) {
        let Some((p, ino)) = self.pick_file() else { return self.op_create() };
        let size = self.m.size(ino);
        let off = if self.chance(80) { self.rng.gen_range(0..=size) } else { size + self.rng.gen_range(0..BLOCK) };
        let len = self.write_len();
        let out = (|| {
            let f = res(File::open(self.path(&p)))?;
            let mut buf = vec![0u8; len as usize];
            let mut got = 0usize;
            while got < buf.len() {
                match f.read_at(&mut buf[got..], off + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return Err(errno_name(&e)),
                }
            }
            buf.truncate(got);
            Ok(buf)
        })();
        let desc = format!("read {} off={off} len={len}", show(&p));
        match out {
            Ok(buf) => {
                let want = self.m.read(ino, off, len);
                if buf != want && self.mismatch.is_none() {
                    self.mismatch = Some(format!(
                        "{desc}: read {} bytes sha {}, the model has {} bytes sha {}",
                        buf.len(),
                        sha(&buf),
                        want.len(),
                        sha(&want)
                    ));
                }
                (desc, Ok(format!("ok n={} sha={}", buf.len(), &sha(&buf)[..16])))
            }
            Err(e) => (desc, Err(e)),
        }
    }

    fn op_rename(&mut self) -> (String, Outcome) {
        let Some(from) = self.any_entry() else { return self.op_create() };
        let from_kind = self.m.node(&from).map(|n| self.m.kind_of(n));
        let to = match self.rng.gen_range(0..100) {
            0..=49 => self.fresh_path(),
            50..=84 => {
                // An entry of the same type (for a directory, an empty one when there is one).
                let same: Vec<Rel> = self
                    .entries()
                    .into_iter()
                    .filter(|e| Some(e.1) == from_kind)
                    .map(|e| e.0)
                    .filter(|p| self.m.dir(p).map_or(true, |d| d.entries.is_empty()))
                    .collect();
                self.pick(&same).unwrap_or_else(|| self.fresh_path())
            }
            _ => self.any_entry().unwrap_or_else(|| self.fresh_path()),
        };
        let (a, b) = (self.path(&from), self.path(&to));
        if self.chance(8) {
            // RENAME_EXCHANGE: both must exist (ENOENT otherwise), any types.
            let out = renameat2(&a, &b, nix::libc::RENAME_EXCHANGE);
            if out.is_ok() {
                self.m.exchange(&from, &to);
            }
            return (format!("rename-exchange {} {}", show(&from), show(&to)), out);
        }
        let noreplace = self.chance(10);
        let out = if noreplace { rename_noreplace(&a, &b) } else { res(fs::rename(&a, &b)).map(|_| "ok".to_string()) };
        if out.is_ok() {
            self.m.rename(&from, &to);
        }
        (format!("rename{} {} {}", if noreplace { "-noreplace" } else { "" }, show(&from), show(&to)), out)
    }

    fn op_link(&mut self) -> (String, Outcome) {
        let from = if self.chance(8) {
            self.pick(&self.of_kind(Kind::Dir))
        } else {
            let v: Vec<Rel> = self.entries().into_iter().filter(|e| e.1 != Kind::Dir).map(|e| e.0).collect();
            self.pick(&v)
        };
        let Some(from) = from else { return self.op_create() };
        let to =
            if self.chance(10) { self.any_entry().unwrap_or_else(|| self.fresh_path()) } else { self.fresh_path() };
        let out = res(fs::hard_link(self.path(&from), self.path(&to))).map(|_| "ok".to_string());
        if out.is_ok() {
            match self.m.ino_at(&from) {
                Some(i) => {
                    if let Some(x) = self.m.inodes.get_mut(&i) {
                        x.nlink += 1;
                    }
                    self.m.insert(&to, Node::Ino(i));
                }
                None => self.m.fail(format!("link of the directory {} succeeded", show(&from))),
            }
        }
        (format!("link {} {}", show(&from), show(&to)), out)
    }

    fn op_symlink(&mut self) -> (String, Outcome) {
        let target = match self.rng.gen_range(0..10) {
            0..=4 => {
                let e = self.any_entry().map(|p| p.join("/")).unwrap_or_else(|| "nowhere".into());
                if self.chance(30) {
                    format!("../{e}")
                } else {
                    e
                }
            }
            5..=7 => {
                let n = self.rng.gen_range(1..=59);
                (0..n).map(|_| char::from(b'a' + self.rng.gen_range(0..26u8))).collect()
            }
            8 => {
                let n = self.rng.gen_range(60..=1200);
                (0..n).map(|_| char::from(b'a' + self.rng.gen_range(0..26u8))).collect()
            }
            _ => {
                // Around the limit: 4,095 bytes is the longest target, 4,096 is ENAMETOOLONG.
                let n = self.rng.gen_range(4090..=4097);
                (0..n).map(|i| if i % 100 == 99 { '/' } else { 'x' }).collect()
            }
        };
        let p = if self.chance(5) { self.any_entry().unwrap_or_else(|| self.fresh_path()) } else { self.fresh_path() };
        let out = res(std::os::unix::fs::symlink(&target, self.path(&p))).map(|_| "ok".to_string());
        let desc = format!("symlink {} len={} sha={}", show(&p), target.len(), &sha(target.as_bytes())[..16]);
        if out.is_ok() {
            let i = self.m.new_ino(InoKind::Symlink(target));
            self.m.insert(&p, Node::Ino(i));
        }
        (desc, out)
    }

    fn op_readlink(&mut self) -> (String, Outcome) {
        let p = if self.chance(85) { self.pick(&self.of_kind(Kind::Symlink)) } else { self.any_entry() };
        let Some(p) = p else { return self.op_symlink() };
        let out = res(fs::read_link(self.path(&p))).map(|t| {
            let t = t.as_os_str().as_bytes();
            if let Some(Ino { kind: InoKind::Symlink(want), .. }) =
                self.m.ino_at(&p).and_then(|i| self.m.inodes.get(&i))
            {
                if want.as_bytes() != t && self.mismatch.is_none() {
                    self.mismatch =
                        Some(format!("readlink {}: {} bytes, the model has {}", show(&p), t.len(), want.len()));
                }
            }
            format!("ok len={} sha={}", t.len(), &sha(t)[..16])
        });
        (format!("readlink {}", show(&p)), out)
    }

    fn op_unlink(&mut self) -> (String, Outcome) {
        let p = if self.chance(8) {
            self.pick(&self.of_kind(Kind::Dir))
        } else {
            let v: Vec<Rel> = self.entries().into_iter().filter(|e| e.1 != Kind::Dir).map(|e| e.0).collect();
            self.pick(&v)
        };
        let p = p.unwrap_or_else(|| self.fresh_path());
        let out = res(fs::remove_file(self.path(&p))).map(|_| "ok".to_string());
        if out.is_ok() {
            if matches!(self.m.node(&p), Some(Node::Ino(_))) {
                self.m.remove(&p);
            } else {
                self.m.fail(format!("unlink of {} succeeded", show(&p)));
            }
        }
        (format!("unlink {}", show(&p)), out)
    }

    fn op_rmdir(&mut self) -> (String, Outcome) {
        let dirs = self.of_kind(Kind::Dir);
        let empty: Vec<Rel> =
            dirs.iter().filter(|p| self.m.dir(p).is_some_and(|d| d.entries.is_empty())).cloned().collect();
        let p = match self.rng.gen_range(0..10) {
            0..=6 if !empty.is_empty() => self.pick(&empty),
            0..=8 => self.pick(&dirs),
            _ => self.any_entry(),
        };
        let Some(p) = p else { return self.op_mkdir() };
        let out = res(fs::remove_dir(self.path(&p))).map(|_| "ok".to_string());
        if out.is_ok() {
            if self.m.dir(&p).is_some_and(|d| d.entries.is_empty()) {
                self.m.remove(&p);
            } else {
                self.m.fail(format!("rmdir of {} succeeded", show(&p)));
            }
        }
        (format!("rmdir {}", show(&p)), out)
    }

    fn op_fsync(&mut self) -> (String, Outcome) {
        match self.rng.gen_range(0..10) {
            0 => {
                nix::unistd::sync();
                ("sync".into(), Ok("ok".into()))
            }
            1..=2 => {
                let mut d = self.of_kind(Kind::Dir);
                d.push(Vec::new());
                let p = self.pick(&d).unwrap_or_default();
                let out = res(File::open(self.path(&p)).and_then(|f| f.sync_all())).map(|_| "ok".to_string());
                (format!("fsync-dir {}", show(&p)), out)
            }
            n => {
                let Some((p, _)) = self.pick_file() else { return self.op_create() };
                let data_only = n > 6;
                let out = res(OpenOptions::new().write(true).open(self.path(&p)).and_then(|f| {
                    if data_only {
                        f.sync_data()
                    } else {
                        f.sync_all()
                    }
                }))
                .map(|_| "ok".to_string());
                (format!("{} {}", if data_only { "fdatasync" } else { "fsync" }, show(&p)), out)
            }
        }
    }

    fn op_chmod(&mut self) -> (String, Outcome) {
        let v: Vec<(Rel, Kind)> =
            self.entries().into_iter().filter(|e| e.1 != Kind::Symlink).map(|e| (e.0, e.1)).collect();
        let Some((p, k)) = self.pick(&v) else { return self.op_create() };
        let mode = self.mode(k == Kind::Dir);
        let out = res(fs::set_permissions(self.path(&p), fs::Permissions::from_mode(mode))).map(|_| "ok".to_string());
        (format!("chmod {} mode={mode:o}", show(&p)), out)
    }

    fn time(&mut self) -> TimeSpec {
        // From 1901 to 2446: what ext4 (256-byte inodes) and vexfs (64-bit seconds) both store.
        let sec = if self.chance(10) {
            self.rng.gen_range(-(1i64 << 31) + 1..0)
        } else {
            self.rng.gen_range(0..15_000_000_000)
        };
        TimeSpec::new(sec, self.rng.gen_range(0..1_000_000_000))
    }

    fn op_utimes(&mut self) -> (String, Outcome) {
        let Some(p) = self.any_entry() else { return self.op_create() };
        let (at, mt) = (self.time(), self.time());
        let path = self.path(&p);
        let out = utimensat(nix::fcntl::AT_FDCWD, &path, &at, &mt, UtimensatFlags::NoFollowSymlink)
            .map_err(nix_name)
            .and_then(|_| res(fs::symlink_metadata(&path)))
            .map(|m| format!("ok atime={}.{:09} mtime={}.{:09}", m.atime(), m.atime_nsec(), m.mtime(), m.mtime_nsec()));
        let desc = format!(
            "utimes {} atime={}.{:09} mtime={}.{:09}",
            show(&p),
            at.tv_sec(),
            at.tv_nsec(),
            mt.tv_sec(),
            mt.tv_nsec()
        );
        (desc, out)
    }

    fn op_stat(&mut self) -> (String, Outcome) {
        let p = match self.rng.gen_range(0..10) {
            0 => self.fresh_path(),
            1 => match self.pick(&self.of_kind(Kind::File)) {
                // A path through a file: ENOTDIR.
                Some(mut f) => {
                    f.push("x".into());
                    f
                }
                None => self.fresh_path(),
            },
            _ => self.any_entry().unwrap_or_default(),
        };
        let out = res(fs::symlink_metadata(self.path(&p))).map(|m| {
            let size = if m.is_dir() { "-".to_string() } else { m.size().to_string() };
            format!("ok {} mode={:o} nlink={} size={size}", type_char(&m), m.mode() & 0o7777, m.nlink())
        });
        (format!("stat {}", show(&p)), out)
    }

    /// `lseek(SEEK_DATA)` or `lseek(SEEK_HOLE)` from a random offset (inside the file or past
    /// its end): the offset found or the errno (ENXIO at or past the end, or no data after).
    /// Both filesystems map exactly the blocks written (no fallocate here), so the answers are
    /// the same; the model does not predict them: the log comparison is the check.
    fn op_seek(&mut self) -> (String, Outcome) {
        let Some((p, ino)) = self.pick_file() else { return self.op_create() };
        if self.fallocated.contains(&ino) {
            return self.op_stat();
        }
        let size = self.m.size(ino);
        let off = self.rng.gen_range(0..=size + BLOCK);
        let hole = self.chance(50);
        let whence = if hole { nix::unistd::Whence::SeekHole } else { nix::unistd::Whence::SeekData };
        let out = (|| {
            let f = res(File::open(self.path(&p)))?;
            let off = i64::try_from(off).map_err(|_| "EOVERFLOW".to_string())?;
            nix::unistd::lseek(&f, off, whence).map(|o| format!("ok {o}")).map_err(nix_name)
        })();
        (format!("seek-{} {} off={off}", if hole { "hole" } else { "data" }, show(&p)), out)
    }

    /// `setxattr` of a `user.` attribute of a file (no flag, XATTR_CREATE or XATTR_REPLACE), a
    /// value of up to 200 bytes (`user.long`: 1,000): at most 4 attributes of 1,600 bytes in
    /// all per file, within both filesystems' limits.
    fn op_setxattr(&mut self) -> (String, Outcome) {
        let Some((p, ino)) = self.pick_file() else { return self.op_create() };
        let name = XATTR_NAMES[self.rng.gen_range(0..XATTR_NAMES.len())];
        let len = if name == "user.long" { 1000 } else { self.rng.gen_range(0..=200) };
        let value = self.data(len);
        let (flag, fname) = match self.rng.gen_range(0..4) {
            0 => (nix::libc::XATTR_CREATE, "create"),
            1 => (nix::libc::XATTR_REPLACE, "replace"),
            _ => (0, "set"),
        };
        let out = (|| {
            let c = cstr(&self.path(&p))?;
            let n = CString::new(name).map_err(|_| "EINVAL".to_string())?;
            // SAFETY: setxattr(2) with NUL-terminated strings and a value of `len` bytes.
            let r = unsafe { nix::libc::setxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), flag) };
            if r < 0 {
                return Err(errno_name(&io::Error::last_os_error()));
            }
            Ok("ok".to_string())
        })();
        if out.is_ok() {
            if let Some(i) = self.m.inodes.get_mut(&ino) {
                i.xattrs.insert(name.to_string(), value.clone());
            }
        }
        (format!("setxattr-{fname} {} {name} len={len} sha={}", show(&p), &sha(&value)[..12]), out)
    }

    /// `getxattr`, `removexattr` or `listxattr` (its `user.` names) of a file.
    fn op_xattr_read_remove(&mut self) -> (String, Outcome) {
        let Some((p, ino)) = self.pick_file() else { return self.op_create() };
        let name = XATTR_NAMES[self.rng.gen_range(0..XATTR_NAMES.len())];
        let what = self.rng.gen_range(0..3);
        let out = (|| {
            let path = self.path(&p);
            let c = cstr(&path)?;
            let n = CString::new(name).map_err(|_| "EINVAL".to_string())?;
            match what {
                0 => {
                    let mut v = vec![0u8; 65536];
                    // SAFETY: getxattr(2) into a buffer of the size given.
                    let m = unsafe { nix::libc::getxattr(c.as_ptr(), n.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
                    if m < 0 {
                        return Err(errno_name(&io::Error::last_os_error()));
                    }
                    v.truncate(m as usize);
                    Ok(format!("ok len={} sha={}", v.len(), &sha(&v)[..12]))
                }
                1 => {
                    // SAFETY: removexattr(2) with NUL-terminated strings.
                    if unsafe { nix::libc::removexattr(c.as_ptr(), n.as_ptr()) } < 0 {
                        return Err(errno_name(&io::Error::last_os_error()));
                    }
                    Ok("ok".to_string())
                }
                _ => {
                    let names: Vec<String> = real_xattrs(&path)?.into_keys().collect();
                    Ok(format!("ok {}", names.join(",")))
                }
            }
        })();
        if what == 1 && out.is_ok() {
            if let Some(i) = self.m.inodes.get_mut(&ino) {
                i.xattrs.remove(name);
            }
        }
        let desc = ["getxattr", "removexattr", "listxattr"][what];
        (format!("{desc} {} {name}", show(&p)), out)
    }

    /// A write through a shared mapping (`mmap`, the bytes stored, `msync`) inside the file:
    /// page faults allocate its holes (`page_mkwrite`).
    fn op_mmap_write(&mut self) -> (String, Outcome) {
        let Some((p, ino)) = self.pick_file() else { return self.op_create() };
        let size = self.m.size(ino);
        if size == 0 {
            return self.op_write();
        }
        let off = self.rng.gen_range(0..size);
        let len = self.write_len().min(size - off);
        if !self.fits(ino, self.m.new_blocks(ino, off, len)) {
            return self.op_read();
        }
        let data = self.data(len as usize);
        let out = (|| {
            let f = res(OpenOptions::new().read(true).write(true).open(self.path(&p)))?;
            let start = off / BLOCK * BLOCK;
            let map_len = usize::try_from(off + len - start).map_err(|_| "EOVERFLOW".to_string())?;
            // SAFETY: a shared mapping of a file no other process of the test changes.
            let mut map = res(unsafe { memmap2::MmapOptions::new().offset(start).len(map_len).map_mut(&f) })?;
            let at = usize::try_from(off - start).map_err(|_| "EOVERFLOW".to_string())?;
            map[at..].copy_from_slice(&data);
            res(map.flush())?;
            Ok("ok".to_string())
        })();
        if out.is_ok() {
            self.m.write(ino, off, &data);
        }
        (format!("mmap-write {} off={off} len={len} sha={}", show(&p), &sha(&data)[..16]), out)
    }

    /// `fallocate`: PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE (with or without KEEP_SIZE), mode 0 or
    /// KEEP_SIZE, over a random range. The model: the range reads as zeros inside the file;
    /// the size grows to its end without KEEP_SIZE (mode 0 keeps the bytes already there).
    fn op_fallocate(&mut self) -> (String, Outcome) {
        use nix::libc::{FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE};
        let Some((p, ino)) = self.pick_file() else { return self.op_create() };
        let size = self.m.size(ino);
        let off = self.rng.gen_range(0..=size + BLOCK);
        let len = self.write_len();
        let (mut name, mut mode, mut zeroes, mut grows) = match self.rng.gen_range(0..10) {
            0..=3 => ("punch", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, true, false),
            4 | 5 => ("zero", FALLOC_FL_ZERO_RANGE, true, true),
            6 => ("zero-keep", FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, true, false),
            7 | 8 => ("alloc", 0, false, true),
            _ => ("keep", FALLOC_FL_KEEP_SIZE, false, false),
        };
        let allocates = grows || name == "keep";
        if allocates && (off + len > self.max_size || !self.fits(ino, self.m.new_blocks(ino, off, len))) {
            (name, mode, zeroes, grows) = ("punch", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, true, false);
        }
        let out = (|| {
            let f = res(OpenOptions::new().write(true).open(self.path(&p)))?;
            let (o, l) = (i64::try_from(off).unwrap_or(i64::MAX), i64::try_from(len).unwrap_or(i64::MAX));
            // SAFETY: fallocate(2) on a descriptor we own.
            let r = unsafe { nix::libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&f), mode, o, l) };
            if r < 0 {
                return Err(errno_name(&io::Error::last_os_error()));
            }
            Ok("ok".to_string())
        })();
        if out.is_ok() {
            let end = off + len;
            if zeroes && off < size {
                let upto = end.min(size);
                self.m.write(ino, off, &vec![0u8; (upto - off) as usize]);
            }
            if grows && end > size {
                // Past the old end: zeros (a write of zeros keeps the model's blocks right).
                let from = off.max(size);
                self.m.write(ino, from, &vec![0u8; (end - from) as usize]);
            }
            self.fallocated.insert(ino);
            self.touched.push(p.clone());
        }
        (format!("fallocate-{name} {} off={off} len={len}", show(&p)), out)
    }

    /// `FS_IOC_FIEMAP` (with `FIEMAP_FLAG_SYNC`) of the whole file: the file ranges it maps,
    /// merged where they touch (the device layout is each filesystem's own), and whether the
    /// last extent reported carries `FIEMAP_EXTENT_LAST`.
    fn op_fiemap(&mut self) -> (String, Outcome) {
        let Some((p, ino)) = self.pick_file() else { return self.op_create() };
        if self.fallocated.contains(&ino) {
            return self.op_stat();
        }
        let out = (|| {
            let f = res(File::open(self.path(&p)))?;
            fiemap_ranges(&f).map_err(|e| errno_name(&e))
        })();
        (format!("fiemap {}", show(&p)), out)
    }

    /// Chooses and runs one operation.
    fn step(&mut self) -> (String, Outcome) {
        let n = self.m.walk().len();
        let crowded = n > MAX_ENTRIES;
        // (weight, operation); adding operations weigh less when the tree is crowded.
        let add = if crowded { 1 } else { 10 };
        let table: [(u32, Op); 24] = [
            (add, Gen::op_create),
            (if crowded { 0 } else { 1 }, Gen::op_wide),
            (add / 2 + 1, Gen::op_mkdir),
            (18, Gen::op_write),
            (6, Gen::op_append),
            (2, Gen::op_interleave),
            (7, Gen::op_truncate),
            (8, Gen::op_read),
            (9, Gen::op_rename),
            (add / 2 + 1, Gen::op_link),
            (add / 2 + 1, Gen::op_symlink),
            (2, Gen::op_readlink),
            (if crowded { 20 } else { 6 }, Gen::op_unlink),
            (if crowded { 10 } else { 3 }, Gen::op_rmdir),
            (4, Gen::op_fsync),
            (4, Gen::op_chmod),
            (4, Gen::op_utimes),
            (4, Gen::op_stat),
            (4, Gen::op_seek),
            (2, Gen::op_fiemap),
            (4, Gen::op_mmap_write),
            (4, Gen::op_fallocate),
            (4, Gen::op_setxattr),
            (4, Gen::op_xattr_read_remove),
        ];
        let total: u32 = table.iter().map(|t| t.0).sum();
        let mut x = self.rng.gen_range(0..total);
        for (w, f) in table {
            if x < w {
                return f(self);
            }
            x -= w;
        }
        self.op_stat()
    }
}

fn type_char(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "d"
    } else if t.is_symlink() {
        "l"
    } else if t.is_file() {
        "f"
    } else {
        "?"
    }
}

fn run(a: &RunArgs) -> Result<bool, String> {
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    fs::create_dir(&a.dir).map_err(|e| format!("mkdir {}: {e}", a.dir.display()))?;
    let mut log = io::BufWriter::new(File::create(&a.log).map_err(|e| format!("{}: {e}", a.log.display()))?);
    let mut g = Gen {
        rng: SmallRng::seed_from_u64(a.seed),
        m: Model { root: Dir::default(), inodes: BTreeMap::new(), next_ino: 1, total_blocks: 0, broken: None },
        base: a.dir.clone(),
        file_blocks: a.file_blocks.unwrap_or(if a.big { 4096 } else { 200 }),
        total_blocks: a.total_blocks.unwrap_or(if a.big { 16384 } else { 4096 }),
        max_size: if a.big { 64 << 20 } else { 8 << 20 },
        interleave_rounds: if a.big { 600 } else { 40 },
        mismatch: None,
        touched: Vec::new(),
        fallocated: std::collections::BTreeSet::new(),
        results: BTreeMap::new(),
    };
    let wr = |e: io::Error| format!("writing {}: {e}", a.log.display());
    writeln!(log, "# fsops run seed={} count={} big={}", a.seed, a.count, a.big).map_err(wr)?;
    for i in 0..a.count {
        let (desc, out) = g.step();
        let r = match out {
            Ok(s) => s,
            Err(e) => e,
        };
        let key = r.split(' ').next().unwrap_or("").to_string();
        *g.results.entry(key).or_default() += 1;
        writeln!(log, "{i} {desc} -> {r}").map_err(wr)?;
        // The sizes of the files the operation changed, against the model.
        let mut touched = std::mem::take(&mut g.touched);
        touched.sort();
        touched.dedup();
        for p in touched {
            let want = g.m.ino_at(&p).map(|x| g.m.size(x));
            let got = fs::symlink_metadata(g.path(&p)).ok().map(|m| m.size());
            if want != got && g.mismatch.is_none() {
                g.mismatch = Some(format!(
                    "after operation {i} ({desc} -> {r}): {} has size {got:?}, the model {want:?}",
                    show(&p)
                ));
            }
        }
    }
    log.flush().map_err(wr)?;
    let figures: Vec<String> = g.results.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "fsops: seed {} ran {} operations ({}); {} entries, {} blocks",
        a.seed,
        a.count,
        figures.join(" "),
        g.m.walk().len(),
        g.m.total_blocks
    );
    // The filesystem against the model.
    let mut problems = Vec::new();
    problems.extend(g.m.broken.clone());
    problems.extend(g.mismatch.clone());
    let want = model_dump(&g.m);
    let got: Vec<String> = walk(&a.dir)?.iter().map(|e| e.line(false, false)).collect();
    if let Some(d) = first_difference(&want, &got) {
        problems.push(format!("the tree differs from the model: {d}"));
    }
    for p in &problems {
        eprintln!("fsops: seed {}: {p}", a.seed);
    }
    Ok(problems.is_empty())
}

// ---- dumps --------------------------------------------------------------------------------------

/// One entry of a dump.
struct Entry {
    path: String,
    kind: &'static str,
    mode: u32,
    nlink: u64,
    size: Option<u64>,
    sha: Option<String>,
    target: Option<String>,
    /// For a non-directory with several links: the first path of its inode.
    link_of: Option<String>,
    mtime: (i64, i64),
    /// A regular file's `user.` attributes: `name:sha256 prefix`, sorted, comma-separated.
    xattrs: Option<String>,
}

impl Entry {
    fn line(&self, mode: bool, mtimes: bool) -> String {
        let mut s = format!("{} {} nlink={}", self.path, self.kind, self.nlink);
        if mode {
            let _ = write!(s, " mode={:04o}", self.mode);
        }
        if let Some(x) = self.size {
            let _ = write!(s, " size={x}");
        }
        if let Some(x) = &self.sha {
            let _ = write!(s, " sha256={x}");
        }
        if let Some(x) = &self.target {
            let _ = write!(s, " target={x}");
        }
        if let Some(x) = &self.link_of {
            let _ = write!(s, " link-of={x}");
        }
        if let Some(x) = &self.xattrs {
            let _ = write!(s, " xattrs={x}");
        }
        if mtimes {
            let _ = write!(s, " mtime={}.{:09}", self.mtime.0, self.mtime.1);
        }
        s
    }
}

/// A name as printed: printable ASCII as is, every other byte as \xNN.
fn escape(name: &[u8]) -> String {
    name.iter().fold(String::new(), |mut s, &b| {
        if b.is_ascii_graphic() && b != b'\\' {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
        s
    })
}

/// A long symlink target is printed as its length and hash.
fn show_target(t: &[u8]) -> String {
    if t.len() <= 64 {
        escape(t)
    } else {
        format!("[{} bytes sha256 {}]", t.len(), &sha(t)[..16])
    }
}

/// Every entry below `dir`, sorted by path.
fn walk(dir: &Path) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    let mut first: HashMap<u64, String> = HashMap::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    let mut all = Vec::new();
    while let Some((d, prefix)) = stack.pop() {
        let mut names = Vec::new();
        for e in fs::read_dir(&d).map_err(|e| format!("readdir {}: {e}", d.display()))? {
            let e = e.map_err(|e| format!("readdir {}: {e}", d.display()))?;
            names.push(e.file_name());
        }
        names.sort();
        for w in names.windows(2) {
            if w[0] == w[1] {
                return Err(format!("readdir {} returned {:?} twice", d.display(), w[0]));
            }
        }
        for n in names {
            let p = d.join(&n);
            let rel =
                if prefix.is_empty() { escape(n.as_bytes()) } else { format!("{prefix}/{}", escape(n.as_bytes())) };
            let m = fs::symlink_metadata(&p).map_err(|e| format!("lstat {}: {e}", p.display()))?;
            if m.is_dir() {
                stack.push((p.clone(), rel.clone()));
            }
            all.push((p, rel, m));
        }
    }
    all.sort_by(|a, b| a.1.cmp(&b.1));
    for (p, rel, m) in all {
        let kind = type_char(&m);
        let mut e = Entry {
            path: rel.clone(),
            kind,
            mode: m.mode() & 0o7777,
            nlink: m.nlink(),
            size: None,
            sha: None,
            target: None,
            link_of: None,
            mtime: (m.mtime(), m.mtime_nsec()),
            xattrs: None,
        };
        if !m.is_dir() {
            e.size = Some(m.size());
            if m.nlink() > 1 {
                e.link_of = Some(first.entry(m.ino()).or_insert(rel).clone());
            }
        }
        if m.is_file() {
            let mut f = File::open(&p).map_err(|e| format!("open {}: {e}", p.display()))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).map_err(|e| format!("read {}: {e}", p.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            e.sha = Some(hex(&h.finalize()));
            e.xattrs = Some(xattr_summary(&real_xattrs(&p)?));
        } else if m.file_type().is_symlink() {
            let t = fs::read_link(&p).map_err(|e| format!("readlink {}: {e}", p.display()))?;
            e.target = Some(show_target(t.as_os_str().as_bytes()));
        }
        out.push(e);
    }
    Ok(out)
}

/// The model's tree as [`walk`] would print it (no modes, no mtimes).
fn model_dump(m: &Model) -> Vec<String> {
    let mut first: HashMap<u64, String> = HashMap::new();
    let mut out = Vec::new();
    // Sorted as walk() sorts: by the printed path.
    let mut entries: Vec<(String, Rel, Kind, Option<u64>)> = m
        .walk()
        .into_iter()
        .map(|(p, k, i)| (p.iter().map(|c| escape(c.as_bytes())).collect::<Vec<_>>().join("/"), p, k, i))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, p, kind, ino) in entries {
        let mut e = Entry {
            path: path.clone(),
            kind: "d",
            mode: 0,
            nlink: 2,
            size: None,
            sha: None,
            target: None,
            link_of: None,
            mtime: (0, 0),
            xattrs: None,
        };
        match (kind, ino.and_then(|i| Some((i, m.inodes.get(&i)?)))) {
            (Kind::Dir, _) => {
                let subdirs = m.dir(&p).map_or(0, |d| d.entries.values().filter(|n| matches!(n, Node::Dir(_))).count());
                e.nlink = 2 + subdirs as u64;
            }
            (_, Some((i, x))) => {
                e.nlink = x.nlink;
                e.size = Some(m.size(i));
                if x.nlink > 1 {
                    e.link_of = Some(first.entry(i).or_insert(path).clone());
                }
                match &x.kind {
                    InoKind::File { size, .. } => {
                        e.kind = "f";
                        e.sha = Some(sha(&m.read(i, 0, *size)));
                        e.xattrs = Some(xattr_summary(&x.xattrs));
                    }
                    InoKind::Symlink(t) => {
                        e.kind = "l";
                        e.target = Some(show_target(t.as_bytes()));
                    }
                }
            }
            (_, None) => e.kind = "?",
        }
        out.push(e.line(false, false));
    }
    out
}

fn dump(dir: &Path, mtimes: bool) -> Result<(), String> {
    let out = io::stdout();
    let mut out = io::BufWriter::new(out.lock());
    for e in walk(dir)? {
        writeln!(out, "{}", e.line(true, mtimes)).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

fn stamp(seed: u64, dir: &Path) -> Result<(), String> {
    for e in walk(dir)? {
        let h = Sha256::digest(format!("{seed} {}", e.path).as_bytes());
        let n =
            |i: usize| u64::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3], h[i + 4], h[i + 5], h[i + 6], h[i + 7]]);
        let t = |x: u64| TimeSpec::new((x % 4_000_000_000) as i64, ((x >> 32) % 1_000_000_000) as i64);
        let p = dir.join(&e.path);
        utimensat(nix::fcntl::AT_FDCWD, &p, &t(n(0)), &t(n(8)), UtimensatFlags::NoFollowSymlink)
            .map_err(|x| format!("utimensat {}: {x}", p.display()))?;
    }
    Ok(())
}

// ---- diff ---------------------------------------------------------------------------------------

/// Describes the first difference of two line lists (None if equal).
fn first_difference(a: &[String], b: &[String]) -> Option<String> {
    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    if i == a.len() && i == b.len() {
        return None;
    }
    let line = |v: &[String]| v.get(i).cloned().unwrap_or_else(|| "<end>".into());
    let mut s = format!("line {} (of {} and {}):\n", i + 1, a.len(), b.len());
    for c in &a[i.saturating_sub(2)..i] {
        let _ = writeln!(s, "    {c}");
    }
    let _ = write!(s, "  - {}\n  + {}", line(a), line(b));
    Some(s)
}

fn read_lines(p: &Path) -> Result<Vec<String>, String> {
    let f = File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
    BufReader::new(f).lines().collect::<io::Result<_>>().map_err(|e| format!("{}: {e}", p.display()))
}

fn diff(a: &Path, b: &Path) -> Result<bool, String> {
    let (x, y) = (read_lines(a)?, read_lines(b)?);
    match first_difference(&x, &y) {
        None => Ok(true),
        Some(d) => {
            println!("first difference, {} (-) against {} (+), at {d}", a.display(), b.display());
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model { root: Dir::default(), inodes: BTreeMap::new(), next_ino: 1, total_blocks: 0, broken: None }
    }

    fn p(s: &str) -> Rel {
        s.split('/').map(String::from).collect()
    }

    #[test]
    fn model_sparse_write_truncate_read() {
        let mut m = model();
        let i = m.new_ino(InoKind::File { size: 0, blocks: BTreeMap::new() });
        m.insert(&p("f"), Node::Ino(i));
        m.write(i, 3 * BLOCK + 10, b"abc");
        assert_eq!(m.size(i), 3 * BLOCK + 13);
        assert_eq!(m.file_blocks(i), 1);
        assert_eq!(m.read(i, 0, 4), vec![0; 4], "a hole reads as zeros");
        assert_eq!(m.read(i, 3 * BLOCK + 9, 100), b"\0abc", "a read stops at the end");
        // A failed write (nothing written) past the end leaves the size alone.
        m.write(i, 10 * BLOCK, b"");
        assert_eq!(m.size(i), 3 * BLOCK + 13);
        m.truncate(i, 3 * BLOCK + 11);
        m.truncate(i, 5 * BLOCK);
        assert_eq!(m.read(i, 3 * BLOCK + 10, 3), b"a\0\0", "truncate zeroes the tail of the last block");
        m.truncate(i, 2 * BLOCK);
        assert_eq!((m.file_blocks(i), m.total_blocks), (0, 0));
        assert_eq!(m.new_blocks(i, BLOCK - 1, 2), 2);
    }

    #[test]
    fn model_rename_and_links() {
        let mut m = model();
        let i = m.new_ino(InoKind::File { size: 0, blocks: BTreeMap::new() });
        m.insert(&p("a"), Node::Ino(i));
        m.inodes.get_mut(&i).unwrap().nlink += 1;
        m.insert(&p("b"), Node::Ino(i));
        // Two names of one inode: rename does nothing.
        m.rename(&p("a"), &p("b"));
        assert!(m.node(&p("a")).is_some() && m.node(&p("b")).is_some());
        m.insert(&p("d"), Node::Dir(Dir::default()));
        m.rename(&p("a"), &p("d/x"));
        m.remove(&p("b"));
        assert_eq!(m.inodes[&i].nlink, 1);
        m.rename(&p("d"), &p("d/x/y"));
        assert!(m.broken.is_some(), "a directory moved into itself breaks the model");
    }

    #[test]
    fn first_difference_names_the_line() {
        let a: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
        let mut b = a.clone();
        assert_eq!(first_difference(&a, &b), None);
        b[2] = "w".into();
        let d = first_difference(&a, &b).unwrap();
        assert!(d.starts_with("line 3 (of 3 and 3)") && d.contains("  - z\n  + w"), "{d}");
        b.pop();
        assert!(first_difference(&a, &b).unwrap().contains("+ <end>"));
    }

    /// The same seed gives the same log twice, and the host filesystem agrees with the model.
    #[test]
    fn run_is_reproducible() {
        let base = std::env::temp_dir().join(format!("fsops-test-{}", std::process::id()));
        fs::create_dir_all(&base).unwrap();
        let args = |n: &str| RunArgs {
            seed: 42,
            count: 400,
            log: base.join(format!("{n}.log")),
            big: false,
            file_blocks: None,
            total_blocks: None,
            dir: base.join(n),
        };
        assert!(run(&args("one")).unwrap());
        assert!(run(&args("two")).unwrap());
        let (a, b) = (read_lines(&base.join("one.log")).unwrap(), read_lines(&base.join("two.log")).unwrap());
        assert_eq!(a.len(), 401);
        assert_eq!(first_difference(&a, &b), None);
        assert!(a.iter().filter(|l| l.contains("-> ok")).count() > 300, "most operations succeed");
        let d: Vec<String> = walk(&base.join("one")).unwrap().iter().map(|e| e.line(true, false)).collect();
        let e: Vec<String> = walk(&base.join("two")).unwrap().iter().map(|e| e.line(true, false)).collect();
        assert_eq!(first_difference(&d, &e), None);
        fs::remove_dir_all(&base).unwrap();
    }
}
