//! The mounted filesystem around a path: is it vexfs, where is its root, and which path has
//! which inode (search results name inodes).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use vexfs_image::vexfs_core::format::superblock::MAGIC;

/// A few `statfs` `f_type` values (linux/magic.h), to name the filesystem a path is on.
const FS_NAMES: &[(u64, &str)] = &[
    (0xEF53, "ext2/3/4"),
    (0x0102_1994, "tmpfs"),
    (0x8584_58f6, "ramfs"),
    (0x0102_1997, "9p"),
    (0x9123_683E, "btrfs"),
    (0x5846_5342, "xfs"),
    (0x794c_7630, "overlayfs"),
    (0x6969, "nfs"),
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x4d44, "vfat"),
    (0x6573_5546, "fuse"),
    (0x2FC1_2FC1, "zfs"),
    (0xF2F5_2010, "f2fs"),
];

/// `f_type` as printed in messages: `0x1021994 (tmpfs)`.
fn fs_type_name(t: u64) -> String {
    match FS_NAMES.iter().find(|(m, _)| *m == t) {
        Some((_, n)) => format!("{t:#x}, {n}"),
        None => format!("{t:#x}"),
    }
}

/// Fails unless `f` (opened from `path`) is on a mounted vexfs: statfs `f_type` is the vexfs
/// magic. Every online command checks this before its first ioctl, since another filesystem
/// would only answer ENOTTY.
pub fn check_vexfs(f: &File, path: &Path) -> Result<(), String> {
    let st = nix::sys::statfs::fstatfs(f).map_err(|e| format!("{}: statfs: {e}", path.display()))?;
    // The field's C type differs between libcs (signed on glibc): the magic is below 2^31.
    #[allow(clippy::unnecessary_cast)]
    let t = st.filesystem_type().0 as u64 & 0xffff_ffff;
    if t != u64::from(MAGIC) {
        return Err(format!(
            "{} is not on a vexfs mount (statfs f_type {}; vexfs is {MAGIC:#x}): give a file or \
             directory of a mounted vexfs (mount -t vexfs DEVICE DIR); for an unmounted image, \
             use vexctl inspect, ls or cat",
            path.display(),
            fs_type_name(t)
        ));
    }
    Ok(())
}

/// The root of the mount holding `path`: the highest directory above it on the same device.
pub fn mount_root(path: &Path) -> Result<PathBuf, String> {
    let mut p = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dev = std::fs::metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?.dev();
    if !p.is_dir() {
        p.pop();
    }
    while let Some(parent) = p.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == dev => p = parent.to_path_buf(),
            _ => break,
        }
    }
    Ok(p)
}

/// Inode number -> path relative to the mount root, for every file and directory reachable
/// from the root without leaving the mount. A file with several hard links is known by the
/// first of its paths in sorted order.
#[derive(Debug, Default)]
pub struct InodeMap {
    paths: HashMap<u64, PathBuf>,
    /// Directories that could not be listed (their contents are missing).
    pub unreadable: Vec<PathBuf>,
}

impl InodeMap {
    /// Walks the mount at `root` once (depth first, names sorted).
    pub fn build(root: &Path) -> Result<InodeMap, String> {
        let meta = std::fs::metadata(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let dev = meta.dev();
        let mut map = InodeMap::default();
        map.paths.insert(meta.ino(), PathBuf::from("."));
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.join(&rel);
            let entries = match std::fs::read_dir(&dir) {
                Ok(rd) => rd.collect::<Result<Vec<_>, _>>(),
                Err(e) => Err(e),
            };
            let mut entries = match entries {
                Ok(v) => v,
                Err(_) => {
                    map.unreadable.push(rel);
                    continue;
                }
            };
            entries.sort_by_key(|e| e.file_name());
            let mut subdirs = Vec::new();
            for e in entries {
                let child = rel.join(e.file_name());
                let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir {
                    // Another filesystem mounted below the root is not part of this one.
                    match e.metadata() {
                        Ok(m) if m.dev() == dev => subdirs.push(child.clone()),
                        _ => continue,
                    }
                }
                map.paths.entry(e.ino()).or_insert(child);
            }
            // Reversed, so that the stack pops them in sorted order.
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(map)
    }

    /// The path of inode `ino`, relative to the mount root.
    pub fn path(&self, ino: u64) -> Option<&Path> {
        self.paths.get(&ino).map(PathBuf::as_path)
    }

    /// Number of inodes found.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.paths.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ino(p: &Path) -> u64 {
        std::fs::symlink_metadata(p).unwrap().ino()
    }

    #[test]
    fn inode_map_of_a_tree() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("a/b/c")).unwrap();
        std::fs::create_dir(r.join("z")).unwrap();
        std::fs::write(r.join("top"), "x").unwrap();
        std::fs::write(r.join("a/b/c/deep"), "y").unwrap();
        std::fs::write(r.join("z/linked"), "z").unwrap();
        std::fs::hard_link(r.join("z/linked"), r.join("a/also")).unwrap();
        symlink("a/b", r.join("sym")).unwrap();
        for i in 0..300 {
            std::fs::write(r.join(format!("a/b/{i}")), "").unwrap();
        }
        let m = InodeMap::build(r).unwrap();
        assert!(m.unreadable.is_empty());
        // 5 directories with the root, 3 files, 1 symlink, 300 small files; one file twice.
        assert_eq!(m.len(), 5 + 3 + 1 + 300);
        assert_eq!(m.path(ino(r)), Some(Path::new(".")));
        assert_eq!(m.path(ino(&r.join("top"))), Some(Path::new("top")));
        assert_eq!(m.path(ino(&r.join("a/b/c/deep"))), Some(Path::new("a/b/c/deep")));
        assert_eq!(m.path(ino(&r.join("a/b/c"))), Some(Path::new("a/b/c")));
        assert_eq!(m.path(ino(&r.join("a/b/299"))), Some(Path::new("a/b/299")));
        // The symlink itself, not what it points to; the hard link by its first sorted path.
        assert_eq!(m.path(ino(&r.join("sym"))), Some(Path::new("sym")));
        assert_eq!(m.path(ino(&r.join("z/linked"))), Some(Path::new("a/also")));
        assert_eq!(m.path(1 << 60), None);
    }

    #[test]
    fn mount_root_is_above_the_path() {
        // /proc is its own mount below /: its root is /proc, and the root of / is /.
        if Path::new("/proc/self").exists() {
            assert_eq!(mount_root(Path::new("/proc/self/status")).unwrap(), Path::new("/proc"));
            assert_eq!(mount_root(Path::new("/proc")).unwrap(), Path::new("/proc"));
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), "").unwrap();
        let from_file = mount_root(&t.path().join("d/f")).unwrap();
        let from_dir = mount_root(&t.path().join("d")).unwrap();
        assert_eq!(from_file, from_dir);
        assert!(t.path().canonicalize().unwrap().starts_with(&from_file));
        assert!(mount_root(&t.path().join("missing")).is_err());
    }

    #[test]
    fn other_filesystems_are_named() {
        let f = File::open("/proc/self/status").unwrap();
        let e = check_vexfs(&f, Path::new("/proc/self/status")).unwrap_err();
        assert!(
            e.starts_with(
                "/proc/self/status is not on a vexfs mount (statfs f_type 0x9fa0, proc; vexfs is 0x56455846)"
            ),
            "{e}"
        );
        assert_eq!(fs_type_name(0x1234), "0x1234");
    }
}
