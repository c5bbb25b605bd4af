//! What the host fuzz targets (fuzz/, `fuzz/run`) found in this crate, as plain tests: each
//! runs without nightly or libFuzzer and asserts the behaviour that replaced the crash. The
//! inputs themselves are replayed by `fuzz/run` from fuzz/regressions/TARGET/.

use vexfs_image::sample::{self, SAMPLE_BLOCKS};
use vexfs_image::writer::Writer;
use vexfs_image::{Image, MemDevice};

/// The sample tree with the on-disk block count of the inode `pick` names set to `blocks`.
fn sample_with_blocks(pick: impl Fn(&sample::Tree) -> u32, blocks: u64) -> (Writer<MemDevice>, sample::Tree, u32) {
    let (mut img, t) = sample::build(MemDevice::new(SAMPLE_BLOCKS)).expect("sample");
    let ino = pick(&t);
    let mut inode = img.inode(ino).expect("inode");
    inode.blocks = blocks;
    img.write_inode(ino, &inode).expect("write inode");
    let img = Image::open(img.into_device()).expect("open");
    (Writer::new(img).expect("writer"), t, ino)
}

fn vecs(n: u32) -> Vec<Vec<f32>> {
    (0..n).map(|i| (0..8).map(|k| ((i * 8 + k) % 7) as f32 - 3.0).collect()).collect()
}

/// fuzz writer (crash-6e643a9e, 2026-12-01): a SET of 6 chunks (a vector-id block
/// allocated) on a file whose on-disk block count was u64::MAX overflowed `blocks += 1` in
/// the writer's block allocation: a panic with overflow checks, a wrap to 0 without. The
/// count now saturates, as it does when blocks are freed.
#[test]
fn a_set_on_a_file_with_the_largest_block_count_saturates() {
    let (mut w, _, ino) = sample_with_blocks(|t| t.sparse, u64::MAX);
    w.set_embeddings(ino, &vecs(6)).expect("set");
    assert_eq!(w.image().inode(ino).expect("inode").blocks, u64::MAX);
    let img = w.commit().expect("commit");
    assert_eq!(img.inode(ino).expect("inode").blocks, u64::MAX);
}

/// The same statement where a directory grows by a block (found by reading, next to the
/// crash): entries are added to `/many` until it takes a third block.
#[test]
fn a_directory_with_the_largest_block_count_grows_and_saturates() {
    let (mut w, t, ino) = sample_with_blocks(|t| t.many, u64::MAX);
    let size = w.image().inode(ino).expect("inode").size;
    let mut i = 0;
    while w.image().inode(ino).expect("inode").size == size {
        w.link(ino, &format!("another-entry-with-a-rather-long-name-{i:03}"), t.empty).expect("link");
        i += 1;
        assert!(i < 200, "the directory never grew");
    }
    assert_eq!(w.image().inode(ino).expect("inode").blocks, u64::MAX);
    assert!(w.image().lookup("/many/another-entry-with-a-rather-long-name-000").is_ok());
}
