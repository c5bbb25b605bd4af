//! `dirops`: large-directory operations for the indexed-directory test
//! (tests/guest/014-indexed-dirs.sh), each one process (a process per file costs more than the
//! operation under the guest's software CPU). Every check failure prints `FAIL: ...` and exits 1.
//!
//! - `create DIR FROM TO`: creates files `name(i)` for `i` in `FROM..TO` (O_CREAT|O_EXCL; names
//!   of 8 to 200 bytes, see [`name`]); prints `created N`.
//! - `check DIR FROM TO`: readdir of DIR lists each `name(i)` of `FROM..TO` exactly once and no
//!   other name; every 97th is found by `stat`, and `name(i)` with an `x` appended is `ENOENT`;
//!   prints `checked N`.
//! - `unlink DIR FROM TO STEP`: unlinks `name(i)` for every STEP-th `i` of `FROM..TO`; prints
//!   `unlinked N`.
//! - `churn DIR FROM TO`: with `name(FROM..TO)` present, reads DIR with opendir/readdir 40
//!   entries at a time; after each batch takes `telldir`, creates 25 new files and unlinks 25
//!   earlier ones (`churn-K` names), closes the directory, opens it again and `seekdir`s to the
//!   position (a cookie resumed, as NFS does). Every `name(i)` must be seen exactly once;
//!   prints `churned N batches, seen M`. Leaves the churn files.

use nix::libc;
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

/// File `i`'s name: `f<i>-` then `i * 37 % 193` bytes of `n` (8 to 200 bytes in all).
fn name(i: u64) -> String {
    format!("f{i:07}-{}", "n".repeat((i * 37 % 193) as usize))
}

fn fail(msg: String) -> ExitCode {
    println!("FAIL: {msg}");
    ExitCode::from(1)
}

fn create(dir: &Path, from: u64, to: u64) -> Result<u64, String> {
    for i in from..to {
        let p = dir.join(name(i));
        OpenOptions::new().write(true).create_new(true).open(&p).map_err(|e| format!("create {}: {e}", p.display()))?;
    }
    Ok(to - from)
}

/// Every name in DIR, with how many times readdir gave it.
fn listing(dir: &Path) -> Result<BTreeMap<String, u32>, String> {
    let mut seen = BTreeMap::new();
    for e in fs::read_dir(dir).map_err(|e| format!("readdir: {e}"))? {
        let e = e.map_err(|e| format!("readdir: {e}"))?;
        *seen.entry(e.file_name().to_string_lossy().into_owned()).or_insert(0) += 1;
    }
    Ok(seen)
}

fn check(dir: &Path, from: u64, to: u64) -> Result<u64, String> {
    let seen = listing(dir)?;
    for i in from..to {
        match seen.get(&name(i)) {
            Some(1) => {}
            n => return Err(format!("{} listed {:?} times", name(i), n.copied().unwrap_or(0))),
        }
    }
    if seen.len() as u64 != to - from {
        let extra = seen.keys().find(|k| !(from..to).any(|i| name(i) == **k));
        return Err(format!("{} names listed, {} expected (e.g. {extra:?})", seen.len(), to - from));
    }
    for i in (from..to).step_by(97) {
        fs::symlink_metadata(dir.join(name(i))).map_err(|e| format!("stat {}: {e}", name(i)))?;
        match fs::symlink_metadata(dir.join(name(i) + "x")) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => return Err(format!("stat of absent {}x: {r:?}", name(i))),
        }
    }
    Ok(to - from)
}

fn unlink(dir: &Path, from: u64, to: u64, step: u64) -> Result<u64, String> {
    let mut n = 0;
    for i in (from..to).step_by(step.max(1) as usize) {
        fs::remove_file(dir.join(name(i))).map_err(|e| format!("unlink {}: {e}", name(i)))?;
        n += 1;
    }
    Ok(n)
}

/// An open directory stream (libc's opendir), closed on drop.
struct Stream(*mut libc::DIR);

impl Stream {
    fn open(dir: &Path) -> Result<Stream, String> {
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| "a path with NUL".to_string())?;
        // SAFETY: opendir(3) on a NUL-terminated path.
        let d = unsafe { libc::opendir(c.as_ptr()) };
        if d.is_null() {
            return Err(format!("opendir: {}", io::Error::last_os_error()));
        }
        Ok(Stream(d))
    }
    /// The next name, `None` at the end.
    fn next(&mut self) -> Result<Option<String>, String> {
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: readdir(3) on our open stream.
        let e = unsafe { libc::readdir(self.0) };
        if e.is_null() {
            let err = io::Error::last_os_error();
            return if err.raw_os_error() == Some(0) { Ok(None) } else { Err(format!("readdir: {err}")) };
        }
        // SAFETY: a dirent readdir returned, valid until the next call on the stream.
        let n = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) };
        Ok(Some(n.to_string_lossy().into_owned()))
    }
    fn tell(&mut self) -> libc::c_long {
        // SAFETY: telldir(3) on our open stream.
        unsafe { libc::telldir(self.0) }
    }
    fn seek(&mut self, pos: libc::c_long) {
        // SAFETY: seekdir(3) to a position telldir gave on this directory.
        unsafe { libc::seekdir(self.0, pos) }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: closedir(3) of our stream, once.
        unsafe { libc::closedir(self.0) };
    }
}

fn churn(dir: &Path, from: u64, to: u64) -> Result<String, String> {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut s = Stream::open(dir)?;
    let (mut batches, mut next_new, mut next_old) = (0u64, 0u64, 0u64);
    'read: loop {
        for _ in 0..40 {
            match s.next()? {
                Some(n) => *seen.entry(n).or_insert(0) += 1,
                None => break 'read,
            }
        }
        let pos = s.tell();
        for _ in 0..25 {
            let p = dir.join(format!("churn-{next_new}-{}", "c".repeat((next_new % 150) as usize)));
            OpenOptions::new().write(true).create_new(true).open(&p).map_err(|e| format!("create churn: {e}"))?;
            next_new += 1;
        }
        for _ in 0..25 {
            if next_old + 50 < next_new {
                let p = dir.join(format!("churn-{next_old}-{}", "c".repeat((next_old % 150) as usize)));
                fs::remove_file(&p).map_err(|e| format!("unlink churn: {e}"))?;
                next_old += 1;
            }
        }
        drop(s);
        s = Stream::open(dir)?;
        s.seek(pos);
        batches += 1;
    }
    for i in from..to {
        match seen.get(&name(i)) {
            Some(1) => {}
            n => return Err(format!("{} seen {:?} times across the batches", name(i), n.copied().unwrap_or(0))),
        }
    }
    let dup = seen.iter().find(|(k, v)| **v > 1 && !k.starts_with("churn-") && *k != "." && *k != "..");
    if let Some((k, v)) = dup {
        return Err(format!("{k} seen {v} times"));
    }
    Ok(format!("churned {batches} batches, seen {}", seen.len()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("not a number: {s}"));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = match a.as_slice() {
        ["create", d, f, t] => {
            num(f).and_then(|f| num(t).and_then(|t| create(Path::new(d), f, t))).map(|n| format!("created {n}"))
        }
        ["check", d, f, t] => {
            num(f).and_then(|f| num(t).and_then(|t| check(Path::new(d), f, t))).map(|n| format!("checked {n}"))
        }
        ["unlink", d, f, t, s] => num(f)
            .and_then(|f| num(t).and_then(|t| num(s).and_then(|s| unlink(Path::new(d), f, t, s))))
            .map(|n| format!("unlinked {n}")),
        ["churn", d, f, t] => num(f).and_then(|f| num(t).and_then(|t| churn(Path::new(d), f, t))),
        _ => {
            eprintln!("usage: dirops create|check DIR FROM TO | unlink DIR FROM TO STEP | churn DIR FROM TO");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
