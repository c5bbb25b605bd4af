//! The userspace side of the search benchmark (`bench/guest.sh` runs it in the guest, after
//! `bench/guest-search.c` timed the kernel on the same image): the kernel's search code
//! (`vexfs_core::vindex`, through [`Searcher`], which `vexctl search-image` uses) over an
//! unmounted image or block device, mapped read-only.
//!
//!     bench_search IMAGE QUERY.fvecs GT.ivecs EF[,EF...] [-k K] [-p PASSES] [-d PREFIX]
//!                  [--dist-impl scalar|sse2|avx2|avx512] [-t THREADS] [--resident]
//!
//! Same protocol as guest-search: an untimed warm-up pass at the largest EF, then for each EF
//! PASSES passes over all queries, each search timed alone (TSC, see [`Tsc`]); the fastest pass gives QPS and its
//! latencies p50/p99 (nearest rank). Files are DIR/ROW (vexctl import), so a hit's path names
//! its base row for recall@K. `--dist-impl` should be the kernel's (guest-search prints it) so
//! both compute the same bits; with -d the first pass's results go to PREFIX-EF.txt in
//! guest-search's format ("QUERY RANK INO CHUNK DISTANCE-BITS").
//!
//! With `--resident` the image's vector regions are first copied into memory on huge pages
//! ([`Searcher::load_vectors`]): the host's model of the module, whose index blocks sit in the
//! kernel's direct map (2 MiB / 1 GiB pages), not in a 4 KiB file mapping. The host benchmark
//! (`bench/search.sh`) uses it; the guest's comparison with the ioctl path does not.
//!
//! With `-t T` (T > 1), each EF then runs 3 x PASSES passes with T threads at once, each with
//! its own search pad over the one [`Searcher`] (`search_shared`, what the kernel's concurrent
//! searches run), the threads taking the next query from a shared counter: a pass is timed whole
//! (wall clock from before the threads start to after they end), and its answers must be the
//! single-thread pass's. Each such pass follows one of the same harness with 1 thread, so the
//! ratio of the two compares like with like (the same timing, the same overheads, the same
//! moment of a noisy host); the best of each is kept. The passes are short (a pass of 1,000
//! queries at 25,000 QPS lasts 40 ms), hence three times as many.
//!
//! Output: one line per EF ("side": "user"), and with `-t` two more per EF ("side":
//! "user-mt", "threads": 1 and T), each "BENCH " then a JSON object.

use std::io::Write;
use std::time::Instant;

use vexfs_image::vecfile::{read_fvecs, read_ivecs};
use vexfs_image::vectors::{Hit, SearchPad, Searcher};
use vexfs_image::vexfs_core::distance::Impl;

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_search: {msg}");
    std::process::exit(1);
}

/// The guest's `CLOCK_MONOTONIC` (hence `Instant`) ticks in jiffies (4 ms) under the test
/// kernel's config, too coarse for one search: searches are timed with the TSC, calibrated
/// against `Instant` from one tick edge to another about a second later (as guest-search does).
struct Tsc {
    per_ns: f64,
}

impl Tsc {
    fn calibrate() -> Tsc {
        let origin = Instant::now();
        let ns = || origin.elapsed().as_nanos() as u64;
        let a = ns();
        let mut b = ns();
        while b == a {
            b = ns();
        }
        let t0 = Self::ticks();
        let (ns0, mut prev) = (b, b);
        loop {
            let c = ns();
            if c != prev && c - ns0 >= 1_000_000_000 {
                let t1 = Self::ticks();
                return Tsc { per_ns: (t1 - t0) as f64 / (c - ns0) as f64 };
            }
            prev = c;
        }
    }
    fn ticks() -> u64 {
        // SAFETY: rdtsc has no preconditions on x86_64 (user mode may read the TSC).
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    fn now_ns(&self) -> u64 {
        (Self::ticks() as f64 / self.per_ns) as u64
    }
}

fn pct(sorted: &[u64], p: usize) -> u64 {
    let r = (sorted.len() * p).div_ceil(100);
    sorted[r.saturating_sub(1)]
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let usage =
        "usage: bench_search IMAGE QUERY.fvecs GT.ivecs EF[,EF...] [-k K] [-p PASSES] [-d PREFIX] [--dist-impl I] [-t T] [--resident]";
    let mut pos = Vec::new();
    let (mut k, mut passes, mut prefix, mut imp) = (10usize, 2usize, None::<String>, None::<Impl>);
    let mut threads = 1usize;
    let mut resident = false;
    let mut i = 1;
    while i < a.len() {
        if a[i] == "--resident" {
            resident = true;
            i += 1;
            continue;
        }
        let val = || a.get(i + 1).cloned().unwrap_or_else(|| die(usage));
        match a[i].as_str() {
            "-k" => k = val().parse().unwrap_or_else(|_| die(usage)),
            "-p" => passes = val().parse().unwrap_or_else(|_| die(usage)),
            "-d" => prefix = Some(val()),
            "-t" => threads = val().parse().unwrap_or_else(|_| die(usage)),
            "--dist-impl" => {
                let v = val();
                imp = Some(
                    Impl::ALL.into_iter().find(|x| x.name() == v).unwrap_or_else(|| die(format!("unknown impl {v}"))),
                );
            }
            _ => {
                pos.push(a[i].clone());
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    if pos.len() != 4 || k == 0 || passes == 0 || threads == 0 {
        die(usage);
    }
    let efs: Vec<usize> = pos[3].split(',').map(|x| x.parse().unwrap_or_else(|_| die("bad EF list"))).collect();
    let maxef = efs.iter().copied().max().unwrap_or(k).max(k);
    let queries = read_fvecs(&pos[1]).unwrap_or_else(|e| die(e));
    let gt = read_ivecs(&pos[2]).unwrap_or_else(|e| die(e));
    if gt.len() != queries.len() || gt.iter().any(|g| g.len() < k) {
        die("the ground truth does not match the queries (rows, or fewer than K ids)");
    }
    let tsc = Tsc::calibrate();
    let mut s = Searcher::open(&pos[0], maxef).unwrap_or_else(|e| die(format!("{}: {e}", pos[0])));
    if let Some(imp) = imp {
        s.set_distance_impl(imp).unwrap_or_else(|e| die(e));
    }
    if resident {
        s.load_vectors().unwrap_or_else(|e| die(e));
    }
    let used = s.image().device().distance_impl().name();
    // Inode -> base row, from the paths DIR/ROW.
    let rows: std::collections::HashMap<u64, u32> = s
        .paths()
        .unwrap_or_else(|e| die(e))
        .iter()
        .filter_map(|(&ino, p)| p.rsplit('/').next()?.parse().ok().map(|r| (ino, r)))
        .collect();

    let pass = |s: &mut Searcher, ef: usize, lat: &mut Vec<u64>| -> (u64, Vec<Vec<Hit>>) {
        lat.clear();
        let mut tot = 0u64;
        let mut all = Vec::with_capacity(queries.len());
        for q in &queries {
            let t = tsc.now_ns();
            let r = s.search(q, k, ef).unwrap_or_else(|e| die(e));
            let dt = tsc.now_ns().saturating_sub(t);
            lat.push(dt);
            tot += dt;
            all.push(r);
        }
        (tot, all)
    };
    let mut lat = Vec::new();
    let _ = pass(&mut s, maxef, &mut lat); // warm-up, untimed
                                           // The threaded passes' pads, made once (a fresh pad's first pass would fault its pages in).
    let mut pads: Vec<SearchPad> = (0..threads).map(|_| s.search_pad()).collect();
    let mut out = std::io::stdout().lock();
    for &ef in &efs {
        if ef < k {
            continue;
        }
        let (mut best, mut best_lat, mut first, mut unstable) = (u64::MAX, Vec::new(), Vec::new(), 0);
        for p in 0..passes {
            let (tot, res) = pass(&mut s, ef, &mut lat);
            if p == 0 {
                first = res;
            } else if res != first {
                unstable += 1;
            }
            if tot < best {
                best = tot;
                best_lat = lat.clone();
            }
        }
        let mut hits = 0usize;
        for (r, g) in first.iter().zip(&gt) {
            hits += r.iter().filter(|h| rows.get(&h.ino).is_some_and(|row| g[..k].contains(row))).count();
        }
        if let Some(pre) = &prefix {
            let path = format!("{pre}-{ef}.txt");
            let mut f =
                std::io::BufWriter::new(std::fs::File::create(&path).unwrap_or_else(|e| die(format!("{path}: {e}"))));
            for (q, r) in first.iter().enumerate() {
                for (i, h) in r.iter().enumerate() {
                    let _ = writeln!(f, "{q} {i} {} {} {:08x}", h.ino, h.chunk, h.distance().to_bits());
                }
            }
            f.flush().unwrap_or_else(|e| die(format!("{path}: {e}")));
        }
        best_lat.sort_unstable();
        let nq = queries.len();
        let _ = writeln!(
            out,
            "BENCH {{\"side\": \"user\", \"ef\": {ef}, \"k\": {k}, \"queries\": {nq}, \"passes\": {passes}, \
             \"recall\": {:.4}, \"qps\": {:.1}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"mean_us\": {:.1}, \
             \"unstable_passes\": {unstable}, \"distance_impl\": \"{used}\", \"tsc_mhz\": {:.3}}}",
            hits as f64 / (k * nq) as f64,
            nq as f64 * 1e9 / best as f64,
            pct(&best_lat, 50) as f64 / 1e3,
            pct(&best_lat, 99) as f64 / 1e3,
            best as f64 / nq as f64 / 1e3,
            tsc.per_ns * 1e3,
        );
        let _ = out.flush();
        if threads > 1 {
            let mt_passes = passes.saturating_mul(3);
            let (mut best1, mut best_t, mut identical) = (u64::MAX, u64::MAX, true);
            for _ in 0..mt_passes {
                for (t, best) in [(1, &mut best1), (threads, &mut best_t)] {
                    let (ns, same) = threaded(&s, &queries, k, ef, &mut pads[..t], &tsc, &first);
                    *best = (*best).min(ns);
                    identical &= same;
                }
            }
            for (t, best) in [(1, best1), (threads, best_t)] {
                let qps = nq as f64 * 1e9 / best.max(1) as f64;
                let _ = writeln!(
                    out,
                    "BENCH {{\"side\": \"user-mt\", \"threads\": {t}, \"ef\": {ef}, \"k\": {k}, \
                     \"queries\": {nq}, \"passes\": {mt_passes}, \"qps\": {qps:.1}, \"identical\": {identical}, \
                     \"distance_impl\": \"{used}\"}}"
                );
            }
            let _ = out.flush();
        }
    }
}

/// One pass of every query at `ef` by as many threads as `pads` at once, each with its own pad, each
/// taking the next query from a shared counter; returns the pass's wall-clock time (ns) and
/// whether its answers were `single`'s.
fn threaded(
    s: &Searcher,
    queries: &[Vec<f32>],
    k: usize,
    ef: usize,
    pads: &mut [SearchPad],
    tsc: &Tsc,
    single: &[Vec<Hit>],
) -> (u64, bool) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t0 = tsc.now_ns();
    let parts: Vec<Vec<(usize, Vec<Hit>)>> = std::thread::scope(|sc| {
        let handles: Vec<_> = pads
            .iter_mut()
            .map(|pad| {
                let next = &next;
                sc.spawn(move || {
                    let mut out = Vec::with_capacity(queries.len());
                    loop {
                        let q = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(query) = queries.get(q) else { break };
                        out.push((q, s.search_shared(pad, query, k, ef).unwrap_or_else(|e| die(e))));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| die("a search thread panicked"))).collect()
    });
    let ns = tsc.now_ns().saturating_sub(t0);
    (ns, parts.iter().flatten().all(|(q, r)| single.get(*q) == Some(r)))
}
