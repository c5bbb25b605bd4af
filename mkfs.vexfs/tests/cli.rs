//! mkfs.vexfs end to end: the image it writes, what it refuses, its flags and exit codes.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use vexfs_image::fsck::{self, Mode};
use vexfs_image::show::format_uuid;
use vexfs_image::vexfs_core::embed::min_journal_blocks;
use vexfs_image::vexfs_core::format::superblock::{Metric, Region};
use vexfs_image::{FileDevice, Image};

fn mkfs(args: &[&str], path: &Path, size: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mkfs-vexfs"));
    cmd.args(args).arg(path);
    if let Some(s) = size {
        cmd.arg(s);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
}

fn failed(o: &Output) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
}

const BASIC: &[&str] = &["--dim", "8", "--metric", "l2"];

#[test]
fn creates_a_sparse_image_that_fsck_finds_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    let uuid = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0";
    let o = mkfs(
        &[
            "-L",
            "vectors",
            "-U",
            uuid,
            "-N",
            "1000",
            "--journal-blocks",
            "9000",
            "--vectors",
            "5000",
            "--dim",
            "384",
            "--metric",
            "ip",
            "--hnsw-m",
            "8",
            "--ef-construction",
            "64",
        ],
        &path,
        Some("1G"),
    );
    ok(&o);
    assert!(text(&o).contains("vector data"), "{}", text(&o));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 1 << 30);
    assert!(meta.blocks() * 512 < 4 << 20, "the image should stay sparse: {} bytes allocated", meta.blocks() * 512);
    let img = Image::open(FileDevice::open(&path, false).unwrap()).unwrap();
    let sb = img.sb();
    assert_eq!(sb.block_count, 262_144);
    assert_eq!(sb.label_str(), "vectors");
    assert_eq!(format_uuid(&sb.uuid), uuid);
    assert_eq!(sb.inode_count, 1008);
    assert_eq!(sb.region(Region::Journal).blocks, 9000);
    assert_eq!((sb.vec_capacity, sb.vec_dim, sb.metric()), (5000, 384, Some(Metric::InnerProduct)));
    assert_eq!((sb.hnsw_m, sb.hnsw_ef_construction), (8, 64));
    let (out, _) = fsck::run(img.into_device(), Mode::Check).unwrap();
    assert!(out.report.problems.is_empty(), "{:?}", out.report.problems);
}

#[test]
fn default_uuid_is_random_version_4() {
    let dir = tempfile::tempdir().unwrap();
    let uuids: Vec<[u8; 16]> = (0..2)
        .map(|i| {
            let path = dir.path().join(format!("{i}.img"));
            ok(&mkfs(&["-q", "--dim", "4", "--metric", "cosine"], &path, Some("8M")));
            Image::open(FileDevice::open(&path, false).unwrap()).unwrap().sb().uuid
        })
        .collect();
    assert_ne!(uuids[0], uuids[1]);
    for u in uuids {
        assert_eq!(u[6] >> 4, 4);
        assert_eq!(u[8] >> 6, 0b10);
    }
}

#[test]
fn dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.img");
    let o = mkfs(&["-n", "--dim", "8", "--metric", "cosine"], &path, Some("64M"));
    ok(&o);
    let out = text(&o);
    for row in ["superblock", "journal", "block bitmap", "inode table", "hnsw index", "data", "backup superblock"] {
        assert!(out.contains(row), "{row}: {out}");
    }
    assert!(!path.exists());
    let existing = dir.path().join("old.img");
    std::fs::write(&existing, vec![7u8; 8 << 20]).unwrap();
    ok(&mkfs(&["-n", "--dim", "8", "--metric", "cosine"], &existing, None));
    assert!(std::fs::read(&existing).unwrap().iter().all(|&b| b == 7));
}

#[test]
fn refuses_to_overwrite_vexfs_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    ok(&mkfs(&["-q", "-L", "keep", "--dim", "8", "--metric", "l2"], &path, Some("8M")));
    let before = std::fs::read(&path).unwrap();
    let o = mkfs(BASIC, &path, Some("8M"));
    failed(&o);
    assert!(text(&o).contains("contains a vexfs filesystem (label 'keep'); use -f"), "{}", text(&o));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    ok(&mkfs(&["-f", "-q", "--dim", "8", "--metric", "l2"], &path, Some("8M")));
    assert_ne!(std::fs::read(&path).unwrap()[56..72], before[56..72], "new UUID");
}

#[test]
fn refuses_to_overwrite_ext4_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ext4.img");
    let mut bytes = vec![0u8; 8 << 20];
    bytes[1080..1082].copy_from_slice(&0xEF53u16.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let o = mkfs(BASIC, &path, None);
    failed(&o);
    assert!(text(&o).contains("ext2/3/4"), "{}", text(&o));
    ok(&mkfs(&["-f", "-q", "--dim", "8", "--metric", "l2"], &path, None));
}

#[test]
fn uses_the_size_of_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    std::fs::write(&path, vec![0u8; (8 << 20) + 100]).unwrap();
    ok(&mkfs(&["-q", "--dim", "8", "--metric", "l2"], &path, None));
    let img = Image::open(FileDevice::open(&path, false).unwrap()).unwrap();
    assert_eq!(img.sb().block_count, 2048);
}

#[test]
fn sizes_with_suffixes() {
    let dir = tempfile::tempdir().unwrap();
    for (size, bytes) in [("4M", 4u64 << 20), ("4096k", 4 << 20), ("5000000", 5_000_000), ("1g", 1 << 30)] {
        let path = dir.path().join(format!("{size}.img"));
        ok(&mkfs(&["-q", "--dim", "8", "--metric", "l2"], &path, Some(size)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes, "{size}");
    }
}

#[test]
fn quiet_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = mkfs(&["-q", "--dim", "8", "--metric", "l2"], &dir.path().join("q.img"), Some("8M"));
    ok(&o);
    assert_eq!(text(&o), "");
}

#[test]
fn version() {
    let o = Command::new(env!("CARGO_BIN_EXE_mkfs-vexfs")).arg("-V").output().unwrap();
    ok(&o);
    assert!(text(&o).starts_with("mkfs.vexfs "), "{}", text(&o));
}

#[test]
fn failures_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.img");
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["--metric", "l2"], Some("8M")),                    // no --dim
        (&["--dim", "8", "--metric", "hamming"], Some("8M")), // bad metric
        (&["--dim", "0", "--metric", "l2"], Some("8M")),      // dim out of range
        (&["--dim", "8", "--metric", "l2"], Some("8X")),      // bad size
        (&["--dim", "8", "--metric", "l2"], Some("64K")),     // too small
        (&["--dim", "384", "--metric", "l2", "--journal-blocks", "1024"], Some("1G")), // journal below the floor
        (&["--dim", "384", "--metric", "l2", "--vectors", "20000"], Some("32M")), // no room for the journal
        (&["--dim", "8", "--metric", "l2"], None),            // no size, no file
        (&["--dim", "8", "--metric", "l2", "-U", "nope"], Some("8M")),
        (&["--dim", "8", "--metric", "l2", "-L", &"x".repeat(32)], Some("8M")),
        (&["--dim", "8", "--metric", "l2", "--hnsw-m", "1"], Some("8M")),
    ];
    for (args, size) in cases {
        failed(&mkfs(args, &path, *size));
    }
    assert!(!path.exists());
    let o = Command::new(env!("CARGO_BIN_EXE_mkfs-vexfs")).arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).contains("Exit status (as mke2fs): 0 success, 1 failure"), "{}", text(&o));
}

#[test]
fn seed_is_random_by_default_and_kept_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let seed_of = |name: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        let mut args = vec!["-q", "--dim", "4", "--metric", "l2"];
        args.extend_from_slice(extra);
        ok(&mkfs(&args, &path, Some("8M")));
        Image::open(FileDevice::open(&path, false).unwrap()).unwrap().sb().hnsw_seed
    };
    assert_eq!(seed_of("a.img", &["--seed", "12345"]), 12345);
    assert_eq!(seed_of("b.img", &["--seed", "12345"]), 12345);
    assert_ne!(seed_of("c.img", &[]), seed_of("d.img", &[]));
}

/// The default journal holds four times the largest transaction step (the kernel's floor for a
/// read-write mount), on small and large devices; on a small one the default vector capacity
/// shrinks to make room for it.
#[test]
fn default_journal_holds_the_largest_step() {
    let dir = tempfile::tempdir().unwrap();
    for size in ["16M", "32M", "256M", "2G"] {
        let path = dir.path().join(format!("j{size}.img"));
        let o = mkfs(&["--dim", "384", "--metric", "l2", "-q"], &path, Some(size));
        ok(&o);
        let img = Image::open(FileDevice::open(&path, false).unwrap()).unwrap();
        let sb = img.sb();
        let journal = sb.region(Region::Journal).blocks;
        let need = min_journal_blocks(sb);
        assert!(journal >= need, "{size}: journal {journal} blocks, floor {need}");
        assert!(sb.vec_capacity >= 64, "{size}: {} slots", sb.vec_capacity);
    }
}

/// `--quant sq8`: the feature and the codes region; the scale from `--sq8-shift`, from
/// `--train`'s largest |component|, or 7 by default; the options refused without sq8, or
/// together, or with a shift out of range; every such image fsck-clean.
#[test]
fn quant_sq8_sets_the_scale() {
    use vexfs_image::vexfs_core::format::superblock::FEATURE_INCOMPAT_SQ8;
    let dir = tempfile::tempdir().unwrap();
    // A training file of 2 rows of dim 8, largest |component| 3.0: shift 5 (3 * 32 = 96).
    let train = dir.path().join("train.fvecs");
    let mut raw = Vec::new();
    for row in [[0.5f32, -3.0, 0.0, 1.0, 0.25, 0.0, 0.0, 2.0], [0.1; 8]] {
        raw.extend_from_slice(&8i32.to_le_bytes());
        for x in row {
            raw.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(&train, raw).unwrap();
    let t = train.to_str().unwrap();
    let sb_of = |name: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        let mut args = vec!["-q", "--dim", "8", "--metric", "l2"];
        args.extend_from_slice(extra);
        ok(&mkfs(&args, &path, Some("8M")));
        let (out, _) = fsck::run(FileDevice::open(&path, false).unwrap(), Mode::Check).unwrap();
        assert_eq!(out.exit_code(), 0, "{name}: {:?}", out.report.problems);
        Image::open(FileDevice::open(&path, false).unwrap()).unwrap().sb().clone()
    };
    let plain = sb_of("none.img", &[]);
    assert!(!plain.has_sq8() && plain.region(Region::VecCodes).blocks == 0);
    for (name, extra, shift) in [
        ("default.img", &["--quant", "sq8"][..], 7),
        ("given.img", &["--quant", "sq8", "--sq8-shift", "-3"][..], -3),
        ("trained.img", &["--quant", "sq8", "--train", t][..], 5),
    ] {
        let sb = sb_of(name, extra);
        assert_eq!(sb.feature_incompat & FEATURE_INCOMPAT_SQ8, FEATURE_INCOMPAT_SQ8, "{name}");
        assert_eq!(sb.sq8_shift, shift, "{name}");
        assert_eq!(sb.region(Region::VecCodes).start, sb.region(Region::Hnsw).end(), "{name}");
        assert!(sb.region(Region::VecCodes).blocks >= sb.vec_capacity.div_ceil(128), "{name}");
    }
    for extra in [
        &["--train", t][..],
        &["--sq8-shift", "3"][..],
        &["--quant", "sq8", "--sq8-shift", "65"][..],
        &["--quant", "sq8", "--sq8-shift", "3", "--train", t][..],
    ] {
        let mut args = BASIC.to_vec();
        args.extend_from_slice(extra);
        failed(&mkfs(&args, &dir.path().join("bad.img"), Some("8M")));
    }
}

/// `--quant pq` in node records defaults to `m` 32 (NODE_RECORDS_DEFAULT_M) where such a
/// record fits in a block, else 16 (and records at 16 when they fit there); the split layout,
/// no quantisation and an explicit `--hnsw-m` keep theirs. Every image fsck-clean.
#[test]
fn node_records_default_to_a_denser_graph() {
    let dir = tempfile::tempdir().unwrap();
    // 300 training rows (more than the 256 centroids) of every dimension used below.
    let train = |dim: usize| {
        let path = dir.path().join(format!("train{dim}.fvecs"));
        let mut raw = Vec::new();
        for r in 0..300u32 {
            raw.extend_from_slice(&(dim as i32).to_le_bytes());
            for c in 0..dim as u32 {
                let x = ((r.wrapping_mul(2_654_435_761) ^ c.wrapping_mul(40_503)) % 1000) as f32 / 1000.0;
                raw.extend_from_slice(&x.to_le_bytes());
            }
        }
        std::fs::write(&path, raw).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (t8, t960) = (train(8), train(960));
    let sb_of = |name: &str, dim: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        let mut args = vec!["-q", "--dim", dim, "--metric", "l2"];
        args.extend_from_slice(extra);
        ok(&mkfs(&args, &path, Some("64M")));
        let (out, _) = fsck::run(FileDevice::open(&path, false).unwrap(), Mode::Check).unwrap();
        assert_eq!(out.exit_code(), 0, "{name}: {:?}", out.report.problems);
        Image::open(FileDevice::open(&path, false).unwrap()).unwrap().sb().clone()
    };
    for (name, dim, extra, m, records) in [
        ("records.img", "8", &["--quant", "pq:2", "--train", &t8][..], 32, true),
        ("split.img", "8", &["--quant", "pq:2", "--train", &t8, "--pq-layout", "split"][..], 16, false),
        ("given.img", "8", &["--quant", "pq:2", "--train", &t8, "--hnsw-m", "24"][..], 24, true),
        ("float.img", "8", &[][..], 16, false),
        // 960-d: a record at m 32 takes 4,128 bytes, at 16 4,000.
        ("wide.img", "960", &["--quant", "pq:240", "--train", &t960][..], 16, true),
    ] {
        let sb = sb_of(name, dim, extra);
        assert_eq!((sb.hnsw_m, sb.has_node_records()), (m, records), "{name}");
    }
}

/// `--build-on sq8`: the float32 image's graph is built on transient SQ8 codes at the scale
/// `--quant sq8` takes from the same rows, so its HNSW region is byte for byte that of the
/// `--quant sq8` image built from them (same seed, slots, capacity), and not the float build's;
/// the image keeps no codes and checks clean. `--build-on auto` (the default) builds so on rows
/// whose codes keep their neighbours, and on the floats when one row 1,000 times larger than
/// the others sets a scale that codes them all near zero. sq8 is refused beside
/// `--quant sq8|pq`.
#[test]
fn build_on_sq8_is_the_sq8_graph_on_a_float_image() {
    let dir = tempfile::tempdir().unwrap();
    // 1,500 rows of dim 8 from a fixed LCG (past the bulk loader's sequential first 1,024),
    // components in [-2, 2); `outlier`: row 700 scaled by 1,000.
    let write_rows = |name: &str, outlier: bool| {
        let path = dir.path().join(name);
        let mut raw = Vec::new();
        let mut x = 12345u64;
        for row in 0..1500 {
            raw.extend_from_slice(&8i32.to_le_bytes());
            for _ in 0..8 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let mut v = ((x >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0;
                if outlier && row == 700 {
                    v *= 1000.0;
                }
                raw.extend_from_slice(&v.to_le_bytes());
            }
        }
        std::fs::write(&path, raw).unwrap();
        path.to_str().unwrap().to_string()
    };
    let build = |rows: &str, name: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        let mut args = vec!["--import", rows, "--metric", "l2", "--seed", "9", "-j", "2", "--vectors", "2048"];
        args.extend_from_slice(extra);
        let o = mkfs(&args, &path, Some("32M"));
        ok(&o);
        let (out, _) = fsck::run(FileDevice::open(&path, false).unwrap(), Mode::Check).unwrap();
        assert_eq!(out.exit_code(), 0, "{name}: {:?}", out.report.problems);
        let img = Image::open(FileDevice::open(&path, false).unwrap()).unwrap();
        let sb = img.sb().clone();
        let hnsw = img.read_region(Region::Hnsw).unwrap();
        (text(&o), sb, hnsw)
    };
    let r = write_rows("rows.fvecs", false);
    let (out, sb, on_codes) = build(&r, "codes.img", &["--build-on", "sq8"]);
    assert!(out.contains("the graph on SQ8 codes at scale 2^5"), "{out}");
    assert!(!sb.has_codes());
    let (_, sq8, stored) = build(&r, "sq8.img", &["--quant", "sq8"]);
    assert!(sq8.has_sq8() && sq8.sq8_shift == 5);
    let (out, _, float) = build(&r, "float.img", &["--build-on", "float"]);
    assert!(!out.contains("Build:"), "{out}");
    assert!(on_codes == stored, "--build-on sq8 did not build the graph of --quant sq8");
    assert!(on_codes != float, "--build-on sq8 built the float graph");
    let (out, _, auto) = build(&r, "auto.img", &[]);
    assert!(
        out.contains("the graph on SQ8 codes held in memory (--build-on auto: SQ8 codes at scale 2^5 find"),
        "{out}"
    );
    assert!(auto == on_codes, "--build-on auto did not build on the codes");
    let bad = write_rows("outlier.fvecs", true);
    let (out, _, auto) = build(&bad, "auto-outlier.img", &[]);
    assert!(out.contains("the graph on the float vectors (--build-on auto: SQ8 codes at scale 2^-4 find"), "{out}");
    let (_, _, float) = build(&bad, "float-outlier.img", &["--build-on", "float"]);
    assert!(auto == float, "--build-on auto built on codes that lose the rows' neighbours");
    for quant in ["sq8", "pq"] {
        let path = dir.path().join("bad.img");
        let o = mkfs(&["--import", &r, "--metric", "l2", "--quant", quant, "--build-on", "sq8"], &path, Some("32M"));
        failed(&o);
        assert!(text(&o).contains("--build-on sq8 is for --quant none"), "{}", text(&o));
    }
}
