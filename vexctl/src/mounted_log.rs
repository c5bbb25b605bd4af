//! `vexctl log PATH`: the journal of a mounted vexfs, read from the block device it is mounted
//! from.
//!
//! PATH is any file or directory of the mount. Its `st_dev` names the filesystem's device
//! (major:minor); `/proc/self/mountinfo` ([`parse_mountinfo`]) gives the mount's type, source and
//! options; [`resolve_device`] finds the device node (the mount's source, `/dev/block/M:m`, or
//! the name sysfs gives), checking that it is a block device of that very number. The journal
//! is then read as `vexctl inspect --log` reads an image. The device is read through its page
//! cache, which is the kernel's buffer cache: the report shows what the kernel last wrote or
//! holds in its cache, never the running transaction (it is in the log only once committed:
//! `--sync` commits it first, with syncfs(2)). The vector write-ahead log's pending count is
//! read the same way from the HNSW header, next to the mount's own count (VEXFS_IOC_STATS).

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use vexfs_image::show::format_uuid;
use vexfs_image::vexfs_core::format::superblock::FEATURE_INCOMPAT_RECOVER;
use vexfs_image::{FileDevice, Image};

use crate::mount::check_vexfs;
use crate::offline::{journal, log_json, print_log, print_wal, state_names, wal_json, CmdResult, JournalJson, WalJson};

/// The arguments of `vexctl log`.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Any file or directory of a mounted vexfs.
    path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Commit the running transaction first (syncfs(2) on PATH), so that it shows in the log.
    #[arg(long)]
    sync: bool,
}

/// A device number, as `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DevId {
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
}

impl DevId {
    /// The major and minor numbers of a `dev_t` (`st_dev`, `st_rdev`).
    pub fn from_dev_t(dev: u64) -> DevId {
        DevId { major: nix::sys::stat::major(dev), minor: nix::sys::stat::minor(dev) }
    }
}

impl std::fmt::Display for DevId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One line of `/proc/self/mountinfo` (proc_pid_mountinfo(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Unique id of the mount.
    pub mount_id: u64,
    /// `st_dev` of the files of the mount.
    pub dev: DevId,
    /// The directory of the filesystem that is the mount's root (`/` unless a bind mount).
    pub root: PathBuf,
    /// Where it is mounted, in this process's root.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `ro`, `noatime`, ...).
    pub mount_options: String,
    /// Filesystem type (`vexfs`, `ext4`, ...).
    pub fs_type: String,
    /// What was mounted (a device path for a block filesystem).
    pub source: String,
    /// Per-superblock options (the filesystem's own).
    pub super_options: String,
}

impl MountEntry {
    /// Whether the mount is read-only.
    pub fn read_only(&self) -> bool {
        self.mount_options.split(',').any(|o| o == "ro")
    }
}

/// Undoes the kernel's octal escapes of mountinfo fields (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash); anything else is kept as is.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let octal = b.get(i + 1..i + 4).filter(|d| c == b'\\' && d.iter().all(|x| (b'0'..=b'7').contains(x)));
        match octal.map(|d| d.iter().fold(0u32, |v, x| v * 8 + u32::from(x - b'0'))) {
            Some(v) if v <= 0xff => {
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let mut it = line.split(' ');
    let mount_id = it.next()?.parse().ok()?;
    let _parent = it.next()?;
    let (major, minor) = it.next()?.split_once(':')?;
    let dev = DevId { major: major.parse().ok()?, minor: minor.parse().ok()? };
    let root = PathBuf::from(unescape(it.next()?));
    let mount_point = PathBuf::from(unescape(it.next()?));
    let mount_options = it.next()?.to_string();
    // Optional fields (shared:N, master:N, ...) up to the separator.
    it.by_ref().find(|f| *f == "-")?;
    let fs_type = unescape(it.next()?);
    let source = unescape(it.next()?);
    let super_options = it.next().unwrap_or("").to_string();
    Some(MountEntry { mount_id, dev, root, mount_point, mount_options, fs_type, source, super_options })
}

/// Parses the text of `/proc/self/mountinfo`, one entry per non-empty line, in file order (a
/// later mount over the same directory comes later). Errors: a malformed line, named.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(n, l)| parse_line(l).ok_or_else(|| format!("/proc/self/mountinfo line {}: cannot parse {l:?}", n + 1)))
        .collect()
}

/// The mount a path is on and the block device node it is mounted from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// The mount (of the device, the deepest whose mount point holds the path).
    pub entry: MountEntry,
    /// A block device node whose `st_rdev` is the mount's device.
    pub device: PathBuf,
}

/// Finds the mount of device `dev` that `path` (canonical) is on, checks it is vexfs, and the
/// block device node it is mounted from: the first of the mount's source, `/dev/block/M:m` and
/// `/dev/DEVNAME` (`devname`, from sysfs) that `rdev_of` says is a block device numbered `dev`.
/// Errors: no mount of `dev`, not vexfs, no such device node.
pub fn resolve_device(
    path: &Path,
    dev: DevId,
    entries: &[MountEntry],
    devname: Option<&str>,
    rdev_of: impl Fn(&Path) -> Option<DevId>,
) -> Result<Mounted, String> {
    let of_dev: Vec<&MountEntry> = entries.iter().filter(|e| e.dev == dev).collect();
    // The same filesystem may be mounted (or bind-mounted) several times: prefer the deepest
    // mount point above the path, the latest on ties (a later mount hides an earlier one).
    let entry = of_dev
        .iter()
        .filter(|e| path.starts_with(&e.mount_point))
        .max_by_key(|e| e.mount_point.components().count())
        .or(of_dev.last())
        .ok_or_else(|| format!("{}: no mount of device {dev} in /proc/self/mountinfo", path.display()))?;
    if entry.fs_type != "vexfs" {
        return Err(format!(
            "{} is on a {} mount ({} on {}), not vexfs",
            path.display(),
            entry.fs_type,
            entry.source,
            entry.mount_point.display()
        ));
    }
    let mut candidates = Vec::new();
    if entry.source.starts_with('/') {
        candidates.push(PathBuf::from(&entry.source));
    }
    candidates.push(PathBuf::from(format!("/dev/block/{dev}")));
    if let Some(name) = devname.filter(|n| !n.is_empty() && !n.contains("..")) {
        candidates.push(Path::new("/dev").join(name));
    }
    match candidates.iter().find(|c| rdev_of(c) == Some(dev)) {
        Some(device) => Ok(Mounted { entry: (*entry).clone(), device: device.clone() }),
        None => Err(format!(
            "{}: no block device node {dev} found (tried {}): mknod one (mknod NODE b {} {}) and \
             read it with vexctl inspect --log NODE",
            path.display(),
            candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", "),
            dev.major,
            dev.minor
        )),
    }
}

/// The device number of `p` if it is a block device.
fn block_rdev(p: &Path) -> Option<DevId> {
    let m = std::fs::metadata(p).ok()?;
    m.file_type().is_block_device().then(|| DevId::from_dev_t(m.rdev()))
}

/// `DEVNAME` of the block device `dev` in sysfs, if sysfs is mounted.
fn sysfs_devname(dev: DevId) -> Option<String> {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{dev}/uevent")).ok()?;
    uevent.lines().find_map(|l| l.strip_prefix("DEVNAME=")).map(str::to_string)
}

#[derive(Serialize)]
struct MountJson {
    path: PathBuf,
    mount_point: PathBuf,
    device: PathBuf,
    major: u64,
    minor: u64,
    source: String,
    mount_options: String,
    super_options: String,
    read_only: bool,
}

/// What statfs(2) and VEXFS_IOC_STATS say: the mount's own counts, which the superblock and
/// the HNSW header on the device only get at a commit that writes them, or at unmount.
#[derive(Serialize)]
struct LiveJson {
    blocks: u64,
    free_blocks: u64,
    inodes: u64,
    free_inodes: u64,
    /// Searchable vectors, graph + pending (`null`: VEXFS_IOC_STATS failed).
    vectors: Option<u64>,
    /// Vectors not yet linked into the graph (`null`: VEXFS_IOC_STATS failed).
    pending: Option<u32>,
}

#[derive(Serialize)]
struct SuperblockJson {
    uuid: String,
    state: Vec<&'static str>,
    feature_incompat: u32,
    /// The RECOVER feature: set while mounted read-write, cleared by a clean unmount.
    recover: bool,
    free_blocks: u64,
    free_inodes: u32,
}

#[derive(Serialize)]
struct LogJson {
    mount: MountJson,
    /// Whether `--sync` committed the running transaction before the log was read.
    synced: bool,
    live: LiveJson,
    superblock: SuperblockJson,
    journal: JournalJson,
    /// The vector write-ahead log, from the HNSW header on the device.
    wal: WalJson,
}

/// `vexctl log`.
pub fn log(a: &LogArgs) -> CmdResult {
    let p = &a.path;
    let f = File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
    check_vexfs(&f, p)?;
    let meta = f.metadata().map_err(|e| format!("{}: stat: {e}", p.display()))?;
    let dev = DevId::from_dev_t(meta.dev());
    let canon = std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e} (is /proc mounted?)"))?;
    let entries = parse_mountinfo(&text)?;
    let m = resolve_device(&canon, dev, &entries, sysfs_devname(dev).as_deref(), block_rdev)?;
    if a.sync {
        nix::unistd::syncfs(&f).map_err(|e| format!("{}: syncfs: {e}", p.display()))?;
    }
    let st = nix::sys::statfs::fstatfs(&f).map_err(|e| format!("{}: statfs: {e}", p.display()))?;
    // Secondary: a module without the ioctl (or a failing one) leaves the live counts null.
    let vs = crate::ioctl::stats(&f).ok();
    let fdev = FileDevice::open(&m.device, false).map_err(|e| {
        format!(
            "cannot open {}: {e} (reading the journal needs read access to the device: run as root)",
            m.device.display()
        )
    })?;
    let img = Image::open(fdev).map_err(|e| format!("{}: {e}", m.device.display()))?;
    let sb = img.sb();
    let mut jj = journal(&img)?;
    if jj.error.is_none() {
        jj.log = Some(log_json(&img)?);
    }
    let wal = wal_json(&img)?;
    let out = LogJson {
        mount: MountJson {
            path: canon,
            mount_point: m.entry.mount_point.clone(),
            device: m.device.clone(),
            major: dev.major,
            minor: dev.minor,
            source: m.entry.source.clone(),
            mount_options: m.entry.mount_options.clone(),
            super_options: m.entry.super_options.clone(),
            read_only: m.entry.read_only(),
        },
        synced: a.sync,
        #[allow(clippy::useless_conversion)] // the field types differ between libcs
        live: LiveJson {
            blocks: st.blocks().into(),
            free_blocks: st.blocks_free().into(),
            inodes: st.files().into(),
            free_inodes: st.files_free().into(),
            vectors: vs.map(|s| s.vectors),
            pending: vs.map(|s| s.pending),
        },
        superblock: SuperblockJson {
            uuid: format_uuid(&sb.uuid),
            state: state_names(sb.state),
            feature_incompat: sb.feature_incompat,
            recover: sb.feature_incompat & FEATURE_INCOMPAT_RECOVER != 0,
            free_blocks: sb.free_blocks,
            free_inodes: sb.free_inodes,
        },
        journal: jj,
        wal,
    };
    if a.json {
        let s = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
        println!("{s}");
        return Ok(());
    }
    print_text(&out);
    Ok(())
}

fn print_text(o: &LogJson) {
    let m = &o.mount;
    println!(
        "Mount:                {} ({}), vexfs on {} ({}:{})",
        m.mount_point.display(),
        if m.read_only { "read-only" } else { "read-write" },
        m.device.display(),
        m.major,
        m.minor
    );
    println!("Mount options:        {}; filesystem options {}", m.mount_options, m.super_options);
    println!(
        "Read from:            {} through its page cache (the kernel's buffer cache): what the kernel \
         last wrote or holds in cache; {}",
        m.device.display(),
        if o.synced {
            "the running transaction was committed first (--sync)"
        } else {
            "not the running transaction (--sync commits it first)"
        }
    );
    let l = &o.live;
    println!(
        "Mount's counts:       {} of {} blocks free, {} of {} inodes free (superblock on the device: {}, {})",
        l.free_blocks, l.blocks, l.free_inodes, l.inodes, o.superblock.free_blocks, o.superblock.free_inodes
    );
    let s = &o.superblock;
    println!("UUID:                 {}", s.uuid);
    println!(
        "State:                {}; incompat features {:#x}{}",
        s.state.join(", "),
        s.feature_incompat,
        if s.recover { " (RECOVER: mounted read-write, or not cleanly unmounted)" } else { "" }
    );
    let jr = &o.journal;
    crate::offline::print_journal_line(jr);
    if jr.state == "needs recovery" && !m.read_only {
        println!(
            "                      (while mounted read-write the journal always needs recovery: the \
             transactions below are what a crash now would replay)"
        );
    }
    if let Some(log) = &jr.log {
        print_log(jr, log);
    }
    let live = match o.live.pending {
        Some(p) => format!("; the mount's count (VEXFS_IOC_STATS): {p} pending"),
        None => "; the mount's count: unknown (VEXFS_IOC_STATS failed)".into(),
    };
    print_wal(&o.wal, &live);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real mountinfo (a QEMU guest with busybox), with a vexfs mounted twice (the second a
    /// bind of a subdirectory), a vexfs mount point with a space, and an ext4 mount.
    const MOUNTINFO: &str = "\
17 1 0:15 / /proc rw,relatime - proc proc rw
18 1 0:16 / /sys rw,relatime - sysfs sysfs rw
19 1 0:5 / /dev rw,relatime - devtmpfs devtmpfs rw,size=120000k,nr_inodes=30000,mode=755
20 1 0:17 / /tmp rw,relatime - tmpfs tmpfs rw
24 1 254:0 / /mnt rw,relatime shared:1 - vexfs /dev/vda rw
25 20 254:0 /sub /tmp/bind ro,relatime shared:1 master:2 - vexfs /dev/vda rw
26 1 254:16 / /my\\040disk rw,noatime - vexfs /dev/vdb rw
27 1 254:32 / /ext rw,relatime - ext4 /dev/vdc rw,errors=continue
";

    fn dev(major: u64, minor: u64) -> DevId {
        DevId { major, minor }
    }

    fn entries() -> Vec<MountEntry> {
        parse_mountinfo(MOUNTINFO).unwrap()
    }

    #[test]
    fn mountinfo_fields() {
        let e = entries();
        assert_eq!(e.len(), 8);
        let vda = e.iter().find(|m| m.mount_id == 24).unwrap();
        assert_eq!(
            *vda,
            MountEntry {
                mount_id: 24,
                dev: dev(254, 0),
                root: "/".into(),
                mount_point: "/mnt".into(),
                mount_options: "rw,relatime".into(),
                fs_type: "vexfs".into(),
                source: "/dev/vda".into(),
                super_options: "rw".into(),
            }
        );
        assert!(!vda.read_only());
        // Two optional fields before the separator; a bind of a subdirectory, read-only.
        let bind = e.iter().find(|m| m.mount_id == 25).unwrap();
        assert_eq!((bind.root.as_path(), bind.mount_point.as_path()), (Path::new("/sub"), Path::new("/tmp/bind")));
        assert!(bind.read_only());
        assert_eq!(e.iter().find(|m| m.mount_id == 26).unwrap().mount_point, Path::new("/my disk"));
        let ext = e.last().unwrap();
        assert_eq!((ext.fs_type.as_str(), ext.super_options.as_str()), ("ext4", "rw,errors=continue"));
        assert_eq!(e.first().unwrap().dev, dev(0, 15));
    }

    #[test]
    fn mountinfo_escapes_and_bad_lines() {
        assert_eq!(unescape(r"a\040b\011c\012d\134e"), "a b\tc\nd\\e");
        // Not an escape: kept as is (too short, not octal, past a byte).
        assert_eq!(unescape(r"x\04"), r"x\04");
        assert_eq!(unescape(r"x\09y"), r"x\09y");
        assert_eq!(unescape(r"x\777"), r"x\777");
        assert_eq!(unescape(r"end\"), r"end\");
        assert_eq!(parse_mountinfo("").unwrap(), vec![]);
        for bad in [
            "24 1 254:0 / /mnt rw,relatime vexfs /dev/vda rw",
            "24 1 254 / /mnt rw - vexfs /dev/vda rw",
            "x 1 254:0 / /mnt rw - vexfs /dev/vda rw",
            "24 1 254:0 / /mnt rw -",
        ] {
            let text = format!("17 1 0:15 / /proc rw,relatime - proc proc rw\n{bad}\n");
            assert_eq!(
                parse_mountinfo(&text).unwrap_err(),
                format!("/proc/self/mountinfo line 2: cannot parse {bad:?}")
            );
        }
    }

    /// Device nodes as a fake `rdev_of` sees them.
    fn nodes<'a>(list: &'a [(&'a str, DevId)]) -> impl Fn(&Path) -> Option<DevId> + 'a {
        move |p| list.iter().find(|(n, _)| Path::new(n) == p).map(|(_, d)| *d)
    }

    #[test]
    fn the_device_of_a_mount() {
        let e = entries();
        let all: &[(&str, DevId)] = &[("/dev/vda", dev(254, 0)), ("/dev/vdb", dev(254, 16))];
        let m = resolve_device(Path::new("/mnt/d/f"), dev(254, 0), &e, None, nodes(all)).unwrap();
        assert_eq!((m.entry.mount_id, m.device.as_path()), (24, Path::new("/dev/vda")));
        // The bind mount the path is under, not the first mount of the device.
        let m = resolve_device(Path::new("/tmp/bind/x"), dev(254, 0), &e, None, nodes(all)).unwrap();
        assert_eq!((m.entry.mount_id, m.device.as_path()), (25, Path::new("/dev/vda")));
        // A path under no mount point of the device (another root): its latest mount.
        let m = resolve_device(Path::new("/elsewhere"), dev(254, 0), &e, None, nodes(all)).unwrap();
        assert_eq!(m.entry.mount_id, 25);
        let m = resolve_device(Path::new("/my disk/f"), dev(254, 16), &e, None, nodes(all)).unwrap();
        assert_eq!((m.entry.mount_id, m.device.as_path()), (26, Path::new("/dev/vdb")));
    }

    #[test]
    fn a_source_that_is_not_the_device() {
        let e = entries();
        // /dev/vda is now another device: /dev/block/M:m, then sysfs's name, are tried.
        let renamed: &[(&str, DevId)] = &[("/dev/vda", dev(254, 16)), ("/dev/block/254:0", dev(254, 0))];
        let m = resolve_device(Path::new("/mnt"), dev(254, 0), &e, Some("vdz"), nodes(renamed)).unwrap();
        assert_eq!(m.device, Path::new("/dev/block/254:0"));
        let by_name: &[(&str, DevId)] = &[("/dev/vda", dev(254, 16)), ("/dev/vdz", dev(254, 0))];
        let m = resolve_device(Path::new("/mnt"), dev(254, 0), &e, Some("vdz"), nodes(by_name)).unwrap();
        assert_eq!(m.device, Path::new("/dev/vdz"));
        // A regular file of that name (rdev_of says no) is not taken; sysfs names with `..` are
        // not followed.
        let none: &[(&str, DevId)] = &[("/dev/vda", dev(254, 16))];
        let err = resolve_device(Path::new("/mnt"), dev(254, 0), &e, Some("../etc/x"), nodes(none)).unwrap_err();
        assert_eq!(
            err,
            "/mnt: no block device node 254:0 found (tried /dev/vda, /dev/block/254:0): mknod one \
             (mknod NODE b 254 0) and read it with vexctl inspect --log NODE"
        );
    }

    #[test]
    fn not_vexfs_or_not_mounted() {
        let e = entries();
        let all: &[(&str, DevId)] = &[("/dev/vdc", dev(254, 32))];
        assert_eq!(
            resolve_device(Path::new("/ext/a"), dev(254, 32), &e, None, nodes(all)).unwrap_err(),
            "/ext/a is on a ext4 mount (/dev/vdc on /ext), not vexfs"
        );
        assert_eq!(
            resolve_device(Path::new("/x"), dev(8, 1), &e, None, nodes(all)).unwrap_err(),
            "/x: no mount of device 8:1 in /proc/self/mountinfo"
        );
    }

    #[test]
    fn this_process_mounts() {
        // The real mountinfo parses, and the device of / and /proc is among its entries.
        let e = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap()).unwrap();
        for p in ["/", "/proc"] {
            let d = DevId::from_dev_t(std::fs::metadata(p).unwrap().dev());
            assert!(e.iter().any(|m| m.dev == d), "{p} ({d}) not in mountinfo");
        }
        let proc_dev = DevId::from_dev_t(std::fs::metadata("/proc").unwrap().dev());
        let err = resolve_device(Path::new("/proc/self"), proc_dev, &e, None, block_rdev).unwrap_err();
        assert!(err.starts_with("/proc/self is on a proc mount ("), "{err}");
        assert_eq!(DevId::from_dev_t(nix::sys::stat::makedev(254, 16)), dev(254, 16));
        assert_eq!(dev(259, 3).to_string(), "259:3");
    }
}
