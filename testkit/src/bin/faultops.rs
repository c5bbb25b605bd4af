//! `faultops`: single filesystem operations for the failure-injection test
//! (tests/guest/079-faults.sh), each printing `ok` or the name of the errno it failed with
//! (`ENOSPC`, `EIO`, `EROFS`, ...) on one line, so the guest script can assert the exact error.
//!
//! Exit status: 0 the operation succeeded, 1 it failed with an errno (printed), 2 bad command
//! line. `mmap-write` prints `SIGBUS` (exit status 1) when the kernel refused the page fault
//! (`page_mkwrite` failing with `ENOSPC` or `EIO` is delivered as SIGBUS).
//!
//! Operations: `create PATH` (O_CREAT|O_EXCL), `mkdir PATH`, `symlink LEN PATH` (a target of LEN
//! bytes), `rename FROM TO`, `unlink PATH`, `write PATH OFFSET LEN [BYTE]` (one pwrite of LEN
//! bytes of value BYTE, default 0x5a, the file created if missing), `write-short PATH OFFSET
//! LEN GOOD` (one pwrite of LEN bytes of 0x5a from a buffer whose bytes past GOOD, a multiple
//! of 4096, are in pages mapped PROT_NONE: the kernel copies GOOD bytes and stops, as for a
//! program whose buffer ends early; prints `wrote N` on a line before `ok`), `mmap-write PATH OFFSET LEN
//! [BYTE]` (a shared mapping of the file's pages covering the range, the bytes stored through
//! it, then msync(MS_SYNC)), `truncate PATH SIZE`, `fsync PATH`, `syncfs PATH`,
//! `set PATH FVECS FIRST_ROW COUNT [index-now]` (VEXFS_IOC_SET_EMBEDDINGS: rows FIRST_ROW ..
//! FIRST_ROW+COUNT of the .fvecs file become the file's chunks 0.., replacing its embeddings
//! (VEXFS_SET_TRUNCATE, as `vexctl set`), linked before the call returns with `index-now`
//! (VEXFS_SET_INDEX_NOW)), `rm-embedding PATH` (VEXFS_IOC_REMOVE_EMBEDDINGS), `interleave A B
//! TOTAL CHUNK` (two files created or emptied, then appended CHUNK bytes at a time in turn,
//! A of 0x41 and B of 0x42, until each holds TOTAL bytes: two downloads at once), `fill STRIDE
//! PATH...` (the files created or emptied, then a 4 KiB block written to each in turn at file
//! blocks 0, STRIDE, 2*STRIDE... until ENOSPC; prints `filled N`), `fill-n N STRIDE PATH...`
//! (the same, N blocks per file: any error fails), `check-fill STRIDE PATH...`
//! (what `fill` wrote read back: patterns and holes; prints `checked N`), `mknod PATH TYPE MAJOR
//! MINOR` (TYPE `p` FIFO, `s` socket, `c` or `b` device, mode 0644), `seek PATH data|hole OFFSET`
//! (lseek SEEK_DATA or SEEK_HOLE; prints the offset found on a line before `ok`), `rename2 FROM TO
//! exchange|whiteout|noreplace` (renameat2 with that flag), `tmpfile DIR LEN [LINK]` (an O_TMPFILE
//! file of mode 0666 less the umask in DIR, LEN bytes of 0x54 written, then linked as LINK with linkat(AT_EMPTY_PATH), or
//! closed unnamed), `fallocate PATH MODE OFFSET LEN` (MODE `alloc` 0, `keep` KEEP_SIZE, `punch`
//! PUNCH_HOLE|KEEP_SIZE, `zero` ZERO_RANGE, `zero-keep`, `collapse` COLLAPSE_RANGE),
//! `direct-write PATH OFFSET LEN BYTE` and `direct-read PATH OFFSET LEN` (one pwrite or pread
//! with O_DIRECT from a 4096-aligned buffer; the read prints the bytes read and their sha256
//! before `ok`), `setxattr PATH NAME VALUE [create|replace]`, `setxattr-len PATH NAME LEN` (a
//! value of LEN bytes), `getxattr PATH NAME` (prints the value), `removexattr PATH NAME`,
//! `listxattr PATH` (prints the names, sorted), `setacl PATH access|default SPEC` and `getacl PATH
//! access|default` (a POSIX ACL as `u::rw-,u:1000:r--,g::r--,m::r--,o::---`); each opens what it
//! needs and closes it before it ends. Several operations joined by `+` run in order, in one
//! process, until the first that fails (`truncate t 100000 + write t 90000 100`); the errno
//! printed is that one's, followed by ` in operation K` when it is not the first (K counts from
//! 1). And `resident DEV`, which prints the numbers of the 4 KiB blocks of a
//! block device that are in its page cache (mincore on a shared mapping of the device: the
//! blocks a mounted filesystem has read or holds), on one line.
//!
//! Allocation-failure injection: with `FAIL_NTH=N` (N >= 1) in the environment, faultops writes
//! N to `/proc/thread-self/fail-nth` right before the operations' first system call and reads
//! it back right after their last (the file opened, the paths, data and vectors prepared
//! beforehand: nothing in between allocates in userspace), then writes 0 to it. The kernel then
//! fails the N-th fault-injection point the thread passes (a slab allocation, with the test
//! kernel's CONFIG_FAILSLAB; with failslab's `ignore-gfp-wait` N, allocations that may sleep
//! count too). A second output line says what happened: `injected` (the N-th point was reached
//! and failed; the operation may still have succeeded, e.g. when the kernel retried), or
//! `not-reached P`, where P is the number of fault-injection points the operations passed (so
//! every FAIL_NTH above P runs them without a failure; FAIL_NTH=1000000 counts an operation's
//! points). A SIGBUS prints its two lines too. Not with `resident`.

use nix::errno::Errno;
use nix::fcntl::{open, renameat, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use nix::unistd::{close, fsync, mkdir, symlinkat, syncfs, truncate, unlink};
use std::ffi::CString;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use vexctl::abi::{VEXFS_SET_INDEX_NOW, VEXFS_SET_TRUNCATE};
use vexfs_image::vecfile::Fvecs;

const USAGE: &str = "usage: faultops OP [+ OP]... | resident DEV, where OP is one of: create PATH | mkdir PATH \
| symlink LEN PATH | rename FROM TO | unlink PATH | write PATH OFFSET LEN [BYTE] | write-short PATH OFFSET LEN GOOD | mmap-write PATH OFFSET LEN [BYTE] \
| truncate PATH SIZE | fsync PATH | syncfs PATH | set PATH FVECS FIRST_ROW COUNT [index-now] | rm-embedding PATH \
| interleave A B TOTAL CHUNK | fill STRIDE PATH... | fill-n N STRIDE PATH... | check-fill STRIDE PATH... | mknod PATH p|s|c|b MAJOR MINOR | seek PATH data|hole OFFSET | rename2 FROM TO exchange|whiteout|noreplace \
| tmpfile DIR LEN [LINK] | fallocate PATH alloc|keep|punch|zero|zero-keep|collapse OFFSET LEN \
| direct-write PATH OFFSET LEN BYTE | direct-read PATH OFFSET LEN | setxattr PATH NAME VALUE [create|replace] \
| setxattr-len PATH NAME LEN | getxattr PATH NAME | removexattr PATH NAME | listxattr PATH \
| setacl PATH access|default SPEC | getacl PATH access|default; \
FAIL_NTH=N in the environment fails the N-th fault-injection point of the operations";

/// The fail-nth file: `/proc/thread-self/fail-nth`.
const FAIL_NTH_FILE: &str = "/proc/thread-self/fail-nth";

/// What went wrong: an errno from the kernel, or a bad command line.
enum Failure {
    Errno(Errno),
    Usage(String),
}

impl From<Errno> for Failure {
    fn from(e: Errno) -> Self {
        Failure::Errno(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Errno(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    }
}

fn usage(m: impl Into<String>) -> Failure {
    Failure::Usage(m.into())
}

fn num(s: &str) -> Result<u64, Failure> {
    s.parse().map_err(|_| usage(format!("not a number: {s}")))
}

fn byte(s: Option<&&str>) -> Result<u8, Failure> {
    match s {
        None => Ok(0x5a),
        Some(s) => u8::try_from(num(s)?).map_err(|_| usage(format!("not a byte: {s}"))),
    }
}

fn path(s: &str) -> Result<CString, Failure> {
    CString::new(s).map_err(|_| usage(format!("a NUL in the path {s:?}")))
}

fn off_t(v: u64) -> Result<nix::libc::off_t, Failure> {
    nix::libc::off_t::try_from(v).map_err(|_| usage(format!("too large: {v}")))
}

/// `interleave`: appends `chunk`-sized pieces to `a` and `b` in turn until each holds `total`
/// bytes (`a` of byte 0x41, `b` of 0x42); on a failure prints which file and offset.
fn interleave(a: &CString, b: &CString, total: u64, chunk: &[u8]) -> Result<(), Failure> {
    let mode = Mode::from_bits_truncate(0o644);
    let fa = File::from(open(a.as_c_str(), OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC, mode)?);
    let fb = File::from(open(b.as_c_str(), OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC, mode)?);
    let mut bufs = [chunk.to_vec(), chunk.to_vec()];
    bufs[0].fill(0x41);
    bufs[1].fill(0x42);
    let mut off = 0u64;
    while off < total {
        let n = usize::try_from((total - off).min(chunk.len() as u64)).unwrap_or(chunk.len());
        for (f, buf, name) in [(&fa, &bufs[0], a), (&fb, &bufs[1], b)] {
            match f.write_at(&buf[..n], off) {
                Ok(w) if w == n => {}
                Ok(_) => return Err(Failure::Errno(Errno::EIO)),
                Err(e) => {
                    println!("interleave: {} at offset {off}: {e}", name.to_string_lossy());
                    return Err(e.into());
                }
            }
        }
        off += n as u64;
    }
    Ok(())
}

/// The 4 KiB block `fill` writes at file block `blk` of its `file`-th file: 64-bit words
/// `file << 40 | blk`, so a block read back from the wrong place or file is told apart.
fn fill_block(file: usize, blk: u64) -> [u8; 4096] {
    let mut b = [0u8; 4096];
    let word = ((file as u64) << 40 | blk).to_le_bytes();
    for c in b.chunks_exact_mut(8) {
        c.copy_from_slice(&word);
    }
    b
}

/// `fill`: creates (or empties) `files` and writes a 4 KiB block to each in turn, at file
/// blocks 0, `stride`, `2 * stride`, ... (`stride` 1: appends in turn, as several downloads at
/// once; 2: every other block, a sparse file of one extent per block), until a write fails with
/// ENOSPC (the filesystem is full: success; with `limit`, `limit` blocks per file, and ENOSPC
/// fails too); any other error fails. Prints `filled N` (blocks written in all).
fn fill(stride: u64, files: &[CString], limit: Option<u64>) -> Result<(), Failure> {
    let mode = Mode::from_bits_truncate(0o644);
    let mut fds = Vec::new();
    for p in files {
        fds.push(File::from(open(p.as_c_str(), OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC, mode)?));
    }
    let mut n = 0u64;
    for round in 0.. {
        if limit.is_some_and(|l| round >= l) {
            println!("filled {n}");
            return Ok(());
        }
        let blk = round * stride;
        for (i, f) in fds.iter().enumerate() {
            match f.write_at(&fill_block(i, blk), blk * 4096) {
                Ok(4096) => n += 1,
                Ok(_) => return Err(Failure::Errno(Errno::EIO)),
                Err(e) if limit.is_none() && e.raw_os_error() == Some(Errno::ENOSPC as i32) => {
                    println!("filled {n}");
                    return Ok(());
                }
                Err(e) => {
                    println!("fill: {} block {blk}: {e}", files[i].to_string_lossy());
                    return Err(e.into());
                }
            }
        }
    }
    Ok(())
}

/// `check-fill`: reads back what [`fill`] wrote with the same `stride` and files: each file's
/// size is one block past its last block written, every block at a multiple of `stride` holds
/// its pattern and every other block is zero (a hole). Prints `checked N` (pattern blocks in
/// all); a difference prints where and fails with EIO.
fn check_fill(stride: u64, files: &[CString]) -> Result<(), Failure> {
    let mut n = 0u64;
    let zero = [0u8; 4096];
    for (i, p) in files.iter().enumerate() {
        let f = File::from(open(p.as_c_str(), OFlag::O_RDONLY, Mode::empty())?);
        let size = f.metadata().map_err(Failure::from)?.len();
        if size % 4096 != 0 || (size > 0 && (size / 4096 - 1) % stride != 0) {
            println!("check-fill: {} has size {size}", p.to_string_lossy());
            return Err(Failure::Errno(Errno::EIO));
        }
        let mut b = [0u8; 4096];
        for blk in 0..size / 4096 {
            f.read_exact_at(&mut b, blk * 4096).map_err(Failure::from)?;
            let want = if blk % stride == 0 { fill_block(i, blk) } else { zero };
            if b != want {
                println!("check-fill: {} block {blk} differs", p.to_string_lossy());
                return Err(Failure::Errno(Errno::EIO));
            }
            n += u64::from(blk % stride == 0);
        }
    }
    println!("checked {n}");
    Ok(())
}

/// Tags of a POSIX ACL entry (include/uapi/linux/posix_acl.h) and their spec letters.
const ACL_TAGS: [(u16, &str); 6] = [(0x01, "u"), (0x02, "u"), (0x04, "g"), (0x08, "g"), (0x10, "m"), (0x20, "o")];

/// The `posix_acl_xattr` value (version 2, entries `tag u16, perm u16, id u32`) of a spec like
/// `u::rw-,u:1000:r--,g::r--,m::r--,o::---` (entries in the kernel's order: owner, named users,
/// group, named groups, mask, other).
fn acl_xattr(spec: &str) -> Result<Vec<u8>, Failure> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for e in spec.split(',') {
        let f: Vec<&str> = e.split(':').collect();
        let [t, id, perm] = f[..] else { return Err(usage(format!("bad ACL entry {e}"))) };
        let named = !id.is_empty();
        let tag = match (t, named) {
            ("u", false) => 0x01,
            ("u", true) => 0x02,
            ("g", false) => 0x04,
            ("g", true) => 0x08,
            ("m", false) => 0x10,
            ("o", false) => 0x20,
            _ => return Err(usage(format!("bad ACL entry {e}"))),
        };
        let p = perm.bytes().fold(0u16, |p, c| match c {
            b'r' => p | 4,
            b'w' => p | 2,
            b'x' => p | 1,
            _ => p,
        });
        let id = if named { u32::try_from(num(id)?).map_err(|_| usage("bad id"))? } else { u32::MAX };
        out.extend_from_slice(&u16::to_le_bytes(tag));
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Ok(out)
}

/// The spec of a `posix_acl_xattr` value (the inverse of [`acl_xattr`]).
fn acl_spec(v: &[u8]) -> String {
    let mut out = Vec::new();
    for e in v.get(4..).unwrap_or(&[]).chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let t = ACL_TAGS.iter().find(|(x, _)| *x == tag).map_or("?", |(_, s)| s);
        let id = if tag == 0x02 || tag == 0x08 { id.to_string() } else { String::new() };
        let p: String =
            [(4, 'r'), (2, 'w'), (1, 'x')].iter().map(|&(b, c)| if perm & b != 0 { c } else { '-' }).collect();
        out.push(format!("{t}:{id}:{p}"));
    }
    out.join(",")
}

/// One operation, its arguments checked and its buffers made: running it allocates nothing in
/// userspace, so an armed fail-nth counts only the kernel's allocations for its system calls.
enum Op {
    Create(CString),
    Mkdir(CString),
    Symlink { target: CString, path: CString },
    Rename(CString, CString),
    Unlink(CString),
    Write { path: CString, off: u64, buf: Vec<u8> },
    MmapWrite { path: CString, off: u64, len: u64, val: u8 },
    Truncate(CString, nix::libc::off_t),
    Fsync(CString),
    Syncfs(CString),
    Set { path: CString, dim: u32, flags: u32, vectors: Vec<f32> },
    RmEmbedding(CString),
    Interleave { a: CString, b: CString, total: u64, chunk: Vec<u8> },
    Fill { stride: u64, files: Vec<CString>, limit: Option<u64> },
    Mknod { path: CString, kind: nix::sys::stat::SFlag, dev: u64 },
    Seek { path: CString, hole: bool, off: i64 },
    Rename2 { from: CString, to: CString, flags: u32 },
    Tmpfile { dir: CString, link: Option<CString>, len: usize },
    Fallocate { path: CString, mode: i32, off: i64, len: i64 },
    Direct { path: CString, off: u64, len: usize, write: Option<u8> },
    WriteShort { path: CString, off: u64, len: usize, good: usize },
    Xattr { path: CString, name: CString, value: Option<Vec<u8>>, flags: i32, get: bool },
    ListXattr(CString),
    SetAcl { path: CString, default: bool, acl: Vec<u8> },
    GetAcl { path: CString, default: bool },
    CheckFill { stride: u64, files: Vec<CString> },
}

impl Op {
    /// The operation `a` names (its words, without `+`).
    fn parse(a: &[&str]) -> Result<Op, Failure> {
        Ok(match a {
            ["create", p] => Op::Create(path(p)?),
            ["mkdir", p] => Op::Mkdir(path(p)?),
            ["symlink", n, p] => {
                let len = usize::try_from(num(n)?).map_err(|_| usage("bad length"))?;
                Op::Symlink { target: path(&"t".repeat(len))?, path: path(p)? }
            }
            ["rename", from, to] => Op::Rename(path(from)?, path(to)?),
            ["unlink", p] => Op::Unlink(path(p)?),
            ["write", p, off, len, rest @ ..] if rest.len() <= 1 => {
                let len = usize::try_from(num(len)?).map_err(|_| usage("bad length"))?;
                let off = num(off)?;
                off_t(off)?;
                Op::Write { path: path(p)?, off, buf: vec![byte(rest.first())?; len] }
            }
            ["write-short", p, off, len, good] => {
                let len = usize::try_from(num(len)?).map_err(|_| usage("bad length"))?;
                let good = usize::try_from(num(good)?).map_err(|_| usage("bad length"))?;
                if good % 4096 != 0 || good >= len {
                    return Err(usage("write-short: GOOD must be a multiple of 4096 below LEN"));
                }
                let off = num(off)?;
                off_t(off)?;
                Op::WriteShort { path: path(p)?, off, len, good }
            }
            ["mmap-write", p, off, len, rest @ ..] if rest.len() <= 1 => {
                Op::MmapWrite { path: path(p)?, off: num(off)?, len: num(len)?, val: byte(rest.first())? }
            }
            ["truncate", p, size] => Op::Truncate(path(p)?, off_t(num(size)?)?),
            ["fsync", p] => Op::Fsync(path(p)?),
            ["syncfs", p] => Op::Syncfs(path(p)?),
            ["set", p, fvecs, first, count, rest @ ..] if rest.is_empty() || rest == ["index-now"] => {
                let mut v = Fvecs::open(fvecs).map_err(|e| usage(e.to_string()))?;
                let vectors = v.rows_range(num(first)?, num(count)?).map_err(|e| usage(e.to_string()))?;
                let flags = VEXFS_SET_TRUNCATE | if rest.is_empty() { 0 } else { VEXFS_SET_INDEX_NOW };
                Op::Set { path: path(p)?, dim: v.dim(), flags, vectors }
            }
            ["rm-embedding", p] => Op::RmEmbedding(path(p)?),
            ["interleave", a, b, total, chunk] => {
                let chunk = usize::try_from(num(chunk)?).map_err(|_| usage("bad chunk"))?;
                if chunk == 0 {
                    return Err(usage("chunk 0"));
                }
                Op::Interleave { a: path(a)?, b: path(b)?, total: num(total)?, chunk: vec![0; chunk] }
            }
            ["mknod", p, t, major, minor] => {
                use nix::sys::stat::SFlag;
                let kind = match *t {
                    "p" => SFlag::S_IFIFO,
                    "s" => SFlag::S_IFSOCK,
                    "c" => SFlag::S_IFCHR,
                    "b" => SFlag::S_IFBLK,
                    _ => return Err(usage("mknod type: p, s, c or b")),
                };
                Op::Mknod { path: path(p)?, kind, dev: nix::sys::stat::makedev(num(major)?, num(minor)?) }
            }
            ["rename2", from, to, how] => {
                // The RENAME_* values of <linux/fs.h> (nix has no renameat2 on musl).
                let flags = match *how {
                    "exchange" => 2,
                    "whiteout" => 4,
                    "noreplace" => 1,
                    _ => return Err(usage("rename2 flag: exchange, whiteout or noreplace")),
                };
                Op::Rename2 { from: path(from)?, to: path(to)?, flags }
            }
            ["tmpfile", dir, len, rest @ ..] if rest.len() <= 1 => Op::Tmpfile {
                dir: path(dir)?,
                len: usize::try_from(num(len)?).map_err(|_| usage("bad length"))?,
                link: rest.first().map(|p| path(p)).transpose()?,
            },
            ["fallocate", p, how, off, len] => {
                use nix::libc;
                let mode = match *how {
                    "alloc" => 0,
                    "keep" => libc::FALLOC_FL_KEEP_SIZE,
                    "punch" => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    "zero" => libc::FALLOC_FL_ZERO_RANGE,
                    "zero-keep" => libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                    "collapse" => libc::FALLOC_FL_COLLAPSE_RANGE,
                    _ => return Err(usage("fallocate mode: alloc, keep, punch, zero, zero-keep or collapse")),
                };
                Op::Fallocate { path: path(p)?, mode, off: off_t(num(off)?)?, len: off_t(num(len)?)? }
            }
            ["setxattr", p, name, value, rest @ ..] if rest.len() <= 1 => Op::Xattr {
                path: path(p)?,
                name: path(name)?,
                value: Some(value.as_bytes().to_vec()),
                flags: match rest.first().copied() {
                    None => 0,
                    Some("create") => nix::libc::XATTR_CREATE,
                    Some("replace") => nix::libc::XATTR_REPLACE,
                    Some(_) => return Err(usage("setxattr flag: create or replace")),
                },
                get: false,
            },
            ["setxattr-len", p, name, len] => Op::Xattr {
                path: path(p)?,
                name: path(name)?,
                value: Some(vec![b'v'; usize::try_from(num(len)?).map_err(|_| usage("bad length"))?]),
                flags: 0,
                get: false,
            },
            ["getxattr", p, name] => Op::Xattr { path: path(p)?, name: path(name)?, value: None, flags: 0, get: true },
            ["removexattr", p, name] => {
                Op::Xattr { path: path(p)?, name: path(name)?, value: None, flags: 0, get: false }
            }
            ["listxattr", p] => Op::ListXattr(path(p)?),
            ["setacl", p, which @ ("access" | "default"), spec] => {
                Op::SetAcl { path: path(p)?, default: *which == "default", acl: acl_xattr(spec)? }
            }
            ["getacl", p, which @ ("access" | "default")] => {
                Op::GetAcl { path: path(p)?, default: *which == "default" }
            }
            ["direct-write", p, off, len, val] => Op::Direct {
                path: path(p)?,
                off: num(off)?,
                len: usize::try_from(num(len)?).map_err(|_| usage("bad length"))?,
                write: Some(byte(Some(val))?),
            },
            ["direct-read", p, off, len] => Op::Direct {
                path: path(p)?,
                off: num(off)?,
                len: usize::try_from(num(len)?).map_err(|_| usage("bad length"))?,
                write: None,
            },
            ["seek", p, w @ ("data" | "hole"), off] => {
                Op::Seek { path: path(p)?, hole: *w == "hole", off: off_t(num(off)?)? }
            }
            ["fill-n", n, stride, files @ ..] if !files.is_empty() => {
                let stride = num(stride)?.max(1);
                let files = files.iter().map(|p| path(p)).collect::<Result<Vec<_>, _>>()?;
                Op::Fill { stride, files, limit: Some(num(n)?) }
            }
            ["fill" | "check-fill", stride, files @ ..] if !files.is_empty() => {
                let stride = num(stride)?.max(1);
                let files = files.iter().map(|p| path(p)).collect::<Result<Vec<_>, _>>()?;
                if a[0] == "fill" {
                    Op::Fill { stride, files, limit: None }
                } else {
                    Op::CheckFill { stride, files }
                }
            }
            _ => return Err(usage(USAGE)),
        })
    }

    /// Runs the operation: its system calls only.
    fn run(&self) -> Result<(), Failure> {
        let mode = Mode::from_bits_truncate(0o644);
        match self {
            Op::Create(p) => close(open(p.as_c_str(), OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY, mode)?)?,
            Op::Mkdir(p) => mkdir(p.as_c_str(), Mode::from_bits_truncate(0o755))?,
            Op::Symlink { target, path } => symlinkat(target.as_c_str(), AT_FDCWD, path.as_c_str())?,
            Op::Rename(from, to) => renameat(AT_FDCWD, from.as_c_str(), AT_FDCWD, to.as_c_str())?,
            Op::Unlink(p) => unlink(p.as_c_str())?,
            Op::Write { path, off, buf } => {
                let f = File::from(open(path.as_c_str(), OFlag::O_WRONLY | OFlag::O_CREAT, mode)?);
                let n = f.write_at(buf, *off);
                close(OwnedFd::from(f))?;
                if n? != buf.len() {
                    // A short write: no errno names it; EIO is what the script treats as a failure.
                    return Err(Failure::Errno(Errno::EIO));
                }
            }
            Op::WriteShort { path, off, len, good } => write_short(path, *off, *len, *good)?,
            Op::MmapWrite { path, off, len, val } => mmap_write(path, *off, *len, *val)?,
            Op::Truncate(p, size) => truncate(p.as_c_str(), *size)?,
            Op::Fsync(p) => {
                let fd = open(p.as_c_str(), OFlag::O_RDONLY, Mode::empty())?;
                let r = fsync(&fd);
                close(fd)?;
                r?;
            }
            Op::Syncfs(p) => {
                let fd = open(p.as_c_str(), OFlag::O_RDONLY, Mode::empty())?;
                let r = syncfs(&fd);
                close(fd)?;
                r?;
            }
            Op::Set { path, dim, flags, vectors } => {
                let fd = open(path.as_c_str(), OFlag::O_WRONLY, Mode::empty())?;
                let r = vexctl::ioctl::set_embeddings(&fd, *dim, 0, *flags, vectors);
                close(fd)?;
                r?;
            }
            Op::RmEmbedding(p) => {
                let fd = open(p.as_c_str(), OFlag::O_WRONLY, Mode::empty())?;
                let r = vexctl::ioctl::remove_embeddings(&fd);
                close(fd)?;
                r?;
            }
            Op::Interleave { a, b, total, chunk } => interleave(a, b, *total, chunk)?,
            Op::Fill { stride, files, limit } => fill(*stride, files, *limit)?,
            Op::Rename2 { from, to, flags } => {
                use nix::libc;
                // SAFETY: renameat2(2) with two NUL-terminated paths that outlive the call.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_renameat2,
                        libc::AT_FDCWD,
                        from.as_ptr(),
                        libc::AT_FDCWD,
                        to.as_ptr(),
                        *flags,
                    )
                };
                if r < 0 {
                    return Err(Failure::Errno(Errno::last()));
                }
            }
            Op::Tmpfile { dir, link, len } => {
                let fd = open(dir.as_c_str(), OFlag::O_TMPFILE | OFlag::O_RDWR, Mode::from_bits_truncate(0o666))?;
                let f = File::from(fd);
                let n = f.write_at(&vec![0x54u8; *len], 0);
                let r = match (n, link) {
                    (Ok(w), _) if w != *len => Err(Failure::Errno(Errno::EIO)),
                    (Err(e), _) => Err(e.into()),
                    (Ok(_), Some(l)) => {
                        nix::unistd::linkat(&f, c"", AT_FDCWD, l.as_c_str(), nix::fcntl::AtFlags::AT_EMPTY_PATH)
                            .map_err(Failure::from)
                    }
                    (Ok(_), None) => Ok(()),
                };
                drop(f);
                r?
            }
            Op::Fallocate { path, mode, off, len } => {
                let fd = open(path.as_c_str(), OFlag::O_WRONLY | OFlag::O_CREAT, Mode::from_bits_truncate(0o644))?;
                // SAFETY: fallocate(2) on a descriptor we own.
                let r = unsafe { nix::libc::fallocate(fd.as_raw_fd(), *mode, *off, *len) };
                let e = Errno::last();
                close(fd)?;
                if r < 0 {
                    return Err(Failure::Errno(e));
                }
            }
            Op::Xattr { path, name, value, flags, get } => {
                use nix::libc;
                // SAFETY: the xattr system calls with NUL-terminated strings and buffers of the
                // sizes given, all outliving the calls.
                let r = unsafe {
                    match (value, get) {
                        (Some(v), _) => {
                            libc::setxattr(path.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), *flags) as isize
                        }
                        (None, true) => {
                            let mut buf = vec![0u8; 65536];
                            let n = libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len());
                            if n >= 0 {
                                // The value (lossy UTF-8), before the `ok` line.
                                println!("{}", String::from_utf8_lossy(&buf[..n as usize]));
                            }
                            n
                        }
                        (None, false) => libc::removexattr(path.as_ptr(), name.as_ptr()) as isize,
                    }
                };
                if r < 0 {
                    return Err(Failure::Errno(Errno::last()));
                }
            }
            Op::ListXattr(path) => {
                let mut buf = vec![0u8; 65536];
                // SAFETY: listxattr(2) into a buffer of the size given.
                let n = unsafe { nix::libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    return Err(Failure::Errno(Errno::last()));
                }
                // The names, sorted, space-separated, before the `ok` line.
                let mut names: Vec<String> = buf[..n as usize]
                    .split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                names.sort();
                println!("{}", names.join(" "));
            }
            Op::SetAcl { path, default, acl } => {
                let name = if *default { c"system.posix_acl_default" } else { c"system.posix_acl_access" };
                // SAFETY: setxattr(2) with NUL-terminated strings and a value of its length.
                let r = unsafe { nix::libc::setxattr(path.as_ptr(), name.as_ptr(), acl.as_ptr().cast(), acl.len(), 0) };
                if r < 0 {
                    return Err(Failure::Errno(Errno::last()));
                }
            }
            Op::GetAcl { path, default } => {
                let name = if *default { c"system.posix_acl_default" } else { c"system.posix_acl_access" };
                let mut buf = vec![0u8; 4096];
                // SAFETY: getxattr(2) into a buffer of the size given.
                let n =
                    unsafe { nix::libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    return Err(Failure::Errno(Errno::last()));
                }
                // The ACL as a spec, before the `ok` line.
                println!("{}", acl_spec(&buf[..n as usize]));
            }
            Op::Direct { path, off, len, write } => {
                // A buffer aligned to 4096 bytes, as O_DIRECT asks on most filesystems.
                let mut raw = vec![0u8; len + 4096];
                let skip = raw.as_ptr().align_offset(4096);
                let buf = &mut raw[skip..skip + len];
                let flags =
                    OFlag::O_DIRECT | if write.is_some() { OFlag::O_WRONLY | OFlag::O_CREAT } else { OFlag::O_RDONLY };
                let f = File::from(open(path.as_c_str(), flags, Mode::from_bits_truncate(0o644))?);
                match write {
                    Some(v) => {
                        buf.fill(*v);
                        if f.write_at(buf, *off)? != *len {
                            return Err(Failure::Errno(Errno::EIO));
                        }
                    }
                    None => {
                        let n = f.read_at(buf, *off)?;
                        use sha2::Digest;
                        let h = sha2::Sha256::digest(&buf[..n]);
                        // Bytes read and their sha256, before the `ok` line.
                        println!("{n} {}", h.iter().map(|b| format!("{b:02x}")).collect::<String>());
                    }
                }
            }
            Op::Seek { path, hole, off } => {
                use nix::unistd::Whence;
                let fd = open(path.as_c_str(), OFlag::O_RDONLY, Mode::empty())?;
                let r = nix::unistd::lseek(&fd, *off, if *hole { Whence::SeekHole } else { Whence::SeekData });
                close(fd)?;
                // The offset found, before the `ok` line.
                println!("{}", r?);
            }
            Op::Mknod { path, kind, dev } => {
                nix::sys::stat::mknod(path.as_c_str(), *kind, Mode::from_bits_truncate(0o644), *dev)?
            }
            Op::CheckFill { stride, files } => check_fill(*stride, files)?,
        }
        Ok(())
    }
}

/// The armed fail-nth file's descriptor (-1: not armed) and N, for the SIGBUS handler.
static ARMED_FD: AtomicI32 = AtomicI32::new(-1);
static ARMED_N: AtomicU32 = AtomicU32::new(0);

/// Fail-nth armed for a run of operations (`FAIL_NTH=N`).
struct FailNth {
    file: File,
    n: u32,
    /// N as the decimal text written to arm it.
    text: String,
}

impl FailNth {
    /// From the environment: `None` without FAIL_NTH.
    fn from_env() -> Result<Option<FailNth>, Failure> {
        let Some(v) = std::env::var_os("FAIL_NTH") else { return Ok(None) };
        let v = v.to_string_lossy();
        let n = v.parse::<u32>().ok().filter(|&n| n >= 1).ok_or_else(|| usage(format!("FAIL_NTH={v}: not N >= 1")))?;
        let file = std::fs::OpenOptions::new().read(true).write(true).open(FAIL_NTH_FILE).map_err(|e| {
            usage(format!("cannot open {FAIL_NTH_FILE}: {e} (a kernel without CONFIG_FAULT_INJECTION?)"))
        })?;
        Ok(Some(FailNth { file, n, text: n.to_string() }))
    }

    fn arm(&self) -> Result<(), Failure> {
        ARMED_N.store(self.n, Ordering::SeqCst);
        ARMED_FD.store(self.file.as_raw_fd(), Ordering::SeqCst);
        self.file.write_at(self.text.as_bytes(), 0)?;
        Ok(())
    }

    /// What is left of N (0: the failure was injected), then disarmed.
    fn disarm(&self) -> Result<u32, Failure> {
        let mut buf = [0u8; 16];
        let got = self.file.read_at(&mut buf, 0);
        self.file.write_at(b"0", 0)?;
        ARMED_FD.store(-1, Ordering::SeqCst);
        let got = got?;
        let text = std::str::from_utf8(buf.get(..got).unwrap_or_default()).unwrap_or_default();
        text.trim().parse().map_err(|_| usage(format!("{FAIL_NTH_FILE} reads {text:?}")))
    }
}

/// The second output line: `injected`, or `not-reached P` (P points passed of N).
fn fail_nth_line(n: u32, left: u32) -> String {
    if left == 0 {
        "injected".into()
    } else {
        format!("not-reached {}", n - left.min(n))
    }
}

/// Touches 64 KiB of stack below the caller, so the operations' calls do not fault in new
/// stack pages (a page fault's allocations would count as the thread's) while fail-nth is armed.
#[inline(never)]
fn touch_stack() {
    let mut probe = [0u8; 65536];
    std::hint::black_box(&mut probe);
}

/// SIGBUS from a refused page fault: reported like an errno, without unwinding; with fail-nth
/// armed, its line too.
extern "C" fn on_sigbus(_: nix::libc::c_int) {
    let mut out = [0u8; 64];
    let mut len = 0usize;
    let mut put = |s: &[u8]| {
        for &b in s {
            if let Some(slot) = out.get_mut(len) {
                *slot = b;
                len += 1;
            }
        }
    };
    put(b"SIGBUS\n");
    let fd = ARMED_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let n = ARMED_N.load(Ordering::SeqCst);
        let mut buf = [0u8; 16];
        // SAFETY: pread(2) and write(2) are async-signal-safe; `buf` is a valid buffer of its
        // length, `fd` the open fail-nth file.
        let got = unsafe { nix::libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        // SAFETY: as above; disarms fail-nth.
        unsafe { nix::libc::write(fd, b"0".as_ptr().cast(), 1) };
        let mut left = 0u32;
        for &b in buf.iter().take(usize::try_from(got).unwrap_or(0)) {
            if b.is_ascii_digit() {
                left = left.saturating_mul(10).saturating_add(u32::from(b - b'0'));
            }
        }
        if left == 0 {
            put(b"injected\n");
        } else {
            put(b"not-reached ");
            let mut p = n - left.min(n);
            let mut digits = [0u8; 10];
            let mut i = digits.len();
            loop {
                i -= 1;
                if let Some(d) = digits.get_mut(i) {
                    *d = b'0' + (p % 10) as u8;
                }
                p /= 10;
                if p == 0 || i == 0 {
                    break;
                }
            }
            put(digits.get(i..).unwrap_or_default());
            put(b"\n");
        }
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `out` holds `len` valid bytes.
    unsafe {
        nix::libc::write(1, out.as_ptr().cast(), len);
        nix::libc::_exit(1);
    }
}

fn install_sigbus_handler() -> Result<(), Failure> {
    // SAFETY: a zeroed sigaction with a handler of the right signature is a valid argument.
    unsafe {
        let mut sa: nix::libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as extern "C" fn(nix::libc::c_int) as usize;
        if nix::libc::sigaction(nix::libc::SIGBUS, &sa, std::ptr::null_mut()) != 0 {
            return Err(Errno::last().into());
        }
    }
    Ok(())
}

/// `write-short`: one pwrite of `len` bytes whose source is readable for its first `good`
/// bytes only (the pages after them mapped PROT_NONE); prints how many bytes it wrote.
fn write_short(path: &CString, off: u64, len: usize, good: usize) -> Result<(), Failure> {
    let map_len = len.div_ceil(4096) * 4096;
    // SAFETY: a fresh private anonymous mapping; the kernel checks every argument.
    let p = unsafe {
        nix::libc::mmap(
            std::ptr::null_mut(),
            map_len,
            nix::libc::PROT_READ | nix::libc::PROT_WRITE,
            nix::libc::MAP_PRIVATE | nix::libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == nix::libc::MAP_FAILED {
        return Err(Errno::last().into());
    }
    // SAFETY: `p` maps `map_len >= len > good` writable bytes; the pages past `good` (page
    // aligned) lose their access after the fill; `pwrite` reads them through the kernel, which
    // reports the fault as a short write (or EFAULT), never as a signal.
    let n = unsafe {
        std::ptr::write_bytes(p.cast::<u8>(), 0x5a, good);
        if nix::libc::mprotect(p.cast::<u8>().add(good).cast(), map_len - good, nix::libc::PROT_NONE) != 0 {
            let err = Errno::last();
            nix::libc::munmap(p, map_len);
            return Err(err.into());
        }
        let fd = open(path.as_c_str(), OFlag::O_WRONLY | OFlag::O_CREAT, Mode::from_bits_truncate(0o644));
        let n = match fd {
            Ok(fd) => {
                let n = nix::libc::pwrite(fd.as_raw_fd(), p.cast(), len, off as nix::libc::off_t);
                let err = Errno::last();
                close(fd)?;
                if n < 0 {
                    nix::libc::munmap(p, map_len);
                    return Err(err.into());
                }
                n
            }
            Err(e) => {
                nix::libc::munmap(p, map_len);
                return Err(e.into());
            }
        };
        nix::libc::munmap(p, map_len);
        n
    };
    println!("wrote {n}");
    Ok(())
}

fn mmap_write(path: &CString, off: u64, len: u64, val: u8) -> Result<(), Failure> {
    let page = 4096u64;
    let start = off / page * page;
    let end = off.checked_add(len).ok_or_else(|| usage("range overflows"))?;
    let map_len = usize::try_from(end - start).map_err(|_| usage("range too large"))?;
    let map_off = off_t(start)?;
    let first = usize::try_from(off - start).map_err(|_| usage("range too large"))?;
    let fd = open(path.as_c_str(), OFlag::O_RDWR, Mode::empty())?;
    if map_len == 0 {
        close(fd)?;
        return Ok(());
    }
    // SAFETY: a fresh shared mapping of an open file; the kernel checks every argument.
    let p = unsafe {
        nix::libc::mmap(
            std::ptr::null_mut(),
            map_len,
            nix::libc::PROT_READ | nix::libc::PROT_WRITE,
            nix::libc::MAP_SHARED,
            fd.as_raw_fd(),
            map_off,
        )
    };
    if p == nix::libc::MAP_FAILED {
        let err = Errno::last();
        close(fd)?;
        return Err(err.into());
    }
    // SAFETY: `p` maps `map_len` bytes, readable and writable; the range written is inside it
    // (first + len == map_len). A refused page fault raises SIGBUS, handled by on_sigbus.
    unsafe {
        std::ptr::write_bytes(p.cast::<u8>().add(first), val, map_len - first);
    }
    // SAFETY: `p`/`map_len` are the mapping made above.
    let r = unsafe { nix::libc::msync(p, map_len, nix::libc::MS_SYNC) };
    let err = Errno::last();
    // SAFETY: as above; the mapping is not used after this.
    unsafe { nix::libc::munmap(p, map_len) };
    close(fd)?;
    if r != 0 {
        return Err(err.into());
    }
    Ok(())
}

/// The 4 KiB blocks of block device `dev` that are resident in its page cache.
fn resident(dev: &str) -> Result<Vec<u64>, Failure> {
    let mut f = File::open(dev)?;
    let bytes = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))?;
    let len = usize::try_from(bytes).map_err(|_| usage("device too large"))?;
    if len == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: a fresh read-only shared mapping of an open device; never dereferenced.
    let p = unsafe {
        nix::libc::mmap(std::ptr::null_mut(), len, nix::libc::PROT_READ, nix::libc::MAP_SHARED, f.as_raw_fd(), 0)
    };
    if p == nix::libc::MAP_FAILED {
        return Err(Errno::last().into());
    }
    let mut vec = vec![0u8; len.div_ceil(4096)];
    // SAFETY: `p` maps `len` bytes; `vec` has one byte per 4 KiB page of it.
    let r = unsafe { nix::libc::mincore(p, len, vec.as_mut_ptr()) };
    let err = Errno::last();
    // SAFETY: the mapping made above, unused after this.
    unsafe { nix::libc::munmap(p, len) };
    if r != 0 {
        return Err(err.into());
    }
    Ok((0u64..).zip(vec).filter(|(_, v)| v & 1 != 0).map(|(i, _)| i).collect())
}

/// What a run printed: the operations' result, the index of the one that failed, and, with
/// FAIL_NTH, the fail-nth line.
struct Outcome {
    result: Result<(), Failure>,
    failed_at: usize,
    fail_nth: Option<String>,
}

fn run(args: &[String]) -> Result<Outcome, Failure> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    if let ["resident", dev] = a.as_slice() {
        if std::env::var_os("FAIL_NTH").is_some() {
            return Err(usage("FAIL_NTH is not for resident"));
        }
        let v = resident(dev)?;
        let line: Vec<String> = v.iter().map(u64::to_string).collect();
        println!("{}", line.join(" "));
        return Ok(Outcome { result: Ok(()), failed_at: 0, fail_nth: None });
    }
    let ops = a.split(|w| *w == "+").map(Op::parse).collect::<Result<Vec<Op>, Failure>>()?;
    if ops.iter().any(|op| matches!(op, Op::MmapWrite { .. })) {
        install_sigbus_handler()?;
    }
    let fail_nth = FailNth::from_env()?;
    touch_stack();
    if let Some(f) = &fail_nth {
        f.arm()?;
    }
    let mut result = Ok(());
    let mut failed_at = 0;
    for (i, op) in ops.iter().enumerate() {
        result = op.run();
        if result.is_err() {
            failed_at = i;
            break;
        }
    }
    let line = match &fail_nth {
        Some(f) => Some(fail_nth_line(f.n, f.disarm()?)),
        None => None,
    };
    Ok(Outcome { result, failed_at, fail_nth: line })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout();
    let (status, line) = match run(&args) {
        Ok(Outcome { result: Ok(()), fail_nth, .. }) => {
            let _ = writeln!(out, "ok");
            (ExitCode::SUCCESS, fail_nth)
        }
        Ok(Outcome { result: Err(Failure::Errno(e)), failed_at, fail_nth }) => {
            let _ = match failed_at {
                0 => writeln!(out, "{e:?}"),
                i => writeln!(out, "{e:?} in operation {}", i + 1),
            };
            (ExitCode::from(1), fail_nth)
        }
        Ok(Outcome { result: Err(Failure::Usage(m)), .. }) | Err(Failure::Usage(m)) => {
            eprintln!("faultops: {m}");
            return ExitCode::from(2);
        }
        Err(Failure::Errno(e)) => {
            let _ = writeln!(out, "{e:?}");
            return ExitCode::from(1);
        }
    };
    if let Some(l) = line {
        let _ = writeln!(out, "{l}");
    }
    status
}
