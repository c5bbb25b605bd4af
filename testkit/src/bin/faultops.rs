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
//! bytes of value BYTE, default 0x5a, the file created if missing), `mmap-write PATH OFFSET LEN [BYTE]` (a shared mapping of
//! the file's pages covering the range, the bytes stored through it, then msync(MS_SYNC)),
//! `truncate PATH SIZE`, `fsync PATH`, `syncfs PATH`; and `resident DEV`, which prints the
//! numbers of the 4 KiB blocks of a block device that are in its page cache (mincore on a shared
//! mapping of the device: the blocks a mounted filesystem has read or holds), on one line.

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{fsync, mkdir, syncfs, truncate, unlink};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::process::ExitCode;

const USAGE: &str = "usage: faultops create PATH | mkdir PATH | symlink LEN PATH | rename FROM TO | unlink PATH \
| write PATH OFFSET LEN [BYTE] | mmap-write PATH OFFSET LEN [BYTE] | truncate PATH SIZE | fsync PATH | syncfs PATH | resident DEV";

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

fn num(s: &str) -> Result<u64, Failure> {
    s.parse().map_err(|_| Failure::Usage(format!("not a number: {s}")))
}

fn byte(s: Option<&String>) -> Result<u8, Failure> {
    match s {
        None => Ok(0x5a),
        Some(s) => u8::try_from(num(s)?).map_err(|_| Failure::Usage(format!("not a byte: {s}"))),
    }
}

/// SIGBUS from a refused page fault: reported like an errno, without unwinding.
extern "C" fn on_sigbus(_: nix::libc::c_int) {
    const MSG: &[u8] = b"SIGBUS\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a valid buffer of its length.
    unsafe {
        nix::libc::write(1, MSG.as_ptr().cast(), MSG.len());
        nix::libc::_exit(1);
    }
}

fn mmap_write(path: &str, off: u64, len: u64, val: u8) -> Result<(), Failure> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let page = 4096u64;
    let start = off / page * page;
    let end = off.checked_add(len).ok_or_else(|| Failure::Usage("range overflows".into()))?;
    let map_len = usize::try_from(end - start).map_err(|_| Failure::Usage("range too large".into()))?;
    if map_len == 0 {
        return Ok(());
    }
    let map_off = nix::libc::off_t::try_from(start).map_err(|_| Failure::Usage("offset too large".into()))?;
    // SAFETY: a zeroed sigaction with a handler of the right signature is a valid argument.
    unsafe {
        let mut sa: nix::libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as extern "C" fn(nix::libc::c_int) as usize;
        if nix::libc::sigaction(nix::libc::SIGBUS, &sa, std::ptr::null_mut()) != 0 {
            return Err(Errno::last().into());
        }
    }
    // SAFETY: a fresh shared mapping of an open file; the kernel checks every argument.
    let p = unsafe {
        nix::libc::mmap(
            std::ptr::null_mut(),
            map_len,
            nix::libc::PROT_READ | nix::libc::PROT_WRITE,
            nix::libc::MAP_SHARED,
            f.as_raw_fd(),
            map_off,
        )
    };
    if p == nix::libc::MAP_FAILED {
        return Err(Errno::last().into());
    }
    let first = usize::try_from(off - start).map_err(|_| Failure::Usage("range too large".into()))?;
    // SAFETY: `p` maps `map_len` bytes, readable and writable; the range written is inside it
    // (first + len == map_len). A refused page fault raises SIGBUS, handled above by _exit.
    unsafe {
        std::ptr::write_bytes(p.cast::<u8>().add(first), val, map_len - first);
    }
    // SAFETY: `p`/`map_len` are the mapping made above.
    let r = unsafe { nix::libc::msync(p, map_len, nix::libc::MS_SYNC) };
    let err = Errno::last();
    // SAFETY: as above; the mapping is not used after this.
    unsafe { nix::libc::munmap(p, map_len) };
    if r != 0 {
        return Err(err.into());
    }
    Ok(())
}

/// The 4 KiB blocks of block device `dev` that are resident in its page cache.
fn resident(dev: &str) -> Result<Vec<u64>, Failure> {
    let mut f = std::fs::File::open(dev)?;
    let bytes = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))?;
    let len = usize::try_from(bytes).map_err(|_| Failure::Usage("device too large".into()))?;
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

fn run(args: &[String]) -> Result<(), Failure> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let mode = Mode::from_bits_truncate(0o644);
    match a.as_slice() {
        ["create", p] => {
            let fd = open(*p, OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY, mode)?;
            drop(fd);
        }
        ["mkdir", p] => mkdir(*p, Mode::from_bits_truncate(0o755))?,
        ["symlink", n, p] => {
            let len = usize::try_from(num(n)?).map_err(|_| Failure::Usage("bad length".into()))?;
            std::os::unix::fs::symlink("t".repeat(len), p)?;
        }
        ["rename", from, to] => std::fs::rename(from, to)?,
        ["unlink", p] => unlink(*p)?,
        ["write", p, off, len, ..] if a.len() <= 5 => {
            let val = byte(args.get(4))?;
            let buf = vec![val; usize::try_from(num(len)?).map_err(|_| Failure::Usage("bad length".into()))?];
            let f = OpenOptions::new().write(true).create(true).truncate(false).open(p)?;
            let n = f.write_at(&buf, num(off)?)?;
            if n != buf.len() {
                println!("short write: {n} of {}", buf.len());
                return Err(Failure::Errno(Errno::EIO));
            }
        }
        ["mmap-write", p, off, len, ..] if a.len() <= 5 => {
            let val = byte(args.get(4))?;
            mmap_write(p, num(off)?, num(len)?, val)?;
        }
        ["truncate", p, size] => {
            let size = nix::libc::off_t::try_from(num(size)?).map_err(|_| Failure::Usage("bad size".into()))?;
            truncate(*p, size)?;
        }
        ["fsync", p] => fsync(std::fs::File::open(p)?)?,
        ["syncfs", p] => syncfs(std::fs::File::open(p)?)?,
        ["resident", dev] => {
            let v = resident(dev)?;
            let line: Vec<String> = v.iter().map(u64::to_string).collect();
            println!("{}", line.join(" "));
            return Ok(());
        }
        _ => return Err(Failure::Usage(USAGE.into())),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = run(&args);
    let mut out = std::io::stdout();
    match r {
        Ok(()) => {
            let _ = writeln!(out, "ok");
            ExitCode::SUCCESS
        }
        Err(Failure::Errno(e)) => {
            let _ = writeln!(out, "{e:?}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(m)) => {
            eprintln!("faultops: {m}");
            ExitCode::from(2)
        }
    }
}
