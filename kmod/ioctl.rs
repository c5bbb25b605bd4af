//! The ioctl ABI of include/vexfs.h: argument structs read from user memory with their size
//! rules, checked field by field, then handed to `vector`.

use crate::format::le::{put_u32, put_u64, u32_at, u64_at};
use crate::sb::SbInfo;
use crate::vector::{self, Hit, DEFAULT_EF, MAX_EF, MAX_K};
use core::ffi::{c_int, c_long, c_uint, c_ulong};
use kernel::bindings;
use kernel::prelude::*;
use kernel::uaccess::UserSlice;

const MAGIC: u32 = 0xE7;
const fn ioc(dir: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | (MAGIC << 8) | nr
}
const W: u32 = 1;
const RW: u32 = 3;

/// Sizes of the v1 argument structs.
const SET_SIZE: usize = 64;
const GET_SIZE: usize = 64;
const REMOVE_SIZE: usize = 48;
const SEARCH_SIZE: usize = 64;
const STATS_SIZE: usize = 88;
/// Bytes of one `struct vexfs_search_result`.
const RESULT_SIZE: usize = 16;

pub const IOC_SET: u32 = ioc(W, 1, SET_SIZE as u32);
pub const IOC_GET: u32 = ioc(RW, 2, GET_SIZE as u32);
pub const IOC_REMOVE: u32 = ioc(W, 3, REMOVE_SIZE as u32);
pub const IOC_SEARCH: u32 = ioc(RW, 4, SEARCH_SIZE as u32);
pub const IOC_STATS: u32 = ioc(RW, 5, STATS_SIZE as u32);
/// Flag of SET: drop chunks past the ones set.
const SET_TRUNCATE: u32 = 1;
/// Largest `size` accepted (a newer, larger struct must be all zero past what we know).
const MAX_ARG_SIZE: usize = 4096;

/// Reads an argument struct of `known` bytes (v1) into `buf`. `size` (its first field) below
/// `known` is EINVAL; above it, the extra bytes must be zero (else E2BIG), as
/// copy_struct_from_user() does.
fn read_arg(arg: usize, known: usize, buf: &mut [u8]) -> Result {
    let mut sz = [0u8; 4];
    UserSlice::new(arg, 4).reader().read_slice(&mut sz)?;
    let size = u32::from_le_bytes(sz) as usize;
    if size < known {
        return Err(EINVAL);
    }
    if size > MAX_ARG_SIZE {
        return Err(E2BIG);
    }
    let mut r = UserSlice::new(arg, size).reader();
    r.read_slice(buf.get_mut(..known).ok_or(EINVAL)?)?;
    let mut rest = size - known;
    let mut chunk = [0u8; 64];
    while rest > 0 {
        let n = rest.min(chunk.len());
        r.read_slice(chunk.get_mut(..n).ok_or(EINVAL)?)?;
        if chunk.iter().take(n).any(|&b| b != 0) {
            return Err(E2BIG);
        }
        rest -= n;
    }
    Ok(())
}

/// Writes the v1 struct back (output fields).
fn write_arg(arg: usize, buf: &[u8]) -> Result {
    UserSlice::new(arg, buf.len()).writer().write_slice(buf)
}

fn u32f(b: &[u8], off: usize) -> u32 {
    u32_at(b, off, "ioctl argument").unwrap_or(u32::MAX)
}
fn u64f(b: &[u8], off: usize) -> u64 {
    u64_at(b, off, "ioctl argument").unwrap_or(u64::MAX)
}
/// All of `b[from..to]` zero (reserved fields).
fn zero(b: &[u8], from: usize, to: usize) -> bool {
    b.get(from..to).is_some_and(|r| r.iter().all(|&x| x == 0))
}

/// Reads `words` u32s from user memory at `ptr` into a new buffer.
fn read_words(ptr: u64, words: usize) -> Result<KVVec<u32>> {
    let mut v = KVVec::from_elem(0u32, words, GFP_KERNEL)?;
    let bytes = words.checked_mul(4).ok_or(EINVAL)?;
    let s = v.as_mut_slice();
    // SAFETY: a u32 slice viewed as its bytes (no alignment requirement for u8).
    let raw = unsafe { core::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u8>(), bytes) };
    UserSlice::new(ptr as usize, bytes).reader().read_slice(raw)?;
    // The ABI is the CPU's byte order, which is little-endian on every vexfs target.
    Ok(v)
}

fn write_words(ptr: u64, words: &[u32]) -> Result {
    // SAFETY: a u32 slice viewed as its bytes.
    let raw = unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 4) };
    UserSlice::new(ptr as usize, raw.len()).writer().write_slice(raw)
}

fn set(inode: *mut bindings::inode, sbi: &SbInfo, arg: usize) -> Result {
    let mut b = [0u8; SET_SIZE];
    read_arg(arg, SET_SIZE, &mut b)?;
    let (flags, dim, first, count) = (u32f(&b, 4), u32f(&b, 8), u32f(&b, 12), u32f(&b, 16));
    if flags & !SET_TRUNCATE != 0
        || !zero(&b, 20, 24)
        || !zero(&b, 32, SET_SIZE)
        || dim != sbi.disk.vec_dim
        || count == 0
    {
        return Err(EINVAL);
    }
    if count as usize > crate::format::vector::MAX_CHUNKS || first as usize > crate::format::vector::MAX_CHUNKS {
        return Err(E2BIG);
    }
    let data = read_words(u64f(&b, 24), count as usize * dim as usize)?;
    vector::set_embeddings(inode, first as usize, &data, flags & SET_TRUNCATE != 0)
}

fn get(inode: *mut bindings::inode, sbi: &SbInfo, arg: usize) -> Result {
    let mut b = [0u8; GET_SIZE];
    read_arg(arg, GET_SIZE, &mut b)?;
    let (flags, dim, first, count) = (u32f(&b, 4), u32f(&b, 8), u32f(&b, 12), u32f(&b, 16));
    if flags != 0 || !zero(&b, 32, GET_SIZE) || dim != sbi.disk.vec_dim {
        return Err(EINVAL);
    }
    let cap = (count as usize).min(crate::format::vector::MAX_CHUNKS);
    let (data, total) = vector::get_embeddings(inode, first as usize, cap)?;
    let n = data.len() / dim as usize;
    if n > 0 {
        write_words(u64f(&b, 24), &data)?;
    }
    put_u32(&mut b, 16, n as u32);
    put_u32(&mut b, 20, total as u32);
    write_arg(arg, &b)
}

fn remove(inode: *mut bindings::inode, arg: usize) -> Result {
    let mut b = [0u8; REMOVE_SIZE];
    read_arg(arg, REMOVE_SIZE, &mut b)?;
    if u32f(&b, 4) != 0 || !zero(&b, 8, REMOVE_SIZE) {
        return Err(EINVAL);
    }
    vector::remove_embeddings(inode)
}

fn search(sbi: &SbInfo, arg: usize) -> Result {
    let mut b = [0u8; SEARCH_SIZE];
    read_arg(arg, SEARCH_SIZE, &mut b)?;
    let (flags, dim, k, ef) = (u32f(&b, 4), u32f(&b, 8), u32f(&b, 12) as usize, u32f(&b, 16) as usize);
    // `count` (bytes 20..24) is output only: its input value is ignored.
    if flags != 0 || !zero(&b, 40, SEARCH_SIZE) || dim != sbi.disk.vec_dim {
        return Err(EINVAL);
    }
    if k == 0 || k > MAX_K {
        return Err(EINVAL);
    }
    let ef = if ef == 0 { k.max(DEFAULT_EF) } else { ef };
    if ef < k || ef > MAX_EF {
        return Err(EINVAL);
    }
    let query = read_words(u64f(&b, 24), dim as usize)?;
    if crate::distance::first_nonfinite(&query).is_some() {
        return Err(EINVAL);
    }
    let mut hits = KVVec::from_elem(Hit::default(), k, GFP_KERNEL)?;
    let n = vector::search(sbi, &query, k, ef, hits.as_mut_slice())?;
    // Results go to user memory only after the index lock is released.
    let mut out = KVVec::from_elem(0u8, n * RESULT_SIZE, GFP_KERNEL)?;
    for (i, h) in hits.iter().take(n).enumerate() {
        let o = i * RESULT_SIZE;
        put_u64(out.as_mut_slice(), o, h.ino);
        put_u32(out.as_mut_slice(), o + 8, h.chunk);
        put_u32(out.as_mut_slice(), o + 12, h.dist_bits);
    }
    if n > 0 {
        UserSlice::new(u64f(&b, 32) as usize, out.len()).writer().write_slice(&out)?;
    }
    put_u32(&mut b, 20, n as u32);
    write_arg(arg, &b)
}

fn stats(sbi: &SbInfo, arg: usize) -> Result {
    let mut b = [0u8; STATS_SIZE];
    read_arg(arg, STATS_SIZE, &mut b)?;
    // Every field after `flags` up to `reserved0` is output only; reserved ones must be zero.
    if u32f(&b, 4) != 0 || !zero(&b, 68, STATS_SIZE) {
        return Err(EINVAL);
    }
    let (h, imp) = vector::stats(sbi);
    let d = &sbi.disk;
    use crate::format::superblock::Region;
    let bytes = [Region::VecBitmap, Region::VecMap, Region::VecData, Region::Hnsw]
        .iter()
        .map(|&r| d.region(r).blocks)
        .sum::<u64>()
        * crate::format::BLOCK_SIZE as u64;
    put_u32(&mut b, 8, d.vec_dim);
    put_u32(&mut b, 12, d.vec_metric);
    put_u32(&mut b, 16, d.hnsw_m);
    put_u32(&mut b, 20, d.hnsw_ef_construction);
    put_u64(&mut b, 24, h.live as u64);
    put_u64(&mut b, 32, h.deleted as u64);
    put_u64(&mut b, 40, d.vec_capacity);
    let empty = h.entry == crate::format::vector::NO_SLOT;
    put_u32(&mut b, 48, if empty { 0 } else { h.entry_level + 1 });
    put_u32(&mut b, 52, h.entry);
    put_u64(&mut b, 56, bytes);
    put_u32(&mut b, 64, imp);
    write_arg(arg, &b)
}

fn ioctl(inode: *mut bindings::inode, cmd: u32, arg: usize) -> Result {
    let sbi = SbInfo::of(inode);
    match cmd {
        IOC_SET => set(inode, sbi, arg),
        IOC_GET => get(inode, sbi, arg),
        IOC_REMOVE => remove(inode, arg),
        IOC_SEARCH => search(sbi, arg),
        IOC_STATS => stats(sbi, arg),
        _ => Err(ENOTTY),
    }
}

/// Entry from glue.c's `unlocked_ioctl` (which checked write access for SET and REMOVE and
/// holds the inode lock for them).
#[no_mangle]
pub extern "C" fn vexfs_rs_ioctl(inode: *mut bindings::inode, cmd: c_uint, arg: c_ulong) -> c_long {
    match ioctl(inode, cmd, arg as usize) {
        Ok(()) => 0,
        Err(e) => e.to_errno() as c_long,
    }
}

/// `user.vexfs.embedding` get: chunk 0 as raw float32; `size` 0 asks for the length.
/// Errors: ENODATA (no embedding), ERANGE (buffer too small).
#[no_mangle]
pub extern "C" fn vexfs_rs_xattr_get(inode: *mut bindings::inode, buf: *mut u8, size: usize) -> c_int {
    let sbi = SbInfo::of(inode);
    let len = sbi.disk.vec_dim as usize * 4;
    let r = (|| -> Result<c_int> {
        let (data, total) = vector::get_embeddings(inode, 0, 1)?;
        if total == 0 {
            return Err(Error::from_errno(-crate::error::ENODATA));
        }
        if size == 0 {
            return Ok(len as c_int);
        }
        if size < len {
            return Err(ERANGE);
        }
        // SAFETY: `buf` is the VFS's kernel buffer of `size` >= len bytes.
        let out = unsafe { core::slice::from_raw_parts_mut(buf, len) };
        for (i, w) in data.iter().enumerate() {
            crate::format::le::put_u32(out, 4 * i, *w);
        }
        Ok(len as c_int)
    })();
    r.unwrap_or_else(|e| e.to_errno())
}

/// `user.vexfs.embedding` set (chunk 0) or remove (`value` null: every embedding).
/// Errors: EINVAL (size is not dim * 4, NaN/Inf), EEXIST/ENODATA for XATTR_CREATE/REPLACE.
#[no_mangle]
pub extern "C" fn vexfs_rs_xattr_set(
    inode: *mut bindings::inode,
    value: *const u8,
    size: usize,
    flags: c_int,
) -> c_int {
    let sbi = SbInfo::of(inode);
    let dim = sbi.disk.vec_dim as usize;
    let r = (|| -> Result {
        let has = vector::has_embeddings(inode);
        if value.is_null() {
            if !has {
                return Err(Error::from_errno(-crate::error::ENODATA));
            }
            return vector::remove_embeddings(inode);
        }
        // XATTR_CREATE = 1, XATTR_REPLACE = 2 (uapi linux/xattr.h).
        if flags & 1 != 0 && has {
            return Err(EEXIST);
        }
        if flags & 2 != 0 && !has {
            return Err(Error::from_errno(-crate::error::ENODATA));
        }
        if size != dim * 4 {
            return Err(EINVAL);
        }
        // SAFETY: the VFS's kernel buffer of `size` bytes.
        let raw = unsafe { core::slice::from_raw_parts(value, size) };
        let mut v = KVVec::from_elem(0u32, dim, GFP_KERNEL)?;
        for (i, d) in v.as_mut_slice().iter_mut().enumerate() {
            *d = u32_at(raw, 4 * i, "xattr value").map_err(|_| EINVAL)?;
        }
        vector::set_embeddings(inode, 0, &v, false)
    })();
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Whether the inode has embeddings, for listxattr.
#[no_mangle]
pub extern "C" fn vexfs_rs_has_embeddings(inode: *mut bindings::inode) -> c_int {
    vector::has_embeddings(inode) as c_int
}
