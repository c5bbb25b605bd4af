//! `vexctl log` on the host, where no vexfs is mounted: other filesystems and missing paths are
//! refused with their message and exit code, before anything is read or synced. The report of a
//! mounted vexfs is tested in the guest (tests/guest/076-vexctl-log.sh); the mountinfo parsing
//! and the device resolution by the unit tests of src/mounted_log.rs.

use std::process::{Command, Output};

fn vexctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vexctl")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn other_filesystems_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("f");
    std::fs::write(&f, "x").unwrap();
    let (dir, file) = (t.path().to_str().unwrap(), f.to_str().unwrap());
    for (args, path) in
        [(vec!["log", dir], dir), (vec!["log", file, "--json"], file), (vec!["log", "--sync", dir], dir)]
    {
        let o = vexctl(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.starts_with(&format!("vexctl: {path} is not on a vexfs mount (statfs f_type 0x")), "{e}");
        assert!(e.contains("vexfs is 0x56455846"), "{e}");
        assert!(o.stdout.is_empty());
    }
    let o = vexctl(&["log", "/proc/self/status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("(statfs f_type 0x9fa0, proc;"), "{}", stderr(&o));
}

#[test]
fn missing_path_and_bad_command_lines() {
    let o = vexctl(&["log", "/nonexistent/vexfs"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "vexctl: cannot open /nonexistent/vexfs: No such file or directory (os error 2)\n");
    for args in [vec!["log"], vec!["log", "/", "--bogus"], vec!["log", "/", "/tmp"]] {
        let o = vexctl(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("Usage: vexctl log "), "{}", stderr(&o));
    }
    let o = vexctl(&["log", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(help.contains("through the page cache"), "{help}");
    assert!(help.contains("--sync"), "{help}");
}
