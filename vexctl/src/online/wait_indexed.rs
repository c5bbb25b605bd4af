//! `vexctl wait-indexed`: waits until the index worker has linked every pending vector.
//!
//! A SET without VEXFS_SET_INDEX_NOW stores its vectors pending (the vector write-ahead log):
//! durable and searchable when it returns, linked into the HNSW graph later by the
//! filesystem's index worker. This command polls VEXFS_IOC_STATS every `--interval` until
//! `pending` is 0 and says how long that took and how many were pending at the start, which is
//! how tests and benchmarks measure the index's catch-up after a burst. It only reads (it
//! neither triggers nor speeds up the worker). Writers running meanwhile add pending vectors:
//! the wait ends at the first poll that sees none, and `peak` reports the most seen.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::{open_vexfs, print_out, stats_of};
use crate::abi::VexfsStats;
use crate::offline::CmdResult;

/// The arguments of `vexctl wait-indexed`.
#[derive(Args, Debug)]
pub struct WaitIndexedArgs {
    /// Any file or directory of a mounted vexfs.
    path: PathBuf,
    /// Give up after SECS seconds (exit status 1) [default: no limit].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    timeout: Option<Duration>,
    /// Milliseconds between two VEXFS_IOC_STATS calls.
    #[arg(long, value_name = "MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    interval: u64,
    /// Print one JSON object (also on a timeout, with "indexed": false).
    #[arg(long)]
    json: bool,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(short, long)]
    quiet: bool,
}

/// A number of seconds, fractions allowed, not negative.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(v).map_err(|_| format!("'{s}' is not a number of seconds from 0 on"))
}

/// What a wait saw.
#[derive(Serialize, Debug, Clone, PartialEq)]
struct Waited {
    /// Whether `pending` reached 0 (false: the timeout expired first).
    indexed: bool,
    /// Pending vectors at the first poll.
    pending_at_start: u32,
    /// The most pending vectors one poll saw (above the start if writers added some).
    peak_pending: u32,
    /// Pending vectors at the last poll (0 unless timed out).
    pending: u32,
    /// Searchable vectors (graph + pending) at the last poll.
    vectors: u64,
    /// Seconds from the first poll to the last.
    waited_secs: f64,
    /// VEXFS_IOC_STATS calls made.
    polls: u64,
}

/// Polls `stats` every `interval` until its `pending` is 0 or `timeout` has passed since the
/// first poll; `seen` is told each poll's pending count and the peak so far.
fn wait(
    mut stats: impl FnMut() -> Result<VexfsStats, String>,
    interval: Duration,
    timeout: Option<Duration>,
    mut seen: impl FnMut(u32, u32),
) -> Result<Waited, String> {
    let start = Instant::now();
    let first = stats()?;
    let mut w = Waited {
        indexed: first.pending == 0,
        pending_at_start: first.pending,
        peak_pending: first.pending,
        pending: first.pending,
        vectors: first.vectors,
        waited_secs: 0.0,
        polls: 1,
    };
    seen(w.pending, w.peak_pending);
    while w.pending > 0 {
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            break;
        }
        // Never sleep past the deadline: the last poll comes at it.
        let nap = timeout.map_or(interval, |t| interval.min(t.saturating_sub(start.elapsed())));
        sleep(nap);
        let s = stats()?;
        w.polls += 1;
        w.pending = s.pending;
        w.vectors = s.vectors;
        w.peak_pending = w.peak_pending.max(s.pending);
        seen(w.pending, w.peak_pending);
    }
    w.indexed = w.pending == 0;
    w.waited_secs = start.elapsed().as_secs_f64();
    Ok(w)
}

/// The text report of a wait that ended with nothing pending.
fn report(path: &Path, w: &Waited) -> String {
    if w.pending_at_start == 0 {
        return format!("{}: nothing pending: every vector is in the graph ({} searchable)", path.display(), w.vectors);
    }
    let peak = if w.peak_pending > w.pending_at_start {
        format!(" (up to {} while writers added more)", w.peak_pending)
    } else {
        String::new()
    };
    format!(
        "{}: indexed: {} vectors pending at the start{peak}, all linked into the graph after {:.2} s \
         ({} polls); {} searchable",
        path.display(),
        w.pending_at_start,
        w.waited_secs,
        w.polls,
        w.vectors
    )
}

/// The error of a wait that timed out.
fn timeout_error(path: &Path, w: &Waited) -> String {
    format!(
        "{}: timed out after {:.2} s with {} vectors still pending ({} at the start): the index \
         worker has not caught up; wait longer (--timeout), and look in dmesg for its errors if the \
         count does not fall",
        path.display(),
        w.waited_secs,
        w.pending,
        w.pending_at_start
    )
}

/// `vexctl wait-indexed`.
pub fn wait_indexed(a: &WaitIndexedArgs) -> CmdResult {
    let f = open_vexfs(&a.path, false)?;
    let bar = ProgressBar::new(0);
    if a.quiet || !io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} linked, {per_sec}, eta {eta}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let w = wait(
        || stats_of(&f, &a.path),
        Duration::from_millis(a.interval),
        a.timeout,
        |pending, peak| {
            bar.set_length(u64::from(peak));
            bar.set_position(u64::from(peak - pending.min(peak)));
        },
    );
    bar.finish_and_clear();
    let w = w?;
    if a.json {
        let j = serde_json::to_string_pretty(&w).map_err(|e| e.to_string())?;
        print_out(&(j + "\n"))?;
    } else if w.indexed {
        print_out(&(report(&a.path, &w) + "\n"))?;
    }
    if w.indexed {
        Ok(())
    } else {
        Err(timeout_error(&a.path, &w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_pending(counts: &[u32]) -> impl FnMut() -> Result<VexfsStats, String> + '_ {
        let mut i = 0;
        move || {
            let p = *counts.get(i).or(counts.last()).unwrap();
            i += 1;
            Ok(VexfsStats { pending: p, vectors: 100, ..VexfsStats::default() })
        }
    }

    #[test]
    fn waits_until_nothing_is_pending() {
        let mut seen = Vec::new();
        let w =
            wait(with_pending(&[40, 25, 60, 3, 0, 9]), Duration::from_millis(1), None, |p, peak| seen.push((p, peak)))
                .unwrap();
        assert_eq!(seen, [(40, 40), (25, 40), (60, 60), (3, 60), (0, 60)]);
        assert!(w.indexed);
        assert_eq!((w.pending_at_start, w.peak_pending, w.pending, w.polls, w.vectors), (40, 60, 0, 5, 100));
        assert!(w.waited_secs >= 0.004, "four sleeps of 1 ms: {}", w.waited_secs);
        let r = report(Path::new("/mnt"), &Waited { waited_secs: 1.234, ..w.clone() });
        assert_eq!(
            r,
            "/mnt: indexed: 40 vectors pending at the start (up to 60 while writers added more), all \
             linked into the graph after 1.23 s (5 polls); 100 searchable"
        );
        let r = report(Path::new("/mnt"), &Waited { peak_pending: 40, waited_secs: 0.5, ..w });
        assert!(r.contains("40 vectors pending at the start, all linked into the graph after 0.50 s"), "{r}");
    }

    #[test]
    fn nothing_pending_is_one_poll() {
        let w = wait(with_pending(&[0]), Duration::from_secs(60), Some(Duration::ZERO), |_, _| {}).unwrap();
        assert!(w.indexed);
        assert_eq!((w.polls, w.pending_at_start), (1, 0));
        assert!(w.waited_secs < 1.0);
        assert_eq!(report(Path::new("/m"), &w), "/m: nothing pending: every vector is in the graph (100 searchable)");
    }

    #[test]
    fn a_timeout_stops_at_the_deadline() {
        let t = Instant::now();
        let w =
            wait(with_pending(&[7, 5]), Duration::from_secs(60), Some(Duration::from_millis(30)), |_, _| {}).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "slept the whole interval past the deadline");
        assert!(!w.indexed);
        assert_eq!((w.pending_at_start, w.pending), (7, 5));
        assert!(w.waited_secs >= 0.03, "{}", w.waited_secs);
        let e = timeout_error(Path::new("/mnt"), &Waited { waited_secs: 0.03, ..w.clone() });
        assert_eq!(
            e,
            "/mnt: timed out after 0.03 s with 5 vectors still pending (7 at the start): the index \
             worker has not caught up; wait longer (--timeout), and look in dmesg for its errors if \
             the count does not fall"
        );
        let j = serde_json::to_value(&w).unwrap();
        assert_eq!(j["indexed"], false);
        assert_eq!(j["pending"], 5);
        assert_eq!(j["pending_at_start"], 7);
    }

    #[test]
    fn an_ioctl_error_ends_the_wait() {
        let mut n = 0;
        let e = wait(
            || {
                n += 1;
                if n < 3 {
                    Ok(VexfsStats { pending: 1, ..VexfsStats::default() })
                } else {
                    Err("EIO".to_string())
                }
            },
            Duration::from_millis(1),
            None,
            |_, _| {},
        )
        .unwrap_err();
        assert_eq!(e, "EIO");
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_secs("0"), Ok(Duration::ZERO));
        assert!(parse_secs("-1").unwrap_err().contains("from 0 on"));
        assert!(parse_secs("NaN").is_err());
        assert!(parse_secs("soon").unwrap_err().contains("not a number"));
    }
}
