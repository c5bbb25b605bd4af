//! What the fsck.vexfs integration tests share: an image file in a temporary directory, and a
//! run of the fsck binary on it.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// An image file, removed with its directory when dropped.
pub struct Img {
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// Writes `bytes` to `fs.img` in a new temporary directory.
pub fn save(bytes: &[u8]) -> Img {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    std::fs::write(&path, bytes).unwrap();
    Img { _dir: dir, path }
}

/// Runs fsck.vexfs with `args` on `path`: its exit status and its stdout then stderr.
pub fn fsck(path: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fsck-vexfs")).args(args).arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}
