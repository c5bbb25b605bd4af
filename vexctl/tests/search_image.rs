//! vexctl search-image: on an image built offline from the first 300 pydocs vectors, its JSON
//! lines are the library's results exactly (paths, inodes, chunks, distance bits), its text is
//! a table, and bad requests fail with a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vexfs_image::vecfile::{fvecs_bytes, read_fvecs};
use vexfs_image::vectors::{MapDevice, Searcher};
use vexfs_image::vexfs_core::format::layout::MkfsParams;
use vexfs_image::vexfs_core::format::superblock::{Metric, ROOT_INO};
use vexfs_image::writer::Writer;
use vexfs_image::{mkfs, Image, MemDevice};

const N: usize = 300;

struct Fixture {
    _dir: tempfile::TempDir,
    image: PathBuf,
    queries: PathBuf,
    bytes: Vec<u8>,
}

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/pydocs-minilm/small")
}

/// `docs/pNNN` (inode NNN + 3) holds vectors 3i, 3i+1, 3i+2 as chunks 0..3, and `z-link` in
/// the root is a second link to `docs/p001` (inode 4).
fn fixture() -> Fixture {
    let base = read_fvecs(data().join("base.fvecs")).unwrap();
    let mut dev = MemDevice::new(2048);
    let p = MkfsParams {
        block_count: 2048,
        inode_count: None,
        journal_blocks: None,
        vec_capacity: Some(400),
        dim: 384,
        metric: Metric::L2,
        m: 8,
        ef_construction: 64,
        uuid: *b"vexfs-search-img",
        label: [0; 32],
        now: 1_700_000_000,
        seed: 3,
    };
    mkfs::format(&mut dev, &p, false).unwrap();
    let mut w = Writer::new(Image::open(dev).unwrap()).unwrap();
    let docs = w.mkdir(ROOT_INO, "docs", 0o755).unwrap();
    let mut second = 0;
    for i in 0..N / 3 {
        let ino = w.create(docs, &format!("p{i:03}"), format!("passage {i}\nmore\n").as_bytes()).unwrap();
        w.set_embeddings(ino, &base[3 * i..3 * i + 3]).unwrap();
        if i == 1 {
            second = ino;
        }
    }
    w.link(ROOT_INO, "z-link", second).unwrap();
    let bytes = w.commit().unwrap().into_device().bytes;
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fs.img");
    std::fs::write(&image, &bytes).unwrap();
    let queries = dir.path().join("q.fvecs");
    let mut q = read_fvecs(data().join("query.fvecs")).unwrap();
    q.truncate(20);
    std::fs::write(&queries, fvecs_bytes(&q)).unwrap();
    Fixture { _dir: dir, image, queries, bytes }
}

fn vexctl(image: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vexctl")).arg("search-image").arg(image).args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn json_lines_are_the_library_results() {
    let f = fixture();
    let q = f.queries.to_str().unwrap();
    let out = ok(&vexctl(&f.image, &["--fvecs", q, "--all", "--json", "-k", "7", "--ef", "40"]));
    let mut s = Searcher::new(Image::open(MapDevice::from_bytes(&f.bytes).unwrap()).unwrap(), 40).unwrap();
    let queries = read_fvecs(&f.queries).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), queries.len());
    for (r, (line, qv)) in lines.iter().zip(&queries).enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["query"], r);
        let hits = s.search(qv, 7, 40).unwrap();
        let res = v["results"].as_array().unwrap();
        assert_eq!(res.len(), hits.len());
        for (j, h) in res.iter().zip(&hits) {
            assert_eq!(j["ino"], h.ino);
            assert_eq!(j["chunk"], h.chunk);
            assert_eq!(j["distance"].as_f64().unwrap() as f32, h.distance(), "{line}");
            // As `vexctl search` names a file with two links: the first met in a depth-first
            // walk with sorted names, where a directory's entries count when it is listed.
            let want = if h.ino == 4 { "z-link".to_string() } else { format!("docs/p{:03}", h.ino - 3) };
            assert_eq!(j["path"], want.as_str(), "{line}");
        }
        // Keys in order: nearest first.
        assert!(hits.windows(2).all(|w| w[0].key <= w[1].key));
    }
    // With the vector regions loaded into memory first: the same lines.
    let resident = ok(&vexctl(&f.image, &["--fvecs", q, "--all", "--json", "-k", "7", "--ef", "40", "--resident"]));
    assert_eq!(resident, out, "--resident");
    // One row, the default ef (max(k, 64)), the same as the library's.
    let one = ok(&vexctl(&f.image, &["--fvecs", q, "--row", "3", "--json"]));
    let v: serde_json::Value = serde_json::from_str(one.trim()).unwrap();
    assert_eq!(v["query"], 3);
    let hits = s.search(&queries[3], 10, 0).unwrap();
    let inos: Vec<u64> = v["results"].as_array().unwrap().iter().map(|x| x["ino"].as_u64().unwrap()).collect();
    assert_eq!(inos, hits.iter().map(|h| h.ino).collect::<Vec<_>>());
}

#[test]
fn every_distance_implementation_gives_the_same_neighbours_here() {
    let f = fixture();
    let q = f.queries.to_str().unwrap();
    let scalar = ok(&vexctl(&f.image, &["--fvecs", q, "--row", "0", "--json", "--dist-impl", "scalar"]));
    let best = ok(&vexctl(&f.image, &["--fvecs", q, "--row", "0", "--json"]));
    let ids = |s: &str| {
        let v: serde_json::Value = serde_json::from_str(s.trim()).unwrap();
        v["results"].as_array().unwrap().iter().map(|x| (x["ino"].as_u64(), x["chunk"].as_u64())).collect::<Vec<_>>()
    };
    assert_eq!(ids(&scalar), ids(&best));
    let o = vexctl(&f.image, &["--fvecs", q, "--dist-impl", "neon"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn text_table_and_stats() {
    let f = fixture();
    let q = f.queries.to_str().unwrap();
    let o = vexctl(&f.image, &["--fvecs", q, "--row", "1", "-k", "3", "--stats"]);
    let out = ok(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "query 1: 3 nearest (l2)");
    assert!(lines[1].starts_with("rank    distance  path"), "{out}");
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[2].starts_with("   1  "), "{out}");
    assert!(lines.iter().skip(2).all(|l| l.contains("passage ") && !l.contains("more")), "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 queries in") && err.contains("searches/s"), "{err}");
}

#[test]
fn bad_requests_fail_with_a_message() {
    let f = fixture();
    let q = f.queries.to_str().unwrap();
    let fail = |args: &[&str], code: i32, want: &str| {
        let o = vexctl(&f.image, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    fail(&["--fvecs", q, "--row", "20"], 1, "no row 20");
    // A usage error, as in `vexctl search`.
    fail(&["--fvecs", q, "-k", "20", "--ef", "10"], 2, "--ef 10 is below -k 20");
    fail(&["--fvecs", q, "-k", "0"], 2, "0");
    fail(&["--fvecs", q, "--row", "1", "--all"], 2, "cannot be used with");
    fail(&["--fvecs", "/nonexistent.fvecs"], 1, "nonexistent");
    let small = f.queries.with_file_name("small.fvecs");
    std::fs::write(&small, fvecs_bytes(&[vec![1.0; 8]])).unwrap();
    fail(&["--fvecs", small.to_str().unwrap()], 1, "dimension 8");
    fail_image(&f);
}

fn fail_image(f: &Fixture) {
    let bad = f.image.with_file_name("zero.img");
    std::fs::write(&bad, vec![0u8; 1 << 20]).unwrap();
    let o = vexctl(&bad, &["--fvecs", f.queries.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad magic"));
}
