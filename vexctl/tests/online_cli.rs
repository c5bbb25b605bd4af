//! The online commands on the host, where no vexfs is mounted: they must refuse other
//! filesystems before any ioctl (and before changing anything), refuse bad input files and bad
//! command lines with clear messages and their exit codes. The ioctls themselves are tested in
//! the guest (tests/guest/030-vector-ioctls.sh).

use std::path::Path;
use std::process::{Command, Output};

fn vexctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vexctl")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sample(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/pydocs-minilm/small").join(name).display().to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn other_filesystems_are_refused_before_any_ioctl() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("f");
    std::fs::write(&f, "x").unwrap();
    let q = sample("query.fvecs");
    let fresh = t.path().join("new/docs");
    for args in [
        vec!["stats", s(t.path())],
        vec!["stats", s(&f), "--json"],
        vec!["get", s(&f)],
        vec!["rm-embedding", s(&f)],
        vec!["set", s(&f), "--fvecs", &q],
        vec!["set", s(&f), "--fvecs", &q, "--index-now"],
        vec!["search", s(t.path()), "--fvecs", &q, "--all", "--json"],
        vec!["import", &q, s(&fresh)],
        vec!["import", &q, s(&fresh), "--index-now"],
        vec!["wait-indexed", s(t.path())],
        vec!["wait-indexed", s(&f), "--timeout", "0.5", "--json"],
    ] {
        let o = vexctl(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains("is not on a vexfs mount (statfs f_type 0x"), "{args:?}: {e}");
        assert!(e.contains("vexfs is 0x56455846"), "{e}");
        assert!(e.contains("mount -t vexfs"), "{e}");
        assert!(o.stdout.is_empty());
    }
    // import did not create its directory on the wrong filesystem.
    assert!(!t.path().join("new").exists());
    assert_eq!(std::fs::read(&f).unwrap(), b"x");
}

#[test]
fn missing_paths() {
    let o = vexctl(&["stats", "/nonexistent/vexfs"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot open /nonexistent/vexfs: No such file or directory"));
    let o = vexctl(&["search", "/", "--fvecs", "/nonexistent.fvecs"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot open /nonexistent.fvecs"), "{}", stderr(&o));
}

#[test]
fn bad_vector_files_are_refused_first() {
    let t = tempfile::tempdir().unwrap();
    let cut = t.path().join("cut.fvecs");
    let mut b = std::fs::read(sample("query.fvecs")).unwrap();
    b.truncate(b.len() - 3);
    std::fs::write(&cut, &b).unwrap();
    let o = vexctl(&["import", s(&cut), s(&t.path().join("docs"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "truncated: 153997 bytes is not a whole number of rows of 1540 bytes (dimension 384): row 99 is incomplete"
        ),
        "{}",
        stderr(&o)
    );
    let nan = t.path().join("nan.fvecs");
    let mut row = 2i32.to_le_bytes().to_vec();
    row.extend_from_slice(&1f32.to_le_bytes());
    row.extend_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&nan, &row).unwrap();
    // The row is read after the filesystem check: here that check fails first.
    let o = vexctl(&["search", s(t.path()), "--fvecs", s(&nan)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not on a vexfs mount"));
}

#[test]
fn usage_errors_exit_2() {
    let q = sample("query.fvecs");
    for (args, want) in [
        (vec!["search", "/", "--fvecs", &q, "-k", "10", "--ef", "5"], "--ef 5 is below -k 10"),
        (vec!["search", "/", "--fvecs", &q, "-k", "0"], "0 is not in 1..=1024"),
        (vec!["search", "/", "--fvecs", &q, "-k", "1025"], "1025 is not in 1..=1024"),
        (vec!["search", "/", "--fvecs", &q, "--ef", "4097"], "4097 is not in 1..=4096"),
        (vec!["search", "/", "--fvecs", &q, "--row", "3", "--all"], "cannot be used with"),
        (vec!["search", "/"], "--fvecs <Q>"),
        (vec!["set", "/f", "--fvecs", &q, "--row", "1", "--rows", "1..3"], "cannot be used with"),
        (vec!["set", "/f", "--fvecs", &q, "--rows", "5..3"], "'5..3' is empty"),
        (vec!["set", "/f", "--fvecs", &q, "--rows", "5"], "'5' is not a range A..B"),
        (vec!["import", &q, "/d", "--batch", "0"], "0 is not in 1.."),
        (vec!["get"], "<FILE>"),
        (vec!["wait-indexed", "/", "--timeout=-1"], "'-1' is not a number of seconds from 0 on"),
        (vec!["wait-indexed", "/", "--timeout", "soon"], "'soon' is not a number of seconds"),
        (vec!["wait-indexed", "/", "--interval", "0"], "0 is not in 1..=60000"),
        (vec!["wait-indexed"], "<PATH>"),
        (vec!["set", "/f", "--fvecs", &q, "--index-now=yes"], "unexpected value"),
    ] {
        let o = vexctl(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn help_lists_the_online_commands() {
    let o = vexctl(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8(o.stdout).unwrap();
    for c in ["inspect", "import", "set", "get", "rm-embedding", "search", "stats", "wait-indexed", "log"] {
        assert!(out.contains(&format!("  {c} ")), "{c}: {out}");
    }
    assert!(out.contains("Exit status: 0 success, 1 the command failed"), "{out}");
    assert!(out.contains("2 bad command line"), "{out}");
    let o = vexctl(&["search", "--help"]);
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("--texts-from-files") && out.contains("[default: 10]"), "{out}");
    for c in ["set", "import"] {
        let out = String::from_utf8(vexctl(&[c, "--help"]).stdout).unwrap();
        assert!(out.contains("--index-now") && out.contains("linked by the index worker"), "{c}: {out}");
    }
    let out = String::from_utf8(vexctl(&["wait-indexed", "--help"]).stdout).unwrap();
    assert!(out.contains("--timeout <SECS>") && out.contains("[default: 50]"), "{out}");
}
