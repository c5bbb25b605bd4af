//! `fuzz_exercise DIR`: everything a mounted (possibly corrupt) vexfs can be asked, in one
//! process, for the image fuzzer (tests/guest/090-fuzz-images.sh): a process per operation
//! costs more than the operation under the guest's software CPU.
//!
//! In order: a walk of the tree (readdir, lstat, stat through symlinks, every regular file
//! read, every symlink read, every extended attribute listed and read; special files are not
//! opened: a FIFO's open waits for a writer), creates, writes, appends, truncates (grow and
//! shrink), renames (within and across directories, over files, of directories), hard links,
//! unlinks, mkdir/rmdir in the root and in the first directories found, FIFOs and devices
//! made, `user.` attributes and POSIX ACLs set, replaced and removed, SET (a replacing chunk,
//! several chunks, a new file), GET, REMOVE of embeddings, searches at ef 5, 64 and 512,
//! STATS, fsync and sync, and finally the removal of every entry (rm -rf). Errors are expected
//! (the image is corrupt): none stops the run. It prints one line: `ops N failed F EUCLEAN E
//! EROFS R EIO I other O`.
//! Exit status 0 unless the directory cannot be read at all (2).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vexctl::ioctl;
use vexfs_testkit::mutate::vector;

/// Most entries the walk visits, and its deepest level (a corrupt tree may loop).
const MAX_ENTRIES: usize = 4000;
const MAX_DEPTH: usize = 24;

/// Outcomes by errno (0 = success).
#[derive(Default)]
struct Tally(BTreeMap<i32, u64>);

impl Tally {
    fn io<T>(&mut self, r: io::Result<T>) -> Option<T> {
        match r {
            Ok(v) => {
                *self.0.entry(0).or_default() += 1;
                Some(v)
            }
            Err(e) => {
                *self.0.entry(e.raw_os_error().unwrap_or(-1)).or_default() += 1;
                None
            }
        }
    }
    fn nix<T>(&mut self, r: nix::Result<T>) -> Option<T> {
        self.io(r.map_err(io::Error::from))
    }
    fn line(&self) -> String {
        let n = |e: i32| self.0.get(&e).copied().unwrap_or(0);
        let total: u64 = self.0.values().sum();
        let failed = total - n(0);
        let named = n(libc_errno::EUCLEAN) + n(libc_errno::EROFS) + n(libc_errno::EIO);
        format!(
            "ops {total} failed {failed} EUCLEAN {} EROFS {} EIO {} other {}",
            n(libc_errno::EUCLEAN),
            n(libc_errno::EROFS),
            n(libc_errno::EIO),
            failed - named
        )
    }
}

/// The errnos counted by name (Linux values).
mod libc_errno {
    pub const EIO: i32 = 5;
    pub const EROFS: i32 = 30;
    pub const EUCLEAN: i32 = 117;
}

/// What the walk found.
#[derive(Default)]
struct Tree {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

fn walk(t: &mut Tally, dir: &Path, depth: usize, tree: &mut Tree, seen: &mut usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Some(rd) = t.io(fs::read_dir(dir)) else { return };
    tree.dirs.push(dir.to_path_buf());
    for e in rd {
        if *seen >= MAX_ENTRIES {
            return;
        }
        *seen += 1;
        let Some(e) = t.io(e) else { break };
        let p = e.path();
        let Some(md) = t.io(fs::symlink_metadata(&p)) else { continue };
        let _ = t.io(fs::metadata(&p));
        read_xattrs(t, &p);
        if md.is_dir() {
            walk(t, &p, depth + 1, tree, seen);
        } else if md.file_type().is_symlink() {
            let _ = t.io(fs::read_link(&p));
        } else if md.is_file() {
            if let Some(mut f) = t.io(opts().read(true).open(&p)) {
                let mut buf = Vec::new();
                let _ = t.io(Read::by_ref(&mut f).take(1 << 20).read_to_end(&mut buf));
                let mut b = [0u8; 512];
                let _ = t.io(f.read_at(&mut b, md.len().saturating_sub(100)));
                let _ = t.io(f.read_at(&mut b, 1 << 40));
            }
            tree.files.push(p);
        }
    }
}

/// Open options that never wait: `O_NONBLOCK`, for a name a corrupt directory may point at a
/// FIFO (two dirents of one name, a mode mutated: an open that waits for a writer would hang
/// the run), and harmless on regular files.
fn opts() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.custom_flags(nix::libc::O_NONBLOCK);
    o
}

/// A path as a C string (a path with a NUL byte, which no directory entry has, as "").
fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// A system call's `-1` as the `errno` it set.
fn sys(t: &mut Tally, r: isize) -> Option<isize> {
    t.io(if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) })
}

/// Every extended attribute of `p` (not followed if a symlink), of every namespace: listed,
/// then read one by one.
fn read_xattrs(t: &mut Tally, p: &Path) {
    let c = cpath(p);
    let mut names = vec![0u8; 65536];
    // SAFETY: llistxattr(2) into a buffer of the size given; `c` is NUL-terminated.
    let n = unsafe { nix::libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let Some(n) = sys(t, n) else { return };
    let mut value = vec![0u8; 65536];
    for name in names[..n as usize].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(cn) = CString::new(name) else { continue };
        // SAFETY: lgetxattr(2) into a buffer of the size given; both strings NUL-terminated.
        let r = unsafe { nix::libc::lgetxattr(c.as_ptr(), cn.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        let _ = sys(t, r);
    }
}

/// `lsetxattr(p, name, value)` (`Some`) or `lremovexattr(p, name)` (`None`).
fn write_xattr(t: &mut Tally, p: &Path, name: &str, value: Option<&[u8]>) {
    let (c, Ok(cn)) = (cpath(p), CString::new(name)) else { return };
    // SAFETY: lsetxattr(2)/lremovexattr(2) with NUL-terminated strings and a value of its length.
    let r = unsafe {
        match value {
            Some(v) => nix::libc::lsetxattr(c.as_ptr(), cn.as_ptr(), v.as_ptr().cast(), v.len(), 0),
            None => nix::libc::lremovexattr(c.as_ptr(), cn.as_ptr()),
        }
    };
    let _ = sys(t, r as isize);
}

/// A POSIX ACL value (`posix_acl_xattr`, version 2): the owner `rw-`, user 1000 `r--`, the
/// group `r--`, the mask `rw-`, others `---`.
fn acl_value() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in
        [(1u16, 6u16, u32::MAX), (2, 4, 1000), (4, 4, u32::MAX), (0x10, 6, u32::MAX), (0x20, 0, u32::MAX)]
    {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// `mknod(p, mode, dev)`.
fn mknod(t: &mut Tally, p: &Path, mode: u32, dev: u64) {
    let c = cpath(p);
    // SAFETY: mknod(2) with a NUL-terminated path.
    let r = unsafe { nix::libc::mknod(c.as_ptr(), mode, dev) };
    let _ = sys(t, r as isize);
}

fn set(t: &mut Tally, path: &Path, dim: u32, first: u32, vectors: &[f32]) {
    let Some(f) = t.io(opts().write(true).open(path)) else { return };
    let _ = t.nix(ioctl::set_embeddings(&f, dim, first, 0, vectors));
}

fn get(t: &mut Tally, path: &Path, dim: u32) {
    let Some(f) = t.io(opts().read(true).open(path)) else { return };
    let _ = t.nix(ioctl::get_embeddings(&f, dim, 0, 64));
}

fn remove(t: &mut Tally, path: &Path) {
    let Some(f) = t.io(opts().write(true).open(path)) else { return };
    let _ = t.nix(ioctl::remove_embeddings(&f));
}

fn search(t: &mut Tally, root: &Path, query: &[f32], k: u32, ef: u32) {
    let Some(f) = t.io(opts().read(true).open(root)) else { return };
    let _ = t.nix(ioctl::search(&f, query, k, ef, 0));
    // The codes' ranking too (EOPNOTSUPP on an image without codes): a walk that reads no
    // vector, over the same mutated codes and links.
    let _ = t.nix(ioctl::search(&f, query, k, ef, vexctl::abi::VEXFS_SEARCH_CODE_DISTANCES));
}

/// The filesystem's dimension (STATS), or 8.
fn stats(t: &mut Tally, root: &Path) -> u32 {
    let Some(f) = t.io(opts().read(true).open(root)) else { return 8 };
    match t.nix(ioctl::stats(&f)) {
        Some(s) if (1..=4096).contains(&s.dim) => s.dim,
        _ => 8,
    }
}

fn write_file(t: &mut Tally, p: &Path, data: &[u8]) {
    if let Some(mut f) = t.io(opts().write(true).create(true).truncate(true).open(p)) {
        let _ = t.io(f.write_all(data));
        let _ = t.io(f.sync_all());
    }
}

fn main() -> ExitCode {
    let Some(root) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz_exercise DIR");
        return ExitCode::from(2);
    };
    if fs::read_dir(&root).is_err() {
        eprintln!("fuzz_exercise: cannot read {}", root.display());
        return ExitCode::from(2);
    }
    let mut t = Tally::default();
    let t = &mut t;
    let dim = stats(t, &root);
    let mut tree = Tree::default();
    walk(t, &root, 0, &mut tree, &mut 0);

    // Writes in the root and the first directories found (any may be the mutated one).
    let dirs: Vec<PathBuf> = tree.dirs.iter().take(6).cloned().collect();
    for (i, d) in dirs.iter().enumerate() {
        let new = d.join(format!("fz-new-{i}"));
        write_file(t, &new, b"fuzz\n");
        if let Some(mut f) = t.io(opts().append(true).open(&new)) {
            let _ = t.io(f.write_all(&[7u8; 5000]));
        }
        let _ = t.io(fs::rename(&new, d.join("fz-moved")));
        let sub = d.join("fz-dir");
        let _ = t.io(fs::create_dir(&sub));
        write_file(t, &sub.join("a"), b"a");
        let _ = t.io(fs::hard_link(d.join("fz-moved"), sub.join("b")));
        let _ = t.io(fs::remove_file(sub.join("a")));
        let _ = t.io(std::os::unix::fs::symlink("fz-moved", d.join("fz-link")));
        // Special files and attributes (format v3): a FIFO and a device, an attribute and an
        // ACL on the new file, a default ACL on the directory, one attribute removed.
        mknod(t, &d.join("fz-fifo"), nix::libc::S_IFIFO | 0o644, 0);
        mknod(t, &d.join("fz-null"), nix::libc::S_IFCHR | 0o666, nix::libc::makedev(1, 3));
        let moved = d.join("fz-moved");
        write_xattr(t, &moved, "user.fz", Some(&[b'x'; 300]));
        write_xattr(t, &moved, "system.posix_acl_access", Some(&acl_value()));
        write_xattr(t, d, "system.posix_acl_default", Some(&acl_value()));
        write_xattr(t, d, "user.fz-dir", Some(b"d"));
        write_xattr(t, &moved, "user.fz", None);
        read_xattrs(t, &moved);
        if let Some(next) = dirs.get(i + 1) {
            let _ = t.io(fs::rename(&sub, next.join(format!("fz-dir-from-{i}"))));
        }
    }
    // Existing files: truncates, writes in the middle and past the end, renames over others.
    let files: Vec<PathBuf> = tree.files.iter().take(12).cloned().collect();
    for (i, f) in files.iter().enumerate() {
        if let Some(h) = t.io(opts().write(true).open(f)) {
            let _ = t.io(h.write_at(b"overwrite", 4090));
            let _ = t.io(h.set_len(if i % 2 == 0 { 3 } else { 70_000 }));
            let _ = t.io(h.write_at(b"tail", 200_000));
        }
        // Attributes of existing files: replaced, added, removed.
        write_xattr(t, f, "user.comment", Some(b"changed"));
        write_xattr(t, f, "user.fz-existing", Some(&[b'y'; 1000]));
        if i % 2 == 1 {
            write_xattr(t, f, "user.comment", None);
            write_xattr(t, f, "system.posix_acl_access", None);
        }
        if i % 3 == 2 {
            if let Some(other) = files.get(i - 1) {
                let _ = t.io(fs::rename(f, other));
            }
        }
    }
    if let (Some(a), Some(b)) = (tree.dirs.get(1), tree.dirs.get(2)) {
        let _ = t.io(fs::rename(a, b.join("fz-moved-dir")));
    }
    // Embeddings.
    let q: Vec<f32> = (0..6).flat_map(|r| vector(dim, 5_000_000 + r)).collect();
    for (i, f) in tree.files.iter().rev().take(10).enumerate() {
        let n = (i % 4 + 1) * dim as usize;
        set(t, f, dim, (i % 3) as u32, &q[..n.min(q.len())]);
        get(t, f, dim);
        if i % 3 == 1 {
            remove(t, f);
        }
    }
    let fresh = root.join("fz-vec");
    write_file(t, &fresh, b"vector file");
    set(t, &fresh, dim, 0, &q);
    for ef in [5, 64, 512] {
        search(t, &root, &q[..dim as usize], 5, ef);
    }
    let _ = stats(t, &root);
    nix::unistd::sync();
    // Everything goes: unlink, rmdir, the files' embeddings with them.
    if let Some(rd) = t.io(fs::read_dir(&root)) {
        for e in rd.take(MAX_ENTRIES) {
            let Some(e) = t.io(e) else { break };
            let p = e.path();
            match t.io(fs::symlink_metadata(&p)) {
                Some(m) if m.is_dir() => {
                    let _ = t.io(fs::remove_dir_all(&p));
                }
                Some(_) => {
                    let _ = t.io(fs::remove_file(&p));
                }
                None => {}
            }
        }
    }
    search(t, &root, &q[..dim as usize], 3, 64);
    println!("{}", t.line());
    ExitCode::SUCCESS
}
