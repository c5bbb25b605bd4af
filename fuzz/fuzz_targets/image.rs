//! The tools' side of an image on structure-aware mutants: a populated base image (testkit's
//! `mutate::build_base`, made once) mutated by `testkit::mutate` with the fuzzer's input as
//! the random stream (so libFuzzer's coverage steers which structure, field and value), the
//! checksums recomputed; then `fsck.vexfs`'s check (journal replayed into memory) and repair,
//! the reader (every directory and file from the root), the searcher (`vexctl search-image`)
//! at several ef, and the offline writer (a create, a SET, a REMOVE, a commit). Errors are
//! fine; a panic, an overflow (debug assertions are on) or a hang is a finding.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vexfs_core::format::superblock::ROOT_INO;
use vexfs_image::device::MemDevice;
use vexfs_image::fsck::{self, Mode};
use vexfs_image::vectors::{MapDevice, Searcher};
use vexfs_image::writer::Writer;
use vexfs_image::Image;
use vexfs_testkit::mutate::{build_base, catalog, mutate, vector, Catalog, Rng};

struct Base {
    bytes: Vec<u8>,
    catalog: Catalog,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let bytes = build_base(512).expect("the base image");
        let img = Image::open(MemDevice { bytes: bytes.clone() }).expect("the base opens");
        let catalog = catalog(&img).expect("the base's catalog");
        Base { bytes, catalog }
    })
}

fuzz_target!(|data: &[u8]| {
    let base = base();
    let mut rng = Rng::from_bytes(data);
    let n = 1 + rng.below(3) as u32;
    let mut bytes = base.bytes.clone();
    let _ = mutate(&mut bytes, &base.catalog, &mut rng, n);
    let dim = base.catalog.sb().vec_dim;

    // fsck -n, then -y on a copy.
    let _ = fsck::run(MemDevice { bytes: bytes.clone() }, Mode::Check);
    if rng.below(4) == 0 {
        let _ = fsck::run(MemDevice { bytes: bytes.clone() }, Mode::Repair);
    }
    // The reader: the tree from the root (no replay: what vexctl ls/cat see).
    if let Ok(img) = Image::open(MemDevice { bytes: bytes.clone() }) {
        let mut stack = vec![(ROOT_INO, 0)];
        let mut seen = 0;
        while let Some((ino, depth)) = stack.pop() {
            seen += 1;
            if seen > 512 || depth > 16 {
                break;
            }
            let Ok(inode) = img.inode(ino) else { continue };
            if inode.is_dir() {
                if let Ok(entries) = img.read_dir(ino, &inode) {
                    stack.extend(entries.iter().map(|e| (e.ino, depth + 1)));
                }
            } else if inode.size <= 1 << 20 {
                let _ = img.read_file(ino, &inode);
                let _ = img.vec_slots(ino, &inode);
            }
        }
    }
    // The searcher.
    if let Ok(dev) = MapDevice::from_bytes(&bytes) {
        if let Ok(img) = Image::open(dev) {
            if let Ok(mut s) = Searcher::new(img, 512) {
                let q = vector(dim, 5_000_000 + rng.below(8));
                for ef in [5, 64, 512] {
                    let _ = s.search(&q, 5, ef);
                }
                let _ = s.search_filtered(&q, 3, 16, |ino| ino % 2 == 0);
            }
        }
    }
    // The offline writer (replays the journal, then changes the tree and the index).
    if let Ok(img) = Image::open(MemDevice { bytes }) {
        if let Ok(mut w) = Writer::new(img) {
            let f = w.create(ROOT_INO, "fz", b"fuzz");
            let target = match rng.below(3) {
                0 => f.unwrap_or(2),
                _ => 15 + rng.below(24) as u32,
            };
            let vs: Vec<Vec<f32>> = (0..1 + rng.below(6)).map(|c| vector(dim, 900 + c)).collect();
            let _ = w.set_embeddings(target, &vs);
            let _ = w.remove_embeddings(15 + rng.below(24) as u32);
            let _ = w.mkdir(ROOT_INO, "fz-dir", 0o755);
            let _ = w.commit();
        }
    }
});
