//! Commands on a mounted vexfs, through the ioctls of `include/vexfs.h`, one module per
//! command: [`import`], [`set`], [`get`], [`rm_embedding`], [`search`], [`stats`],
//! [`wait_indexed`]; this module
//! holds what they share (opening the target, the dimension check, the ioctl error messages).
//!
//! Each opens its target read-only unless it writes, checks with statfs that the target is on a
//! vexfs before the first ioctl, and checks its inputs (dimension against STATS, finiteness,
//! ranges) before calling, so that a refusal names the bad value; an ioctl error is shown with
//! its errno name and the meaning the header documents, and what to do about it.

pub mod get;
pub mod import;
pub mod rm_embedding;
pub mod search;
pub mod set;
pub mod stats;
pub mod wait_indexed;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use nix::errno::Errno;
use vexfs_image::vecfile::Fvecs;

use crate::abi::{VexfsStats, VEXFS_ABI_VERSION, VEXFS_MAX_CHUNKS, VEXFS_MAX_EF, VEXFS_MAX_K};
use crate::ioctl;
use crate::mount::check_vexfs;
use crate::offline::CmdResult;

// Errors -------------------------------------------------------------------------------------

/// The vexfs ioctls, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
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
pub(crate) struct Sent {
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
        (Call::Search, Errno::EOPNOTSUPP) => "--code-distances needs a filesystem with SQ8 or PQ codes \
             (mkfs.vexfs --quant sq8 or pq); search without it for exact distances"
            .into(),
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
pub(crate) fn ioctl_error(path: &Path, call: Call, e: Errno, s: Sent) -> String {
    format!("{}: {} failed: {e:?} ({}): {}", path.display(), call.name(), e.desc(), meaning(call, e, s))
}

// Opening ------------------------------------------------------------------------------------

/// Opens `path` (read-only, or write-only for `write`) and checks that it is on a vexfs.
pub(crate) fn open_vexfs(path: &Path, write: bool) -> Result<File, String> {
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

pub(crate) fn stats_of(f: &File, path: &Path) -> Result<VexfsStats, String> {
    ioctl::stats(f).map_err(|e| ioctl_error(path, Call::Stats, e, Sent::default()))
}

/// Fails unless the vector file's dimension is the filesystem's.
pub(crate) fn check_dim<R>(v: &Fvecs<R>, fs_dim: u32, path: &Path) -> Result<(), String> {
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

/// Writes `s` to stdout and flushes it.
pub(crate) fn print_out(s: &str) -> CmdResult {
    let mut out = io::stdout().lock();
    out.write_all(s.as_bytes()).and_then(|()| out.flush()).map_err(|e| format!("writing output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
