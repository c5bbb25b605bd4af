//! What the image fuzz targets share (fuzz_targets/fsck.rs, reader.rs, search.rs, writer.rs):
//! the small populated base image (`testkit::mutate::build_small_base`, made once per process)
//! and its catalog; the mutant of an input (the input is the random stream of
//! `testkit::mutate`, so libFuzzer's coverage steers which structure, field and value; every
//! checksum is recomputed); and one function per target, each taking the mutant once. Errors
//! are fine; a panic, an overflow (fuzz/run builds with debug assertions) or a hang is a
//! finding.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;

use vexfs_core::format::inode::S_IFIFO;
use vexfs_core::format::superblock::ROOT_INO;
use vexfs_core::format::xattr::{XATTR_ACL_ACCESS, XATTR_TRUSTED, XATTR_USER};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::io::{Block, BlockDevice};
use vexfs_image::device::MemDevice;
use vexfs_image::fsck::{self, Mode};
use vexfs_image::vectors::{file_paths, MapDevice, Searcher};
use vexfs_image::writer::Writer;
use vexfs_image::Image;
use vexfs_testkit::mutate::{build_small_base, catalog, mutate, vector, Catalog, Rng};

/// The base image and what its mutations may hit.
pub struct Base {
    /// The image's bytes.
    pub bytes: Vec<u8>,
    /// Its catalog.
    pub catalog: Catalog,
}

/// The base, made on first use.
pub fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let bytes = build_small_base().expect("the base image");
        let img = Image::open(MemDevice { bytes: bytes.clone() }).expect("the base opens");
        let catalog = catalog(&img).expect("the base's catalog");
        Base { bytes, catalog }
    })
}

/// The mutant of `data`: 1 to 3 mutations of the base drawn from it, and the generator, to
/// draw what the target does next.
pub fn mutant(data: &[u8]) -> (Vec<u8>, Rng) {
    let base = base();
    let mut rng = Rng::from_bytes(data);
    let n = 1 + rng.below(3) as u32;
    let mut bytes = base.bytes.clone();
    let _ = mutate(&mut bytes, &base.catalog, &mut rng, n);
    (bytes, rng)
}

/// A read-only device over borrowed bytes (no copy). A write panics: what reads through it
/// (`fsck -n`, the reader) must never write.
pub struct ReadOnly<'a>(pub &'a [u8]);

impl BlockDevice for ReadOnly<'_> {
    type Error = io::Error;

    fn block_count(&self) -> u64 {
        (self.0.len() / BLOCK_SIZE) as u64
    }

    fn read_block(&self, n: u64, buf: &mut Block) -> io::Result<()> {
        let r = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(BLOCK_SIZE))
            .and_then(|s| self.0.get(s..s + BLOCK_SIZE))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, format!("block {n} past the end")))?;
        buf.copy_from_slice(r);
        Ok(())
    }

    fn write_block(&mut self, n: u64, _: &Block) -> io::Result<()> {
        panic!("a read-only use wrote block {n}");
    }

    fn flush(&mut self) -> io::Result<()> {
        panic!("a read-only use flushed the device");
    }
}

/// `fsck.vexfs` in one mode per input: `-n` for half of them (the journal replayed into
/// memory; it must not write to the device), `-y` for 3 in 8 and `-p` for 1 in 8 (the replay
/// on the device, the check, the repairs and the second check).
pub fn fsck(data: &[u8]) {
    let (bytes, mut rng) = mutant(data);
    let _ = match rng.below(8) {
        0..=3 => fsck::run(ReadOnly(&bytes), Mode::Check).map(|_| ()),
        4..=6 => fsck::run(MemDevice { bytes }, Mode::Repair).map(|_| ()),
        _ => fsck::run(MemDevice { bytes }, Mode::Preen).map(|_| ()),
    };
}

/// The reader without a replay (what `vexctl ls`/`cat` see): every directory and file from
/// the root (inode, extents, data, vector slots), the paths of every file, and a few lookups.
pub fn reader(data: &[u8]) {
    let (bytes, _) = mutant(data);
    let Ok(img) = Image::open(ReadOnly(&bytes)) else { return };
    let mut stack = vec![(ROOT_INO, 0)];
    let mut seen = 0;
    while let Some((ino, depth)) = stack.pop() {
        seen += 1;
        if seen > 256 || depth > 16 {
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
    let _ = file_paths(&img);
    for p in ["/docs/sub/deep/leaf", "docs/sub/deep/../../frag.bin", "/vec/v5", "/long/..", "/hello.txt/x"] {
        let _ = img.lookup(p);
    }
}

/// The file the searcher maps: on tmpfs when there is one, unlinked, rewritten for each input.
/// `vexctl search-image` maps its image file; a file mapping only faults in the pages the
/// search reads, where `MapDevice::from_bytes` copies the whole image into fresh anonymous
/// pages (most of the target's time went to those page faults).
fn image_file() -> &'static File {
    static FILE: OnceLock<File> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = Path::new("/dev/shm");
        let dir = if dir.is_dir() { dir.to_path_buf() } else { std::env::temp_dir() };
        let path = dir.join(format!("vexfs-fuzz-search-{}.img", std::process::id()));
        let f = OpenOptions::new().read(true).write(true).create_new(true).open(&path).expect("the image file");
        let _ = std::fs::remove_file(&path);
        f
    })
}

/// The searcher of `vexctl search-image` (no replay): open, searches at several ef and k,
/// a filtered search, the paths of the hits.
pub fn search(data: &[u8]) {
    let (bytes, mut rng) = mutant(data);
    let dim = base().catalog.sb().vec_dim;
    let file = image_file();
    file.write_all_at(&bytes, 0).expect("writing the image file");
    let Ok(dev) = MapDevice::from_file(file) else { return };
    let Ok(img) = Image::open(dev) else { return };
    let Ok(mut s) = Searcher::new(img, 512) else { return };
    let q = vector(dim, 5_000_000 + rng.below(8));
    for (k, ef) in [(5, 5), (5, 64), (16, 512), (1, 0)] {
        let _ = s.search(&q, k, ef);
    }
    let _ = s.search_filtered(&q, 3, 16, |ino| ino % 2 == 0);
    if rng.below(4) == 0 {
        let _ = s.paths();
    }
}

/// The offline writer (`vexctl` on an image): replays the journal, then a create, a SET on a
/// new or existing inode, a REMOVE, a mkdir, a FIFO made, an xattr set on and one removed from
/// existing inodes (their xattr blocks read, changed and freed), and the commit.
pub fn writer(data: &[u8]) {
    let (bytes, mut rng) = mutant(data);
    let sb = base().catalog.sb();
    let (dim, inodes) = (sb.vec_dim, u64::from(sb.inode_count) + 2);
    let Ok(img) = Image::open(MemDevice { bytes }) else { return };
    let Ok(mut w) = Writer::new(img) else { return };
    let f = w.create(ROOT_INO, "fz", b"fuzz");
    let target = match rng.below(3) {
        0 => f.unwrap_or(2),
        _ => 1 + rng.below(inodes) as u32,
    };
    let vs: Vec<Vec<f32>> = (0..1 + rng.below(6)).map(|c| vector(dim, 900 + c)).collect();
    let _ = w.set_embeddings(target, &vs);
    let _ = w.remove_embeddings(1 + rng.below(inodes) as u32);
    let _ = w.mkdir(ROOT_INO, "fz-dir", 0o755);
    let _ = w.mknod(ROOT_INO, "fz-fifo", S_IFIFO | 0o644, 0);
    let index = [XATTR_USER, XATTR_TRUSTED, XATTR_ACL_ACCESS][rng.below(3) as usize];
    let name = if index == XATTR_ACL_ACCESS { "" } else { "fz" };
    let _ = w.set_xattr(1 + rng.below(inodes) as u32, index, name, Some(&[7u8; 28]));
    let _ = w.set_xattr(1 + rng.below(inodes) as u32, XATTR_USER, "comment", None);
    let _ = w.commit();
}
