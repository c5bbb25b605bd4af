//! CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every vexfs
//! metadata structure.
//!
//! Software slicing-by-8, no allocation, no `unsafe`; the same code runs in the kernel module
//! (which may not link external crates) and in the tools. Tests check it against the `crc32c`
//! crate. Initial value and final XOR are `!0`, as in iSCSI, ext4 and btrfs.

const POLY: u32 = 0x82F6_3B78;

// Every index is a `u8`-masked value into a `[u32; 256]` or a loop bound below 8: no panic.
#[allow(clippy::indexing_slicing)]
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

/// Feeds `data` into a running CRC-32C state (start with `!0`, finish with `!state`).
// Indices are `u8`-masked into `[u32; 256]` tables, or 0..8 into 8-byte chunks: no panic.
#[allow(clippy::indexing_slicing)]
pub fn update(mut crc: u32, data: &[u8]) -> u32 {
    let t = &TABLES;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ b as u32) & 0xff) as usize];
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

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
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
        }
    }
}
