//! The vexfs ioctls with safe signatures: the only `unsafe` of vexctl.
//!
//! Each wrapper fills the argument struct of [`crate::abi`] (`size` = its size, `flags` and
//! `reserved` as documented, user memory as a `u64` pointer into a Rust buffer that outlives the
//! call and has the room the header asks for) and returns the kernel's errno unchanged; the
//! callers turn it into a message ([`crate::online`]). They do not check their inputs: the kernel
//! does, and vexctl checks what it can before calling, to say more than an errno can.

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

use crate::abi::{
    VexfsGetEmbeddings, VexfsIndexMem, VexfsIndexReads, VexfsRemoveEmbeddings, VexfsSearch, VexfsSearchResult,
    VexfsSetEmbeddings, VexfsStats, VEXFS_IOC_GET_EMBEDDINGS, VEXFS_IOC_INDEX_MEM, VEXFS_IOC_INDEX_READS,
    VEXFS_IOC_REMOVE_EMBEDDINGS, VEXFS_IOC_SEARCH, VEXFS_IOC_SET_EMBEDDINGS, VEXFS_IOC_STATS,
};

/// The raw calls nix generates (public `unsafe fn`s, kept private to this module).
mod raw {
    use super::*;
    nix::ioctl_write_ptr_bad!(ioc_set_embeddings, VEXFS_IOC_SET_EMBEDDINGS, VexfsSetEmbeddings);
    nix::ioctl_readwrite_bad!(ioc_get_embeddings, VEXFS_IOC_GET_EMBEDDINGS, VexfsGetEmbeddings);
    nix::ioctl_write_ptr_bad!(ioc_remove_embeddings, VEXFS_IOC_REMOVE_EMBEDDINGS, VexfsRemoveEmbeddings);
    nix::ioctl_readwrite_bad!(ioc_search, VEXFS_IOC_SEARCH, VexfsSearch);
    nix::ioctl_readwrite_bad!(ioc_stats, VEXFS_IOC_STATS, VexfsStats);
    nix::ioctl_readwrite_bad!(ioc_index_mem, VEXFS_IOC_INDEX_MEM, VexfsIndexMem);
    nix::ioctl_readwrite_bad!(ioc_index_reads, VEXFS_IOC_INDEX_READS, VexfsIndexReads);
    nix::ioctl_read_bad!(tiocgwinsz, nix::libc::TIOCGWINSZ, nix::libc::winsize);
}
use raw::{
    ioc_get_embeddings, ioc_index_mem, ioc_index_reads, ioc_remove_embeddings, ioc_search, ioc_set_embeddings,
    ioc_stats, tiocgwinsz,
};

/// `size` of an argument struct (all are far below 4 GiB).
fn size_of_u32<T>() -> u32 {
    u32::try_from(size_of::<T>()).unwrap_or(u32::MAX)
}

/// A user pointer as the ABI passes it.
fn user_ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// A count that the caller derived from a buffer length; saturates (the kernel then refuses it).
fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// VEXFS_IOC_STATS.
pub fn stats(fd: impl AsFd) -> Result<VexfsStats, Errno> {
    let mut arg = VexfsStats { size: size_of_u32::<VexfsStats>(), ..VexfsStats::default() };
    // SAFETY: `arg` is a valid, exclusively borrowed vexfs_stats of the size the request number
    // encodes; it holds no pointers.
    unsafe { ioc_stats(fd.as_fd().as_raw_fd(), &mut arg) }?;
    Ok(arg)
}

/// VEXFS_IOC_INDEX_MEM: the index's memory and its cache's counts since mount.
pub fn index_mem(fd: impl AsFd) -> Result<VexfsIndexMem, Errno> {
    let mut arg = VexfsIndexMem { size: size_of_u32::<VexfsIndexMem>(), ..VexfsIndexMem::default() };
    // SAFETY: `arg` is a valid, exclusively borrowed vexfs_index_mem of the size the request
    // number encodes; it holds no pointers.
    unsafe { ioc_index_mem(fd.as_fd().as_raw_fd(), &mut arg) }?;
    Ok(arg)
}

/// VEXFS_IOC_INDEX_READS: the 4 KiB blocks read from the device since mount, per vector region.
pub fn index_reads(fd: impl AsFd) -> Result<VexfsIndexReads, Errno> {
    let mut arg = VexfsIndexReads { size: size_of_u32::<VexfsIndexReads>(), ..VexfsIndexReads::default() };
    // SAFETY: `arg` is a valid, exclusively borrowed vexfs_index_reads of the size the request
    // number encodes; it holds no pointers.
    unsafe { ioc_index_reads(fd.as_fd().as_raw_fd(), &mut arg) }?;
    Ok(arg)
}

/// VEXFS_IOC_SET_EMBEDDINGS: `vectors` (a whole number of `dim`-component vectors) become chunks
/// `first_chunk ..` of the file, atomically. `fd` must be open for writing.
pub fn set_embeddings(fd: impl AsFd, dim: u32, first_chunk: u32, flags: u32, vectors: &[f32]) -> Result<(), Errno> {
    let count = match usize::try_from(dim) {
        Ok(d) if d > 0 => vectors.len() / d,
        _ => 0,
    };
    let arg = VexfsSetEmbeddings {
        size: size_of_u32::<VexfsSetEmbeddings>(),
        flags,
        dim,
        first_chunk,
        count: count_u32(count),
        vectors: user_ptr(vectors.as_ptr()),
        ..VexfsSetEmbeddings::default()
    };
    // SAFETY: `arg` is a valid vexfs_set_embeddings; its `vectors` points to `vectors`, which holds
    // at least `count * dim` f32 and stays borrowed (unmoved, unfreed) until the call returns. The
    // kernel only reads through it.
    unsafe { ioc_set_embeddings(fd.as_fd().as_raw_fd(), &arg) }?;
    Ok(())
}

/// What VEXFS_IOC_GET_EMBEDDINGS returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// The vectors copied, `dim` components each, from the requested first chunk on.
    pub vectors: Vec<f32>,
    /// How many vectors `vectors` holds.
    pub count: u32,
    /// How many chunks the file carries.
    pub total: u32,
}

/// VEXFS_IOC_GET_EMBEDDINGS: up to `capacity` vectors from chunk `first_chunk` on.
pub fn get_embeddings(fd: impl AsFd, dim: u32, first_chunk: u32, capacity: u32) -> Result<Embeddings, Errno> {
    let room = usize::try_from(u64::from(capacity) * u64::from(dim)).map_err(|_| Errno::ENOMEM)?;
    let mut buf = vec![0f32; room];
    let mut arg = VexfsGetEmbeddings {
        size: size_of_u32::<VexfsGetEmbeddings>(),
        dim,
        first_chunk,
        count: capacity,
        vectors: user_ptr(buf.as_mut_ptr()),
        ..VexfsGetEmbeddings::default()
    };
    // SAFETY: `arg` is a valid, exclusively borrowed vexfs_get_embeddings; its `vectors` points to
    // `buf`, which has room for `capacity * dim` f32, is not otherwise accessed and stays alive
    // until the call returns. Any bit pattern is a valid f32.
    unsafe { ioc_get_embeddings(fd.as_fd().as_raw_fd(), &mut arg) }?;
    // The kernel copied `count` (at most `capacity`) vectors.
    let copied = arg.count.min(capacity);
    buf.truncate(usize::try_from(u64::from(copied) * u64::from(dim)).unwrap_or(0));
    Ok(Embeddings { vectors: buf, count: copied, total: arg.total })
}

/// The number of chunks the file carries (VEXFS_IOC_GET_EMBEDDINGS of at most one vector).
pub fn chunk_count(fd: impl AsFd, dim: u32) -> Result<u32, Errno> {
    // Capacity 1, not 0: the header does not say whether a zero-capacity GET is valid.
    Ok(get_embeddings(fd, dim, 0, 1)?.total)
}

/// VEXFS_IOC_REMOVE_EMBEDDINGS. `fd` must be open for writing.
pub fn remove_embeddings(fd: impl AsFd) -> Result<(), Errno> {
    let arg =
        VexfsRemoveEmbeddings { size: size_of_u32::<VexfsRemoveEmbeddings>(), ..VexfsRemoveEmbeddings::default() };
    // SAFETY: `arg` is a valid vexfs_remove_embeddings; it holds no pointers.
    unsafe { ioc_remove_embeddings(fd.as_fd().as_raw_fd(), &arg) }?;
    Ok(())
}

/// VEXFS_IOC_SEARCH: the `k` nearest embeddings to `query` (`ef_search` 0: the kernel's
/// default), with `flags` (`VEXFS_SEARCH_*`).
pub fn search(
    fd: impl AsFd,
    query: &[f32],
    k: u32,
    ef_search: u32,
    flags: u32,
) -> Result<Vec<VexfsSearchResult>, Errno> {
    let room = usize::try_from(k).map_err(|_| Errno::ENOMEM)?;
    let mut results = vec![VexfsSearchResult::default(); room];
    let mut arg = VexfsSearch {
        size: size_of_u32::<VexfsSearch>(),
        flags,
        dim: count_u32(query.len()),
        k,
        ef_search,
        query: user_ptr(query.as_ptr()),
        results: user_ptr(results.as_mut_ptr()),
        ..VexfsSearch::default()
    };
    // SAFETY: `arg` is a valid, exclusively borrowed vexfs_search; `query` points to `query.len()`
    // = `dim` f32 that are only read, `results` to `results`, room for `k` vexfs_search_result
    // (repr(C), any bit pattern valid), not otherwise accessed; both live until the call returns.
    unsafe { ioc_search(fd.as_fd().as_raw_fd(), &mut arg) }?;
    results.truncate(usize::try_from(arg.count).unwrap_or(0).min(room));
    Ok(results)
}

/// Columns of the terminal `fd` refers to (TIOCGWINSZ); `None` if it is no terminal.
pub fn terminal_columns(fd: impl AsFd) -> Option<u16> {
    let mut ws = nix::libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: `ws` is a valid, exclusively borrowed struct winsize, which TIOCGWINSZ fills.
    unsafe { tiocgwinsz(fd.as_fd().as_raw_fd(), &mut ws) }.ok()?;
    Some(ws.ws_col)
}
