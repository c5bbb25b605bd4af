//! Bounds-checked little-endian field access. Out-of-range reads give
//! [`FormatError::Truncated`]; out-of-range writes are ignored by construction because every
//! encoder writes into a buffer whose size it has checked first.

use crate::error::{FormatError, Result};

/// Reads `N` bytes at `off`.
pub fn bytes<const N: usize>(buf: &[u8], off: usize, what: &'static str) -> Result<[u8; N]> {
    let end = off.checked_add(N).ok_or(FormatError::Truncated { what, len: buf.len() })?;
    // `try_from` of a slice of length `N` is a plain load (copy_from_slice was a call per
    // field in the kernel build).
    buf.get(off..end).and_then(|s| <[u8; N]>::try_from(s).ok()).ok_or(FormatError::Truncated { what, len: buf.len() })
}

/// Reads a little-endian `u16` at `off`.
pub fn u16_at(buf: &[u8], off: usize, what: &'static str) -> Result<u16> {
    Ok(u16::from_le_bytes(bytes(buf, off, what)?))
}

/// Reads a little-endian `u32` at `off`.
pub fn u32_at(buf: &[u8], off: usize, what: &'static str) -> Result<u32> {
    Ok(u32::from_le_bytes(bytes(buf, off, what)?))
}

/// Reads a little-endian `u64` at `off`.
pub fn u64_at(buf: &[u8], off: usize, what: &'static str) -> Result<u64> {
    Ok(u64::from_le_bytes(bytes(buf, off, what)?))
}

/// Reads a little-endian `i64` at `off`.
pub fn i64_at(buf: &[u8], off: usize, what: &'static str) -> Result<i64> {
    Ok(i64::from_le_bytes(bytes(buf, off, what)?))
}

/// Writes `src` at `off` if it fits (encoders size-check their buffer up front).
pub fn put(buf: &mut [u8], off: usize, src: &[u8]) {
    if let Some(end) = off.checked_add(src.len()) {
        if let Some(d) = buf.get_mut(off..end) {
            d.copy_from_slice(src);
        }
    }
}

/// Writes a little-endian `u16` at `off`.
pub fn put_u16(buf: &mut [u8], off: usize, v: u16) {
    put(buf, off, &v.to_le_bytes());
}

/// Writes a little-endian `u32` at `off`.
pub fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    put(buf, off, &v.to_le_bytes());
}

/// Writes a little-endian `u64` at `off`.
pub fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    put(buf, off, &v.to_le_bytes());
}

/// Writes a little-endian `i64` at `off`.
pub fn put_i64(buf: &mut [u8], off: usize, v: i64) {
    put(buf, off, &v.to_le_bytes());
}

/// Writes a count or length that the encoder has already bounded by a format limit (every such
/// limit is far below `u32::MAX`) as a little-endian `u32` at `off`. Were a caller ever to pass
/// more, `u32::MAX` is stored, which every decoder rejects as over its limit, instead of a
/// truncated count that would decode as valid.
pub fn put_count(buf: &mut [u8], off: usize, n: usize) {
    put_u32(buf, off, u32::try_from(n).unwrap_or(u32::MAX));
}

/// Record `i` of an array of `size`-byte records that starts at byte `start` of `buf`.
/// Errors: `Truncated` (`what`, the buffer's length) when the record does not lie wholly
/// inside `buf`, its offset overflow included.
pub fn record<'a>(buf: &'a [u8], start: usize, size: usize, i: usize, what: &'static str) -> Result<&'a [u8]> {
    record_range(start, size, i).and_then(|r| buf.get(r)).ok_or(FormatError::Truncated { what, len: buf.len() })
}

/// Record `i` of an array of `size`-byte records that starts at byte `start` of `buf`, to
/// write; `None` when it does not fit (encoders size their buffers first).
pub fn record_mut(buf: &mut [u8], start: usize, size: usize, i: usize) -> Option<&mut [u8]> {
    record_range(start, size, i).and_then(|r| buf.get_mut(r))
}

/// Byte range `start + i * size .. + size`, or `None` on overflow.
fn record_range(start: usize, size: usize, i: usize) -> Option<core::ops::Range<usize>> {
    let off = i.checked_mul(size)?.checked_add(start)?;
    Some(off..off.checked_add(size)?)
}

/// Whether every byte of `buf` is zero: read 8 bytes at a time, without stopping early (a
/// block's unused tail, checked on every decode, is the common case: all zero).
pub fn all_zero(buf: &[u8]) -> bool {
    let words = buf.chunks_exact(8);
    let tail = words.remainder().iter().fold(0u8, |a, &b| a | b);
    let or = words.fold(0u64, |a, w| a | <[u8; 8]>::try_from(w).map_or(1, u64::from_ne_bytes));
    or == 0 && tail == 0
}
