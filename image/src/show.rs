//! Presentation helpers shared by the tools: the region table, byte sizes, UUIDs.

use vexfs_core::format::superblock::{Superblock, REGIONS};
use vexfs_core::format::BLOCK_SIZE;

/// One row of the device map: a name, the first block and the length in blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `superblock`, a [`Region::name`](vexfs_core::format::superblock::Region::name), or
    /// `backup superblock`.
    pub name: &'static str,
    /// First block.
    pub start: u64,
    /// Length in blocks.
    pub blocks: u64,
}

impl Row {
    /// Length in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks * BLOCK_SIZE as u64
    }
}

/// Every block of the device in order: superblock, the regions (the vector codes' zero entry
/// left out on a filesystem without SQ8), backup superblock.
pub fn device_map(sb: &Superblock) -> Vec<Row> {
    let mut rows = vec![Row { name: "superblock", start: 0, blocks: 1 }];
    for r in REGIONS {
        let e = sb.region(r);
        if e.start != 0 {
            rows.push(Row { name: r.name(), start: e.start, blocks: e.blocks });
        }
    }
    rows.push(Row { name: "backup superblock", start: sb.backup_block, blocks: 1 });
    rows
}

/// The device map as an aligned text table with a header line.
pub fn device_map_table(sb: &Superblock) -> String {
    let mut s = format!("{:<18} {:>12} {:>12} {:>12}\n", "region", "start", "blocks", "bytes");
    for r in device_map(sb) {
        s += &format!("{:<18} {:>12} {:>12} {:>12}\n", r.name, r.start, r.blocks, human_bytes(r.bytes()));
    }
    s
}

/// `n` bytes in binary units: `512 B`, `4.0 KiB`, `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Parses a UUID in the form of [`format_uuid`] (dashes optional, any case).
/// Errors: a message saying what is wrong.
pub fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return Err(format!("invalid UUID '{s}': expected 32 hex digits"));
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(hex.chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| format!("invalid UUID '{s}'"))?;
        *o = u8::from_str_radix(pair, 16).map_err(|_| format!("invalid UUID '{s}': not hex"))?;
    }
    Ok(out)
}

/// The label as stored: at most 31 bytes, NUL-padded to 32. Errors: too long, or holds a NUL.
pub fn encode_label(label: &str) -> Result<[u8; 32], String> {
    if label.len() > 31 {
        return Err(format!("label '{label}' is {} bytes long, at most 31", label.len()));
    }
    if label.contains('\0') {
        return Err("the label may not contain NUL".into());
    }
    let mut out = [0u8; 32];
    out[..label.len()].copy_from_slice(label.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_roundtrip_and_errors() {
        let u = *b"0123456789abcdef";
        assert_eq!(parse_uuid(&format_uuid(&u)).unwrap(), u);
        assert_eq!(format_uuid(&[0xab; 16]), "abababab-abab-abab-abab-abababababab");
        assert!(parse_uuid("1234").is_err());
        assert!(parse_uuid("zz345678-1234-1234-1234-123456789012").is_err());
    }

    #[test]
    fn sizes_and_labels() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert!(encode_label(&"x".repeat(31)).is_ok());
        assert!(encode_label(&"x".repeat(32)).is_err());
    }
}
