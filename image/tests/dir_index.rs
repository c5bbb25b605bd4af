//! Indexed directories (`vexfs_core::dir_index`, `FEATURE_INCOMPAT_DIR_INDEX`) in the tools: a
//! filesystem made with the feature (`mkfs::format_with`), the offline writer converting a
//! full one-block directory and splitting its buckets over thousands of names (1 to 255
//! bytes), unlinking some in a second session; the reader's path lookup, `read_dir` (each name
//! once, in key order: the order of the core's `for_each_from`, which the kernel's readdir
//! runs) and `dir_blocks` (the buckets, not the header); fsck clean, then each corruption
//! fsck must find (an entry in the wrong bucket, a bucket unmapped, a header count changed,
//! the index flag on a file, an indexed directory without the feature) as the exact problem,
//! repaired where the repair is natural. Without the feature, or in a linear directory of
//! several blocks, nothing is ever converted.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use vexfs_core::dir_index::{self, bucket_keys, bucket_of, name_key, DirRead, POS_EOF, POS_FIRST};
use vexfs_core::error::FormatError;
use vexfs_core::extent_tree::TreeStore;
use vexfs_core::file_extents::FileExtents;
use vexfs_core::format::dir::{self, seal_dir_block, DT_REG};
use vexfs_core::format::inode::{Inode, INODE_FLAG_INDEX};
use vexfs_core::format::layout::MkfsParams;
use vexfs_core::format::superblock::{Superblock, FEATURE_INCOMPAT_DIR_INDEX, ROOT_INO};
use vexfs_core::format::BLOCK_SIZE;
use vexfs_core::io::BlockDevice;
use vexfs_image::fsck::{self, Fix, Kind, Mode, Outcome};
use vexfs_image::mkfs::{self, FormatOpts};
use vexfs_image::sample;
use vexfs_image::writer::Writer;
use vexfs_image::{Error, Image, MemDevice};

const BS: u64 = BLOCK_SIZE as u64;
/// 32 MiB, 8,192 inodes.
const BLOCKS: u64 = 8192;

fn params() -> MkfsParams {
    MkfsParams { inode_count: Some(8192), ..sample::params(BLOCKS) }
}

fn writer(dir_index: bool) -> Writer<MemDevice> {
    let mut dev = MemDevice::new(BLOCKS);
    mkfs::format_with(&mut dev, &params(), false, FormatOpts { dir_index, ..Default::default() }).unwrap();
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    w.set_dir_seeds(Some(7));
    w
}

/// Name `i`: unique, 1 to 255 bytes (every 40th exactly 255).
fn name(i: u32) -> String {
    let len = if i % 40 == 0 { 255 } else { 1 + (i as usize * 7919) % 255 };
    let mut s = i.to_string();
    if s.len() < len {
        s.push('-');
    }
    while s.len() < len {
        s.push((b'a' + (s.len() % 26) as u8) as char);
    }
    s
}

fn check(dev: MemDevice) -> (Outcome, MemDevice) {
    fsck::run(dev, Mode::Check).unwrap()
}

fn assert_clean(dev: MemDevice) -> MemDevice {
    let (out, dev) = check(dev);
    assert!(out.report.problems.is_empty(), "{:#?}", out.report.problems);
    assert_eq!(out.exit_code(), 0);
    dev
}

fn kinds(out: &Outcome) -> Vec<Kind> {
    out.report.problems.iter().map(|p| p.kind).collect()
}

/// A read-only extent-tree store over an image (the maps a test reads), writing too when it
/// owns the image mutably (a test's punch).
struct Nodes<'a>(&'a mut Image<MemDevice>);

impl TreeStore for Nodes<'_> {
    type Error = FormatError;
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, FormatError> {
        Ok(f(&self.0.read_block(n).unwrap()[..]))
    }
    fn write<R>(&mut self, n: u64, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, FormatError> {
        let mut b = self.0.read_block(n).unwrap();
        let r = f(&mut b[..]);
        self.0.write_block(n, &b).unwrap();
        Ok(r)
    }
    fn alloc(&mut self, _goal: u64) -> Result<u64, FormatError> {
        Err(FormatError::Corrupt { what: "the test allocates no node", value: 0 })
    }
    fn free(&mut self, _n: u64) -> Result<(), FormatError> {
        Ok(())
    }
}

/// The core's reader over an image: what the kernel's readdir and lookup run.
struct CoreDir {
    img: Image<MemDevice>,
    fx: FileExtents,
}

impl DirRead for CoreDir {
    type Error = FormatError;
    fn map(&mut self, logical: u64) -> Result<Option<u64>, FormatError> {
        let fx = self.fx;
        Ok(fx.lookup(&mut Nodes(&mut self.img), logical)?.map(|m| m.0))
    }
    fn read<R>(&mut self, n: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R, FormatError> {
        Ok(f(&self.img.read_block(n).unwrap()[..]))
    }
    fn owner(&self) -> u64 {
        self.fx.owner
    }
}

/// Names in the order of the core's readdir (`for_each_from`), resuming every 50 entries.
fn core_readdir(img: &Image<MemDevice>, d: u32) -> Vec<Vec<u8>> {
    let inode = img.inode(d).unwrap();
    let mut s = CoreDir { img: Image::open(img.device().clone()).unwrap(), fx: img.file_extents(d, &inode) };
    let mut out = Vec::new();
    let mut pos = POS_FIRST;
    while pos != POS_EOF {
        let mut taken = 0;
        pos = dir_index::for_each_from(&mut s, pos, |_, n, _, _| {
            if taken == 50 {
                return false;
            }
            taken += 1;
            out.push(n.to_vec());
            true
        })
        .unwrap();
    }
    out
}

/// Checks directory `d` of `img` against `model` (name -> inode): path lookups, `read_dir`
/// (each name once, in key order, as the core's readdir), `dir_blocks` (buckets only), the
/// size and block count, the header's counts.
fn check_indexed(img: &Image<MemDevice>, path: &str, model: &BTreeMap<String, u32>) {
    let d = img.lookup(path).unwrap();
    let inode = img.inode(d).unwrap();
    assert_eq!(inode.flags, INODE_FLAG_INDEX);
    assert!(img.is_indexed(d, &inode).unwrap());
    let (hb, h) = img.dir_index_header(d, &inode).unwrap().unwrap();
    for (n, ino) in model {
        assert_eq!(img.lookup(&format!("{path}/{n}")).unwrap(), *ino, "{n}");
    }
    assert!(matches!(img.lookup(&format!("{path}/absent")), Err(Error::NotFound(_))));
    let listed = img.read_dir(d, &inode).unwrap();
    let names: Vec<String> = listed.iter().map(|e| String::from_utf8(e.name.clone()).unwrap()).collect();
    let got: BTreeMap<String, u32> =
        listed.iter().map(|e| (String::from_utf8(e.name.clone()).unwrap(), e.ino)).collect();
    assert_eq!(got.len(), listed.len(), "a name listed twice");
    assert_eq!(&got, model);
    let keys: Vec<u64> = names.iter().map(|n| name_key(&h.seed, n.as_bytes())).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "read_dir is not in key order");
    let core: Vec<Vec<u8>> = core_readdir(img, d);
    assert_eq!(core, listed.iter().map(|e| e.name.clone()).collect::<Vec<_>>(), "the core's readdir order");
    // dir_blocks: every bucket, not the header, each an ordinary directory block.
    let buckets = img.dir_blocks(d, &inode).unwrap();
    assert!(buckets.iter().all(|&(l, b)| l != 0 && b != hb && bucket_of(l).is_some()));
    assert_eq!(buckets.len() as u32, h.leaves.iter().sum::<u32>());
    let mut entries = 0;
    for &(l, b) in &buckets {
        let blk = img.read_block(b).unwrap();
        dir::check_dir_block(&blk[..], b, u64::from(d)).unwrap();
        let (depth, prefix) = bucket_of(l).unwrap();
        let (lo, hi) = bucket_keys(depth, prefix);
        for e in dir::dirents(&blk[..]).map(|e| e.unwrap()).filter(|e| e.ino != 0) {
            assert!((lo..hi).contains(&name_key(&h.seed, e.name)));
            entries += 1;
        }
    }
    assert_eq!(entries, model.len());
    // Size: (highest mapped logical block + 1) * 4096; blocks: header, buckets, tree nodes.
    let highest = buckets.iter().map(|b| b.0).max().unwrap();
    assert_eq!(inode.size, (highest + 1) * BS);
    let nodes = img.extent_nodes(d, &inode).unwrap().len() as u64;
    assert_eq!(inode.blocks, buckets.len() as u64 + 1 + nodes);
}

#[test]
fn thousands_of_names_convert_split_and_read_back() {
    let mut w = writer(true);
    assert_ne!(w.image().sb().feature_incompat & FEATURE_INCOMPAT_DIR_INDEX, 0);
    let d = w.mkdir(ROOT_INO, "big", 0o755).unwrap();
    let mut model = BTreeMap::new();
    let mut converted_at = None;
    for i in 0..3200 {
        let n = name(i);
        model.insert(n.clone(), w.create(d, &n, b"").unwrap());
        let inode = w.image().inode(d).unwrap();
        match converted_at {
            None if inode.flags & INODE_FLAG_INDEX != 0 => converted_at = Some(i),
            None => assert_eq!(inode.size, BS, "a linear directory of one block until it converts"),
            Some(_) => assert_eq!(inode.flags, INODE_FLAG_INDEX),
        }
    }
    let at = converted_at.expect("the directory was converted");
    assert!((10..100).contains(&at), "converted at entry {at}");
    // A subdirectory in the indexed directory, and names that exist are refused.
    let sub = w.mkdir(d, "sub", 0o700).unwrap();
    model.insert("sub".into(), sub);
    assert_eq!(w.image().inode(d).unwrap().links, 3);
    assert!(matches!(w.create(d, &name(5), b""), Err(Error::Invalid(m)) if m.contains("exists")));
    let inner = w.create(sub, "inner", b"x").unwrap();
    let img = w.commit().unwrap();
    assert_eq!(img.lookup("/big/sub/inner").unwrap(), inner);
    assert_eq!(img.lookup("/big/sub/../sub/inner").unwrap(), inner);
    let (_, h) = img.dir_index_header(d, &img.inode(d).unwrap()).unwrap().unwrap();
    let depths: Vec<u32> = h.depths().collect();
    assert!(depths[0] >= 5, "buckets split: {depths:?}");
    check_indexed(&img, "/big", &model);
    let dev = assert_clean(img.into_device());

    // A second session: more names, some unlinked (their inodes freed), one file linked twice.
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    let free_inodes = w.image().sb().free_inodes;
    for i in 3200..4000 {
        let n = name(i);
        model.insert(n.clone(), w.create(d, &n, b"").unwrap());
    }
    for i in (0..900).step_by(3) {
        w.unlink(d, &name(i)).unwrap();
        model.remove(&name(i));
    }
    assert!(matches!(w.unlink(d, &name(0)), Err(Error::NotFound(_))));
    assert!(matches!(w.unlink(d, "sub"), Err(Error::Invalid(m)) if m.contains("not empty")));
    let f = model[&name(1)];
    w.link(d, "second-link", f).unwrap();
    model.insert("second-link".into(), f);
    assert_eq!(w.image().sb().free_inodes, free_inodes - 800 + 300);
    let img = w.commit().unwrap();
    check_indexed(&img, "/big", &model);
    let dev = assert_clean(img.into_device());

    // Emptied: every name unlinked, then the directory itself.
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    w.unlink(sub, "inner").unwrap();
    let names: Vec<String> = model.keys().cloned().collect();
    for n in &names {
        w.unlink(d, n).unwrap();
    }
    let inode = w.image().inode(d).unwrap();
    assert!(w.image().read_dir(d, &inode).unwrap().is_empty());
    assert_eq!(inode.flags, INODE_FLAG_INDEX, "an emptied directory stays indexed (buckets never merge)");
    w.unlink(ROOT_INO, "big").unwrap();
    let img = w.commit().unwrap();
    assert_eq!(img.sb().free_inodes, img.sb().inode_count - 1);
    let root = img.inode(ROOT_INO).unwrap();
    assert!(img.read_dir(ROOT_INO, &root).unwrap().is_empty());
    let dev = assert_clean(img.into_device());
    // Every block but the metadata's and the root's one is free again (none leaked by splits
    // or unlinks).
    let img = Image::open(dev).unwrap();
    let fresh = {
        let mut dev = MemDevice::new(BLOCKS);
        mkfs::format_with(&mut dev, &params(), false, FormatOpts { dir_index: true, ..Default::default() }).unwrap();
        Image::open(dev).unwrap().sb().free_blocks
    };
    assert_eq!(img.sb().free_blocks, fresh - 1);
}

/// A filesystem with the feature whose `/big` holds names 0..1500 (indexed, split), built once.
fn base() -> &'static (MemDevice, BTreeMap<String, u32>) {
    static BASE: OnceLock<(MemDevice, BTreeMap<String, u32>)> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut w = writer(true);
        let d = w.mkdir(ROOT_INO, "big", 0o755).unwrap();
        let mut model = BTreeMap::new();
        for i in 0..1500 {
            let n = name(i);
            model.insert(n.clone(), w.create(d, &n, b"").unwrap());
        }
        (w.commit().unwrap().into_device(), model)
    })
}

/// The base image opened for a corruption, with `/big`'s inode number and inode.
fn corrupt_base() -> (Image<MemDevice>, u32, Inode) {
    let img = Image::open(base().0.clone()).unwrap();
    let d = img.lookup("/big").unwrap();
    let inode = img.inode(d).unwrap();
    (img, d, inode)
}

/// Runs `-y` on `dev`: what it corrected, and the device after.
fn repair(dev: MemDevice) -> (Outcome, MemDevice) {
    fsck::run(dev, Mode::Repair).unwrap()
}

#[test]
fn base_is_indexed_and_clean() {
    let (img, _, inode) = corrupt_base();
    assert_eq!(inode.flags, INODE_FLAG_INDEX);
    check_indexed(&img, "/big", &base().1);
    assert_clean(img.into_device());
}

#[test]
fn fsck_moves_an_entry_out_of_the_wrong_bucket() {
    let (mut img, d, inode) = corrupt_base();
    let buckets = img.dir_blocks(d, &inode).unwrap();
    let (_, from) = buckets[0];
    let mut a = img.read_block(from).unwrap();
    let e = dir::dirents(&a[..]).map(|e| e.unwrap()).find(|e| e.ino != 0).unwrap();
    let (moved, ino, ft) = (e.name.to_vec(), e.ino, e.file_type);
    let to = buckets[1..]
        .iter()
        .map(|b| b.1)
        .find(|&b| dir::fits(&img.read_block(b).unwrap()[..], moved.len()).unwrap())
        .unwrap();
    dir::remove(&mut a[..], &moved).unwrap().unwrap();
    seal_dir_block(&mut a[..], from, u64::from(d));
    img.write_block(from, &a).unwrap();
    let mut b = img.read_block(to).unwrap();
    assert!(dir::insert(&mut b[..], &moved, ino, ft).unwrap());
    seal_dir_block(&mut b[..], to, u64::from(d));
    img.write_block(to, &b).unwrap();
    let path = format!("/big/{}", String::from_utf8_lossy(&moved));
    assert!(matches!(img.lookup(&path), Err(Error::NotFound(_))), "the index does not find it there");
    assert!(matches!(img.read_dir(d, &inode), Err(Error::Format { .. })));

    let (out, dev) = check(img.into_device());
    assert_eq!(kinds(&out), [Kind::DirIndexEntry], "{:#?}", out.report.problems);
    let p = &out.report.problems[0];
    assert!(p.message.contains(&*String::from_utf8_lossy(&moved)), "{}", p.message);
    assert_eq!(p.fix, Some(Fix::MoveEntry { dir: d, block: to, name: moved.clone(), ino, file_type: ft }));
    assert!(!p.fix.as_ref().unwrap().preen_safe());
    assert_eq!(out.exit_code(), 4);
    let (out, dev) = repair(dev);
    assert_eq!(out.fixed, [true]);
    assert!(out.remaining.is_empty(), "{:#?}", out.remaining);
    assert_eq!(out.exit_code(), 1);
    let dev = assert_clean(dev);
    let img = Image::open(dev).unwrap();
    assert_eq!(img.lookup(&path).unwrap(), ino);
    check_indexed(&img, "/big", &base().1);
}

/// The moved entry's own bucket is full: the repair splits it, allocating from fsck's copy of
/// the block bitmap; the second check finds the bitmap, counts and sizes right.
#[test]
fn fsck_moves_an_entry_into_a_full_bucket_by_splitting_it() {
    let (mut img, d, inode) = corrupt_base();
    let (hb, h) = img.dir_index_header(d, &inode).unwrap().unwrap();
    let buckets = img.dir_blocks(d, &inode).unwrap();
    let (l, home) = buckets[0];
    let mut b = img.read_block(home).unwrap();
    let e = dir::dirents(&b[..]).map(|e| e.unwrap()).find(|e| e.ino != 0).unwrap();
    let (moved, ino, ft) = (e.name.to_vec(), e.ino, e.file_type);
    let away = buckets[1..]
        .iter()
        .map(|b| b.1)
        .find(|&b| dir::fits(&img.read_block(b).unwrap()[..], moved.len()).unwrap())
        .unwrap();
    dir::remove(&mut b[..], &moved).unwrap().unwrap();
    // Fill the home bucket with short names of its keys (links to one file) until no name fits.
    let target = img.lookup(&format!("/big/{}", name(7))).unwrap();
    let (depth, prefix) = bucket_of(l).unwrap();
    let (lo, hi) = bucket_keys(depth, prefix);
    let mut added = BTreeMap::new();
    let mut j = 0u32;
    while dir::fits(&b[..], 1).unwrap() {
        let n = format!("f{j}");
        j += 1;
        if (lo..hi).contains(&name_key(&h.seed, n.as_bytes())) {
            assert!(dir::insert(&mut b[..], n.as_bytes(), target, DT_REG).unwrap());
            added.insert(n, target);
        }
    }
    seal_dir_block(&mut b[..], home, u64::from(d));
    img.write_block(home, &b).unwrap();
    let mut a = img.read_block(away).unwrap();
    assert!(dir::insert(&mut a[..], &moved, ino, ft).unwrap());
    seal_dir_block(&mut a[..], away, u64::from(d));
    img.write_block(away, &a).unwrap();
    let mut t = img.inode(target).unwrap();
    t.links += added.len() as u16;
    img.write_inode(target, &t).unwrap();

    let (out, dev) = check(img.into_device());
    assert_eq!(kinds(&out), [Kind::DirIndexEntry], "{:#?}", out.report.problems);
    let (out, dev) = repair(dev);
    assert!(out.remaining.is_empty(), "{:#?}", out.remaining);
    assert_eq!(out.exit_code(), 1);
    let img = Image::open(assert_clean(dev)).unwrap();
    let after = img.dir_index_header(d, &img.inode(d).unwrap()).unwrap().unwrap();
    assert_eq!(after.0, hb);
    assert_eq!(after.1.leaves.iter().sum::<u32>(), h.leaves.iter().sum::<u32>() + 1, "one split");
    let mut model = base().1.clone();
    model.extend(added);
    check_indexed(&img, "/big", &model);
}

#[test]
fn fsck_finds_a_bucket_unmapped_and_does_not_guess() {
    let (mut img, d, mut inode) = corrupt_base();
    // The first block of an extent that is not the highest: its punch cuts, never splits.
    let extents = img.extents(d, &inode).unwrap();
    let highest = extents.iter().map(|e| e.logical_end()).max().unwrap() - 1;
    let e = extents.iter().find(|e| e.logical != 0 && u64::from(e.logical) < highest).unwrap();
    let l = u64::from(e.logical);
    let mut fx = img.file_extents(d, &inode);
    while !fx.punch(&mut Nodes(&mut img), l, l + 1, 4, |_, _, _| Ok(())).unwrap() {}
    inode.extents = fx.inline;
    inode.nr_extents = fx.nr_extents;
    inode.extent_block = fx.root;
    inode.blocks -= 1;
    img.write_inode(d, &inode).unwrap();
    assert!(matches!(img.read_dir(d, &inode), Err(Error::Format { .. })));
    assert!(matches!(img.dir_blocks(d, &inode), Err(Error::Format { .. })));

    let (out, dev) = check(img.into_device());
    assert_eq!(kinds(&out), [Kind::DirIndexBuckets, Kind::DirIndexHeader], "{:#?}", out.report.problems);
    assert!(out.report.problems[0].message.contains("have no bucket"), "{}", out.report.problems[0].message);
    assert!(out.report.problems.iter().all(|p| p.fix.is_none()));
    assert_eq!(out.exit_code(), 4);
    // Nothing is freed: the lost bucket's inodes are not called unreachable.
    let (out, _) = repair(dev);
    assert_eq!(kinds(&out), [Kind::DirIndexBuckets, Kind::DirIndexHeader]);
    assert_eq!(out.exit_code(), 4);
}

#[test]
fn fsck_rewrites_a_header_whose_counts_changed() {
    for decodes in [false, true] {
        let (mut img, d, inode) = corrupt_base();
        let (hb, mut h) = img.dir_index_header(d, &inode).unwrap().unwrap();
        let good = h;
        let deepest = h.depths().last().unwrap() as usize;
        if decodes {
            // Two buckets fewer at one depth, one more above it: the header covers the keys
            // once, but counts other buckets than those mapped.
            let depth = h.depths().find(|&x| h.leaves[x as usize] >= 2 && x > 0).unwrap() as usize;
            h.leaves[depth] -= 2;
            h.leaves[depth - 1] += 1;
        } else {
            h.leaves[deepest] += 1;
        }
        let mut b = img.read_block(hb).unwrap();
        h.encode(&mut b[..], hb, u64::from(d));
        img.write_block(hb, &b).unwrap();
        assert_eq!(img.dir_index_header(d, &inode).is_ok(), decodes);
        assert!(img.read_dir(d, &inode).is_err());

        let (out, dev) = check(img.into_device());
        assert_eq!(kinds(&out), [Kind::DirIndexHeader], "{:#?}", out.report.problems);
        let want = if decodes { "bucket(s) at depth" } else { "do not cover the keys" };
        assert!(out.report.problems[0].message.contains(want), "{}", out.report.problems[0].message);
        let fix = Fix::DirIndexHeader { dir: d, block: hb, seed: good.seed, leaves: good.leaves.to_vec() };
        assert_eq!(out.report.problems[0].fix, Some(fix));
        let (out, dev) = fsck::run(dev, Mode::Preen).unwrap();
        assert_eq!(out.exit_code(), 1, "{:#?}", out.remaining);
        let img = Image::open(assert_clean(dev)).unwrap();
        assert_eq!(img.dir_index_header(d, &inode).unwrap().unwrap().1, good);
        check_indexed(&img, "/big", &base().1);
    }
}

#[test]
fn the_index_flag_on_a_file_is_corruption() {
    let (mut img, _, _) = corrupt_base();
    let f = img.lookup(&format!("/big/{}", name(7))).unwrap();
    let mut inode = img.inode(f).unwrap();
    inode.flags = INODE_FLAG_INDEX;
    img.write_inode(f, &inode).unwrap();
    assert!(matches!(img.inode(f), Err(Error::Format { .. })));
    assert!(matches!(img.is_indexed(f, &inode), Err(Error::Format { .. })));
    let (out, dev) = check(img.into_device());
    assert_eq!(kinds(&out), [Kind::Inode], "{:#?}", out.report.problems);
    assert!(out.report.problems[0].message.contains("inode flags"), "{}", out.report.problems[0].message);
    let (out, _) = repair(dev);
    assert_eq!(out.exit_code(), 4);
}

#[test]
fn an_indexed_directory_without_the_feature_is_corruption() {
    let (mut img, d, inode) = corrupt_base();
    for n in [0, img.sb().backup_block] {
        let mut b = img.read_block(n).unwrap();
        let mut sb = Superblock::decode(&b[..]).unwrap();
        sb.feature_incompat &= !FEATURE_INCOMPAT_DIR_INDEX;
        sb.encode(&mut b[..]);
        img.write_block(n, &b).unwrap();
    }
    let img = Image::open(img.into_device()).unwrap();
    assert!(matches!(img.read_dir(d, &inode), Err(Error::Format { .. })));
    assert!(matches!(img.lookup(&format!("/big/{}", name(3))), Err(Error::Format { .. })));
    let (out, dev) = check(img.into_device());
    assert_eq!(kinds(&out), [Kind::DirIndexFeature], "{:#?}", out.report.problems);
    assert!(out.report.problems[0].message.contains("dir_index feature"));
    let (out, _) = repair(dev);
    assert_eq!(out.exit_code(), 4);
}

#[test]
fn a_wrong_size_is_repaired() {
    let (mut img, d, mut inode) = corrupt_base();
    let want = inode.size;
    inode.size += BS;
    img.write_inode(d, &inode).unwrap();
    let (out, dev) = check(img.into_device());
    assert_eq!(kinds(&out), [Kind::DirLayout], "{:#?}", out.report.problems);
    assert_eq!(out.report.problems[0].fix, Some(Fix::DirSize { ino: d, size: want }));
    let (out, dev) = fsck::run(dev, Mode::Preen).unwrap();
    assert_eq!(out.exit_code(), 1);
    assert_clean(dev);
}

/// Without the feature a directory never converts: it grows block by block, fsck clean.
#[test]
fn without_the_feature_directories_stay_linear() {
    let mut w = writer(false);
    assert_eq!(w.image().sb().feature_incompat & FEATURE_INCOMPAT_DIR_INDEX, 0);
    let d = w.mkdir(ROOT_INO, "lin", 0o755).unwrap();
    let mut model = BTreeMap::new();
    for i in 0..700 {
        let n = name(i);
        model.insert(n.clone(), w.create(d, &n, b"").unwrap());
    }
    let img = w.commit().unwrap();
    let inode = img.inode(d).unwrap();
    assert_eq!(inode.flags, 0);
    assert!(!img.is_indexed(d, &inode).unwrap());
    assert_eq!(img.dir_index_header(d, &inode).unwrap(), None);
    let blocks = img.dir_blocks(d, &inode).unwrap();
    assert!(blocks.len() > 10, "{} blocks", blocks.len());
    assert_eq!(blocks.iter().map(|b| b.0).collect::<Vec<_>>(), (0..blocks.len() as u64).collect::<Vec<_>>());
    let listed = img.read_dir(d, &inode).unwrap();
    let got: BTreeMap<String, u32> =
        listed.iter().map(|e| (String::from_utf8(e.name.clone()).unwrap(), e.ino)).collect();
    assert_eq!((got.len(), &got), (listed.len(), &model));
    for (n, ino) in model.iter().step_by(13) {
        assert_eq!(img.lookup(&format!("/lin/{n}")).unwrap(), *ino);
    }
    assert_clean(img.into_device());
}

/// A linear directory of several blocks (made before the feature was set) stays linear when
/// the filesystem gains it; a directory of one block converts when it fills.
#[test]
fn a_linear_directory_of_several_blocks_stays_linear_with_the_feature() {
    let mut w = writer(false);
    let old = w.mkdir(ROOT_INO, "old", 0o755).unwrap();
    let small = w.mkdir(ROOT_INO, "small", 0o755).unwrap();
    for i in 0..100 {
        w.create(old, &name(i), b"").unwrap();
    }
    for i in 0..5 {
        w.create(small, &name(i), b"").unwrap();
    }
    let mut dev = w.commit().unwrap().into_device();
    let backup = Image::open(dev.clone()).unwrap().sb().backup_block;
    for n in [0, backup] {
        let mut b = [0u8; BLOCK_SIZE];
        dev.read_block(n, &mut b).unwrap();
        let mut sb = Superblock::decode(&b).unwrap();
        sb.feature_incompat |= FEATURE_INCOMPAT_DIR_INDEX;
        sb.encode(&mut b);
        dev.write_block(n, &b).unwrap();
    }
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    let before = w.image().inode(old).unwrap().size;
    assert!(before > BS);
    for i in 100..400 {
        w.create(old, &name(i), b"").unwrap();
        w.create(small, &name(i), b"").unwrap();
    }
    let img = w.commit().unwrap();
    let o = img.inode(old).unwrap();
    assert_eq!(o.flags, 0, "stays linear");
    assert!(o.size > before);
    assert_eq!(img.read_dir(old, &o).unwrap().len(), 400);
    let s = img.inode(small).unwrap();
    assert_eq!(s.flags, INODE_FLAG_INDEX, "a one-block directory converts");
    assert_eq!(img.read_dir(small, &s).unwrap().len(), 305);
    assert_clean(img.into_device());
}

/// Unlink frees what a file owns: data blocks, extent tree, xattr block, embeddings (as
/// tombstones), its inode; in a linear directory too.
#[test]
fn unlink_frees_a_file_and_its_blocks() {
    let mut w = writer(false);
    let free0 = (w.image().sb().free_blocks, w.image().sb().free_inodes);
    let d = w.mkdir(ROOT_INO, "d", 0o755).unwrap();
    let opts = vexfs_image::writer::FileOpts { max_extent_blocks: 1, ..Default::default() };
    let f = w.create_with(d, "frag", &sample::pattern(20 * BLOCK_SIZE, 3), opts).unwrap();
    assert_ne!(w.image().inode(f).unwrap().extent_block, 0);
    w.set_xattr(f, vexfs_core::format::xattr::XATTR_USER, "k", Some(b"v")).unwrap();
    w.set_embeddings(f, &[vec![1.0f32; 8], vec![0.5; 8]]).unwrap();
    let g = w.create(d, "g", b"x").unwrap();
    w.link(ROOT_INO, "g2", g).unwrap();
    w.unlink(d, "frag").unwrap();
    assert!(matches!(w.unlink(ROOT_INO, "d"), Err(Error::Invalid(m)) if m.contains("not empty")));
    w.unlink(d, "g").unwrap();
    assert_eq!(w.image().inode(g).unwrap().links, 1);
    w.unlink(ROOT_INO, "g2").unwrap();
    w.unlink(ROOT_INO, "d").unwrap();
    assert!(matches!(w.unlink(ROOT_INO, "d"), Err(Error::NotFound(_))));
    assert_eq!(w.vector_header().unwrap().live, 0);
    w.purge_vectors().unwrap();
    let img = w.commit().unwrap();
    // The root keeps the block its first entry took.
    assert_eq!((img.sb().free_blocks, img.sb().free_inodes), (free0.0 - 1, free0.1));
    assert_eq!(img.inode(ROOT_INO).unwrap().links, 2);
    assert_clean(img.into_device());
}
