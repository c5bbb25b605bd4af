//! Scans of on-disk bitmaps (bit `i` is bit `i % 8` of byte `i / 8`, as `vexfs_core::format::
//! bit_test` reads them) a byte at a time where a bit at a time is not needed: fsck and the
//! writer scan the whole block and inode bitmaps, including their padding past the last block
//! or inode (32,768 bits per bitmap block).

use vexfs_core::format::bit_test;

/// The clear bits among the first `n` of `bits`; bits past the end of the slice count as clear.
pub(crate) fn count_clear(bits: &[u8], n: u64) -> u64 {
    let whole = usize::try_from(n / 8).unwrap_or(usize::MAX).min(bits.len());
    let set: u64 = bits[..whole].iter().map(|b| u64::from(b.count_ones())).sum();
    let tail = (whole as u64 * 8..n).filter(|&i| bit_test(bits, i as usize)).count() as u64;
    n - set - tail
}

/// The first set bit in `from..to`, if any (bits past the end of the slice are clear).
pub(crate) fn first_set(bits: &[u8], from: u64, to: u64) -> Option<u64> {
    let mut i = from;
    while i < to {
        let byte = usize::try_from(i / 8).ok().and_then(|b| bits.get(b)).copied()?;
        if i % 8 == 0 && byte == 0 {
            i += 8;
            continue;
        }
        if byte & (1 << (i % 8)) != 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both scans against a bit-by-bit reading, on bitmaps with bits set near byte edges.
    #[test]
    fn scans_match_bit_by_bit() {
        let mut bits = vec![0u8; 40];
        for &i in &[0usize, 7, 8, 63, 64, 100, 255, 256, 257, 319] {
            bits[i / 8] |= 1 << (i % 8);
        }
        for n in [0u64, 1, 7, 8, 9, 63, 64, 65, 250, 320, 400] {
            let slow = (0..n).filter(|&i| !bit_test(&bits, i as usize)).count() as u64;
            assert_eq!(count_clear(&bits, n), slow, "count_clear n={n}");
        }
        for from in [0u64, 1, 8, 9, 64, 65, 101, 256, 258, 320] {
            for to in [from, from + 1, from + 7, from + 64, 400] {
                let slow = (from..to).find(|&i| bit_test(&bits, i as usize));
                assert_eq!(first_set(&bits, from, to), slow, "first_set {from}..{to}");
            }
        }
    }
}
