"""The host search benchmark of issue 9 (bench/search.sh runs it): the kernel's search code
(`core::vindex` through the image crate's Searcher, as `vexctl search-image`) over a bulk-loaded
image with float32 vectors only, over one with SQ8 codes (`mkfs.vexfs --quant sq8`) and over one
with PQ codes (`--quant pq`),
against hnswlib and faiss on the same data, in the same run: QPS at recall@10 0.90, 0.95 and
0.99 with one thread, and with T threads issuing queries at once.

    search.py run --data DIR --image f32=IMG --image sq8=IMG --bench-search BIN --out JSON
                  [--rounds R] [--passes P] [--threads T] [--efs LIST]
    search.py report JSON [--report REPORT.md]

Each round runs them all in a fresh process each, in an order rotated per round; every table
keeps the best QPS of all rounds and passes (machines here are noisy). hnswlib and faiss run
through bench/host.py's `lib` (one batch call per pass, in C++); vexfs through
image/examples/bench_search (a Rust loop, each search timed alone). Targets are read off the
sweeps: the smallest ef whose recall@10 reaches the target, with its QPS; nothing is
interpolated.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from host import DEFAULT_EFS, at_target, load  # noqa: E402
from report_section import markers, write_section  # noqa: E402

TARGETS = (0.90, 0.95, 0.99)
HOST_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "host.py")


def run_vexfs(a, image):
    cmd = [a.bench_search, image, os.path.join(a.data, "query.fvecs"), os.path.join(a.data, "groundtruth.ivecs"),
           a.efs, "-k", "10", "-p", str(a.passes), "--resident"]
    if a.threads > 1:
        cmd += ["-t", str(a.threads)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    sweep, sweep_mt, sweep_mt1, impl = [], [], [], None
    for line in out.splitlines():
        if not line.startswith("BENCH "):
            continue
        j = json.loads(line[6:])
        impl = j.get("distance_impl", impl)
        if j["side"] == "user":
            sweep.append({"ef": j["ef"], "recall": j["recall"], "qps": j["qps"]})
        else:
            row = {"ef": j["ef"], "qps": j["qps"], "same": j["identical"]}
            (sweep_mt1 if j["threads"] == 1 else sweep_mt).append(row)
    r = {"sweep": sweep, "impl": impl}
    if sweep_mt:
        r["sweep_mt"] = sweep_mt
        r["sweep_mt1"] = sweep_mt1
    return r


def run_lib(a, lib):
    cmd = [sys.executable, HOST_PY, "lib", lib, "--data", a.data, "--m", "16", "--ef-construction", "200",
           "--k", "10", "--efs", a.efs, "--passes", str(a.passes), "--threads", str(a.threads)]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_all(a):
    images = dict(kv.split("=", 1) for kv in a.image)
    names = ["hnswlib", "faiss"] + [f"vexfs-{k}" for k in images]
    base, query, _ = load(a.data)
    runs = {n: [] for n in names}
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t = time.time()
            res = run_vexfs(a, images[n[6:]]) if n.startswith("vexfs-") else run_lib(a, n)
            runs[n].append(res)
            best = max(s["qps"] for s in res["sweep"])
            print(f"[search] round {r + 1}/{a.rounds} {n:10s} best QPS {best:,.0f} ({time.time() - t:.0f} s)",
                  file=sys.stderr)
    out = {"data": a.data, "n": int(base.shape[0]), "dim": int(base.shape[1]), "queries": int(query.shape[0]),
           "started": started, "rounds": a.rounds, "passes": a.passes, "threads": a.threads, "efs": a.efs,
           "cpus": os.cpu_count(), "images": images, "runs": runs}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


def best_sweep(runs, key):
    """Best QPS per ef over the rounds (recall is deterministic: the lowest is kept)."""
    rows = []
    for i, s in enumerate(runs[0][key]):
        e = {"ef": s["ef"], "qps": max(r[key][i]["qps"] for r in runs)}
        if key == "sweep":
            e["recall"] = min(r[key][i]["recall"] for r in runs)
        else:
            e["same"] = all(r[key][i]["same"] for r in runs)
        rows.append(e)
    return rows


def with_recall(mt, single):
    """The multi-thread sweep with each ef's single-thread recall (the answers are the same)."""
    rec = {s["ef"]: s["recall"] for s in single}
    return [dict(s, recall=rec[s["ef"]]) for s in mt]


LABELS = {"hnswlib": "hnswlib", "faiss": "faiss (IndexHNSWFlat)",
          "vexfs-f32": "vexfs: core::vindex, float32 walk", "vexfs-sq8": "vexfs: core::vindex, SQ8 walk + float re-rank",
          "vexfs-pq": "vexfs: core::vindex, PQ walk + float re-rank"}


def report(a):
    res = json.load(open(a.results))
    name = os.path.basename(os.path.normpath(res["data"]))
    runs = res["runs"]
    single = {n: best_sweep(rs, "sweep") for n, rs in runs.items()}
    multi = {n: with_recall(best_sweep(rs, "sweep_mt"), single[n]) for n, rs in runs.items()
             if all("sweep_mt" in r for r in rs)}
    # vexfs's 1-thread passes through the threaded harness, interleaved with its T-thread ones:
    # the concurrency ratio compares these two (results of older runs have none: the timed-alone
    # single-thread sweep stands in).
    multi1 = {n: with_recall(best_sweep(rs, "sweep_mt1"), single[n]) for n, rs in runs.items()
              if all(r.get("sweep_mt1") for r in rs)}
    t = res["threads"]
    impl = next((r["impl"] for n, rs in runs.items() if n.startswith("vexfs") for r in rs if r.get("impl")), "?")
    lines = [f"## Host search: the kernel's search code against hnswlib and faiss, {name} (issue 9)", ""]
    lines.append(
        f"Written by `bench/search.sh` from a run started {res['started']} on {res['cpus']} CPUs. Data: {name}, "
        f"{res['n']:,} × {res['dim']} float32, {res['queries']:,} queries, l2, k = 10; HNSW m = 16, "
        "ef_construction = 200 everywhere. vexfs is the kernel's search code in userspace "
        "(`core::vindex` through the image crate's `Searcher`, what `vexctl search-image --resident` runs, with "
        f"this CPU's distance kernels: {impl}; the image's vector regions copied into memory on transparent "
        "huge pages first, as the module reads its index blocks through the kernel's direct map, mapped "
        "with 2 MiB and 1 GiB pages, not through a 4 KiB file mapping) over images bulk-loaded by `mkfs.vexfs --import` "
        "from the same rows and seed: one with float32 vectors only, one made "
        "with `--quant sq8`, whose searches walk the graph (built on the codes) on the SQ8 codes' integer distances and "
        "re-rank their nearest candidates with the float32 distances (the distances returned are exact)"
        + (", one made with `--quant pq` (mkfs.vexfs's default code: a byte per 4 components, 96 bytes for 384-d, 25 for 100-d; the same graph as float32's), whose "
           "searches walk the PQ codes' table distances and re-rank likewise" if "vexfs-pq" in runs else "")
        + f". {res['rounds']} round(s), each library and image in fresh processes in an order rotated per round, "
        f"{res['passes']} pass(es) per ef; QPS is the best pass of all rounds. hnswlib and faiss answer each "
        "pass in one batch call (a loop in C++); vexfs in a Rust loop, each search timed alone. Each cell: "
        "QPS at the smallest ef whose recall@10 reaches the target (× hnswlib's QPS at its own smallest such ef)."
        + (" In the rows of several threads at once, vexfs's passes are timed whole (wall clock, threads "
           "taking the next query from a shared counter), three times as many, each right after a 1-thread "
           "pass of the same harness; the concurrency verdicts compare these two." if any(
               r.get("sweep_mt1") for rs in runs.values() for r in rs) else ""))
    lines.append("")

    def cells(sweeps, n):
        out = []
        for tg in TARGETS:
            s, h = at_target(sweeps[n], tg), at_target(sweeps["hnswlib"], tg)
            if s is None:
                out.append("not reached")
                continue
            ratio = f" (**{s['qps'] / h['qps']:.2f}×**)" if h and n != "hnswlib" else ""
            out.append(f"{s['qps']:,.0f} at ef {s['ef']}, recall {s['recall']:.3f}{ratio}")
        return out

    for title, sweeps in ((("one thread", single),) + (((f"{t} threads at once", multi),) if multi else ())):
        lines.append(f"**{title}**")
        lines.append("")
        lines.append("| | " + " | ".join(f"QPS @ recall@10 {tg:.2f}" for tg in TARGETS) + " |")
        lines.append("|:---|" + "---:|" * len(TARGETS))
        for n in sweeps:
            lines.append(f"| {LABELS.get(n, n)} | " + " | ".join(cells(sweeps, n)) + " |")
        lines.append("")
    if multi:
        same = all(s["same"] for n, sw in multi.items() if n.startswith("vexfs") for s in sw)
        lines.append(f"vexfs's threaded answers equal its single-thread ones at every ef: {'yes' if same else '**no**'}.")
        lines.append("")
    lines.append("| ef | " + " | ".join(f"{LABELS.get(n, n).split(':')[-1].strip()} recall / QPS" for n in single) + " |")
    lines.append("|---:|" + "---:|" * len(single))
    for i, s in enumerate(single["hnswlib"]):
        row = []
        for n in single:
            x = single[n][i]
            row.append(f"{x['recall']:.4f} / {x['qps']:,.0f}")
        lines.append(f"| {s['ef']} | " + " | ".join(row) + " |")
    lines.append("")

    lines.append("| target (issue 9) | verdict | numbers |")
    lines.append("|:---|:---|:---|")
    h = single["hnswlib"]
    # The float32 image first: the one whose bytes per vector meet the memory target (the SQ8
    # image stores its codes beside the float32 vectors).
    for n, walk in (("vexfs-f32", "float32"), ("vexfs-sq8", "SQ8")):
        sweep = single.get(n)
        if not sweep:
            continue
        for tg, need in ((0.95, 1.3), (0.90, 1.0), (0.99, 1.0)):
            s, hh = at_target(sweep, tg), at_target(h, tg)
            if not s or not hh:
                lines.append(f"| {walk} walk ≥ {need}× hnswlib at recall {tg:.2f} | not met | not reached |")
                continue
            r = s["qps"] / hh["qps"]
            lines.append(f"| the kernel's search code ({walk} walk) ≥ {need}× hnswlib's single-thread QPS at "
                         f"recall@10 {tg:.2f} | {'**met**' if r >= need else 'not met'} | {s['qps']:,.0f} "
                         f"(ef {s['ef']}) vs {hh['qps']:,.0f} (ef {hh['ef']}): {r:.2f}× |")
    for n in ("vexfs-sq8", "vexfs-f32"):
        if n in multi and t >= 2:
            s1, sm = at_target(multi1.get(n, single[n]), 0.95), at_target(multi[n], 0.95)
            if s1 and sm:
                r = sm["qps"] / s1["qps"]
                how = "the same harness's 1-thread passes" if n in multi1 else "the single-thread sweep"
                lines.append(f"| {t} concurrent searchers ≥ 1.8× one searcher's QPS (host, {LABELS[n].split(', ')[-1]}, "
                             f"ef {s1['ef']}) | {'**met**' if r >= 1.8 else 'not met'} | "
                             f"{sm['qps']:,.0f} vs {s1['qps']:,.0f} ({how}): {r:.2f}× |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.report:
        write_section(a.report, text, *markers(f"bench/search.py {name}"))
        print(f"search.py: section written to {a.report}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("run")
    s.add_argument("--data", required=True)
    s.add_argument("--image", action="append", required=True, help="NAME=IMAGE (f32=..., sq8=...)")
    s.add_argument("--bench-search", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--passes", type=int, default=2)
    s.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    s.add_argument("--efs", default=DEFAULT_EFS)
    s = sub.add_parser("report")
    s.add_argument("results")
    s.add_argument("--report")
    a = ap.parse_args()
    {"run": run_all, "report": report}[a.cmd](a)


if __name__ == "__main__":
    main()
