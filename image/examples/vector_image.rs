//! Builds a vexfs image holding one file per vector of an .fvecs file, offline (no kernel):
//!
//!     cargo run --release -p vexfs-image --example vector_image -- BASE.fvecs OUT.img [DIR]
//!
//! Files are `DIR/0`, `DIR/1`, ... (DIR defaults to `vectors`), each holding its row number as
//! text and the row as its one embedding. The image is sized for the vectors (metric l2, m 16,
//! ef_construction 200, capacity the row count plus a quarter).

use std::time::Instant;

use vexfs_image::vecfile::read_fvecs;
use vexfs_image::vexfs_core::format::layout::MkfsParams;
use vexfs_image::vexfs_core::format::superblock::{vector_region_blocks, Metric, ROOT_INO};
use vexfs_image::writer::Writer;
use vexfs_image::{mkfs, FileDevice, Image};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(base), Some(out)) = (args.get(1), args.get(2)) else {
        return Err("usage: vector_image BASE.fvecs OUT.img [DIR]".into());
    };
    let dir = args.get(3).map_or("vectors", String::as_str);
    let rows = read_fvecs(base)?;
    let dim = rows.first().map_or(0, Vec::len) as u32;
    let capacity = (rows.len() as u64 * 5 / 4).max(64);
    let v: u64 = vector_region_blocks(capacity, dim, 16, false).iter().sum();
    let blocks = (v + 2 * rows.len() as u64 + 4096) * 5 / 4;
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(out)?;
    f.set_len(blocks * 4096)?;
    let mut dev = FileDevice::from_file(f)?;
    let p = MkfsParams {
        block_count: blocks,
        inode_count: Some((rows.len() as u32 + 64).next_multiple_of(16)),
        journal_blocks: None,
        vec_capacity: Some(capacity),
        dim,
        metric: Metric::L2,
        m: 16,
        ef_construction: 200,
        uuid: *b"vexfs-vectorimg!",
        label: [0; 32],
        now: 1_700_000_000,
        seed: 1,
    };
    mkfs::format(&mut dev, &p, true)?;
    let mut w = Writer::new(Image::open(dev)?)?;
    let d = w.mkdir(ROOT_INO, dir, 0o755)?;
    let t = Instant::now();
    for (i, r) in rows.iter().enumerate() {
        let ino = w.create(d, &i.to_string(), format!("{i}\n").as_bytes())?;
        w.set_embeddings(ino, &[r])?;
        if i % 1000 == 999 {
            eprintln!("{} vectors, {:.1} s", i + 1, t.elapsed().as_secs_f64());
        }
    }
    w.commit()?;
    eprintln!("{out}: {} vectors of dimension {dim} in {:.1} s", rows.len(), t.elapsed().as_secs_f64());
    Ok(())
}
