//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every vexfs
//! metadata structure.
//!
//! The kernel module (which may not link external crates) runs [`update_sw`], software
//! slicing-by-8, no allocation, no `unsafe`. In userspace (the `std` feature: the tools, the
//! tests, the fuzzers) [`update`] is the `crc32c` crate's, which uses the CPU's CRC32
//! instruction (SSE 4.2) where there is one: the same values (tests check the two on every
//! length up to 300 bytes), a tenth of the time. Initial value and final XOR are `!0`, as in
//! iSCSI, ext4 and btrfs.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

const POLY: u32 = 0x82F6_3B78;

// Runs only at compile time, to fill `TABLES`: an index out of bounds or an overflow here would
// stop the build, never a running kernel. Indices stay below 256 and 8, and `i < 256` fits `u32`.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = make_tables();

/// Entry `i` of a 256-entry table.
#[inline(always)]
// A `u8` index cannot leave a `[u32; 256]`: this never panics.
#[allow(clippy::indexing_slicing)]
fn at(table: &[u32; 256], i: u8) -> u32 {
    table[usize::from(i)]
}

/// Feeds `data` into a running CRC-32C state (start with `!0`, finish with `!state`):
/// [`update_sw`] in the kernel, the `crc32c` crate in userspace.
#[inline]
pub fn update(crc: u32, data: &[u8]) -> u32 {
    #[cfg(feature = "std")]
    {
        !::crc32c::crc32c_append(!crc, data)
    }
    #[cfg(not(feature = "std"))]
    {
        update_sw(crc, data)
    }
}

/// [`update`] in software: slicing-by-8 over tables made at compile time (the kernel's).
pub fn update_sw(mut crc: u32, data: &[u8]) -> u32 {
    let [t0, t1, t2, t3, t4, t5, t6, t7] = &TABLES;
    let mut rest = data;
    while let Some((chunk, tail)) = rest.split_first_chunk::<8>() {
        let [b0, b1, b2, b3, b4, b5, b6, b7] = *chunk;
        let [c0, c1, c2, c3] = crc.to_le_bytes();
        crc = at(t7, b0 ^ c0)
            ^ at(t6, b1 ^ c1)
            ^ at(t5, b2 ^ c2)
            ^ at(t4, b3 ^ c3)
            ^ at(t3, b4)
            ^ at(t2, b5)
            ^ at(t1, b6)
            ^ at(t0, b7);
        rest = tail;
    }
    for &b in rest {
        let [c0, ..] = crc.to_le_bytes();
        crc = (crc >> 8) ^ at(t0, c0 ^ b);
    }
    crc
}

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    !update(!0, data)
}

/// CRC-32C of `parts` concatenated, e.g. an identity seed followed by a structure.
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    let mut c = !0;
    for p in parts {
        c = update(c, p);
    }
    !c
}

/// The CRC-32C of the bytes already summed into `crc` followed by `data` (as the `crc32c`
/// crate's `crc32c_append`): `crc32c_append(0, d)` is `crc32c(d)`.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    !update(!crc, data)
}

#[cfg(test)]
// Test code: a failed index is the test's failure report; the byte pattern truncates on purpose.
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // RFC 3720 B.4 test vectors.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn matches_crc32c_crate_on_many_lengths() {
        let data: [u8; 300] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        for len in 0..data.len() {
            assert_eq!(crc32c(&data[..len]), ::crc32c::crc32c(&data[..len]), "len {len}");
            let (a, b) = data[..len].split_at(len / 3);
            assert_eq!(crc32c_parts(&[a, b]), ::crc32c::crc32c(&data[..len]));
            assert_eq!(crc32c_append(crc32c(a), b), ::crc32c::crc32c(&data[..len]));
            // The kernel's software path, whole and in two parts.
            assert_eq!(!update_sw(!0, &data[..len]), ::crc32c::crc32c(&data[..len]), "len {len}");
            assert_eq!(!update_sw(update_sw(!0, a), b), ::crc32c::crc32c(&data[..len]), "len {len}");
        }
    }
}
