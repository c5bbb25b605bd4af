#!/usr/bin/env python3
"""The bulk-build benchmark (issue 10, item 5): `mkfs.vexfs --import -j T` against hnswlib's and
faiss's HNSW builds with the same thread count, on the same vectors, in one run (driven by
bench/bulk.sh).

  bulk.py lib {hnswlib,faiss} --data DIR --threads T [--efs ...] [--m M] [--ef-construction E]
      One build in this process (T threads, timed: the inserts only), then recall@10 at each ef
      (single-threaded queries); prints one JSON object.
  bulk.py run --data DIR --mkfs BIN --vexctl BIN --fsck BIN --work DIR --out results.json
              [--threads 1,2] [--libs vexfs,vexfs-float,vexfs-build-sq8,vexfs-sq8,vexfs-pq,hnswlib,faiss]
              [--rounds R] [--efs ...]
      R rounds; each builds with every thread count with each library: vexfs (`mkfs.vexfs
      --import --import-dir docs --metric l2 --seed 1 -j T`, a new image in --work, its own
      reported files and links times, the choice of `--build-on auto`, its index bytes from
      `vexctl inspect` and its peak RSS; then `vexctl search-image --all --json --resident --ef
      E` for the recall and `--stats` for the single-thread QPS), the other vexfs builders (VEXFS_OPTS:
      the same with their options), hnswlib and faiss (each `bulk.py lib` in a fresh process,
      their serialized index's size as their index bytes), in an order rotated per round.
  bulk.py report results.json [--report REPORT.md]
      Prints the table (best build time of the rounds; recall is the same every round for a
      given build) and writes the "Bulk build" section of REPORT.md.

The graph parameters are the same for all but vexfs-pq (m 32, mkfs.vexfs's default with node
records): m = 16, ef_construction = 200, metric l2.
recall@10 = |found ∩ first 10 ids of the ground truth| / 10, averaged over the queries; vexfs's
file i holds row i, so a path's last component is its row.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from host import load, recall  # noqa: E402  (the data and recall of the host benchmark)
from report_section import write_section  # noqa: E402

BEGIN = "<!-- bench/bulk.sh: begin -->"
END = "<!-- bench/bulk.sh: end -->"
K = 10
# The issue's targets for a build of 1M x 384 on 2 cores.
TARGET_SECS = 300
TARGET_ROWS = 1_000_000
# The vexfs builds: the default (`--quant none`, `--build-on auto`: the graph on transient SQ8
# codes or on the floats, as a sample of the rows decides; mkfs.vexfs says which), float32
# vectors with the graph built on the floats (`--build-on float`) or on transient SQ8 codes
# (`--build-on sq8`), with SQ8 codes kept (`--quant sq8`), and with PQ codes (`--quant pq`, its
# default node records and m 32, trained on the rows).
VEXFS = ("vexfs", "vexfs-float", "vexfs-build-sq8", "vexfs-sq8", "vexfs-pq")
# Each one's mkfs.vexfs options (--train is added for vexfs-pq).
VEXFS_OPTS = {"vexfs": ["--quant", "none"], "vexfs-float": ["--quant", "none", "--build-on", "float"],
              "vexfs-build-sq8": ["--quant", "none", "--build-on", "sq8"], "vexfs-sq8": ["--quant", "sq8"],
              "vexfs-pq": ["--quant", "pq"]}
# The vector regions: what a search of the index holds when it is all in memory.
INDEX_REGIONS = ("vector bitmap", "vector map", "vector data", "hnsw index", "vector codes")


def gt_ids(gt):
    return [row[:K].tolist() for row in gt]


# ---- one library in this process ---------------------------------------------------------------

def run_lib(a):
    base, query, gt = load(a.data)
    n, dim = base.shape
    efs = [int(x) for x in a.efs.split(",")]
    out = {"library": a.lib, "threads": a.threads, "n": n, "dim": dim}
    if a.lib == "hnswlib":
        import hnswlib
        t = time.perf_counter()
        index = hnswlib.Index(space="l2", dim=dim)
        index.init_index(max_elements=n, M=a.m, ef_construction=a.ef_construction, random_seed=100)
        index.set_num_threads(a.threads)
        index.add_items(base, num_threads=a.threads)
        out["build_secs"] = time.perf_counter() - t

        path = os.path.join(a.work, "bulk-hnswlib.bin")
        index.save_index(path)
        out["index_bytes"] = os.path.getsize(path)
        os.remove(path)

        def search(ef):
            index.set_ef(ef)
            return index.knn_query(query, k=K, num_threads=1)[0]
    else:
        import faiss
        faiss.omp_set_num_threads(a.threads)
        t = time.perf_counter()
        index = faiss.IndexHNSWFlat(dim, a.m, faiss.METRIC_L2)
        index.hnsw.efConstruction = a.ef_construction
        index.add(base)
        out["build_secs"] = time.perf_counter() - t
        out["index_bytes"] = int(faiss.serialize_index(index).size)
        faiss.omp_set_num_threads(1)

        def search(ef):
            index.hnsw.efSearch = ef
            return index.search(query, K)[1]
    out["sweep"] = []
    for ef in efs:
        t = time.perf_counter()
        ids = search(ef)
        secs = time.perf_counter() - t
        out["sweep"].append({"ef": ef, "recall": recall(ids, gt, K), "qps": len(query) / secs})
    out["peak_rss_bytes"] = peak_rss_self()
    print(json.dumps(out))


def peak_rss_self():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


# ---- vexfs: mkfs.vexfs --import, then search-image ---------------------------------------------

def run_vexfs(a, threads, efs, gt, lib, n):
    img = os.path.join(a.work, f"bulk-{lib}-j{threads}.img")
    if os.path.exists(img):
        os.remove(img)
    base = os.path.join(a.data, "base.fvecs")
    size = os.path.getsize(base) // 1048576 * 3 + 256
    cmd = [a.mkfs, "--import", base, "--import-dir", "docs", "--metric", "l2", "--seed", "1",
           *VEXFS_OPTS[lib], "-j", str(threads), img, f"{size}M"]
    if lib == "vexfs-pq":
        cmd[-2:-2] = ["--train", base]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    stdout, stderr = p.stdout.read(), p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stdout}{stderr}")
    m = re.search(r"files in ([0-9.]+) s .*vectors linked in ([0-9.]+) s", stdout)
    if not m:
        raise SystemExit(f"no phase times in mkfs.vexfs's output:\n{stdout}")
    out = {"library": lib, "threads": threads, "build_secs": wall,
           "files_secs": float(m.group(1)), "links_secs": float(m.group(2)),
           "peak_rss_bytes": usage.ru_maxrss * 1024, "sweep": []}
    built = re.search(r"^Build: +(.*)$", stdout, re.M)
    if built:
        out["build_on"] = built.group(1).strip()
    ins = json.loads(subprocess.run([a.vexctl, "inspect", "--json", img], capture_output=True, text=True,
                                    check=True).stdout)
    regions = sum(r["bytes"] for r in ins["regions"] if r["name"] in INDEX_REGIONS)
    # The regions are sized for the slots (a quarter more than the rows): the rows' share.
    out["index_bytes"] = regions * n // ins["vec_capacity"]
    c = re.search(r"journal commits ([0-9.]+) s and ([0-9.]+) s", stdout)
    if c:
        out["files_commit_secs"], out["links_commit_secs"] = float(c.group(1)), float(c.group(2))
    query = os.path.join(a.data, "query.fvecs")
    for ef in efs:
        # --resident: the regions in memory before the first query, as hnswlib's and faiss's
        # indexes are (without it the first ef's pass pays the image's page faults).
        r = subprocess.run([a.vexctl, "search-image", img, "--fvecs", query, "--all", "-k", str(K),
                            "--ef", str(ef), "--json", "--stats", "--resident"],
                           capture_output=True, text=True, check=True)
        found = []
        for line in r.stdout.splitlines():
            o = json.loads(line)
            found.append([int(x["path"].rsplit("/", 1)[1]) for x in o["results"]])
        hits = sum(len(set(f) & set(g)) for f, g in zip(found, gt))
        q = re.search(r"([0-9.]+) (?:searches|queries)/s", r.stderr)
        out["sweep"].append({"ef": ef, "recall": hits / (K * len(gt)), "qps": float(q.group(1)) if q else None})
    fsck = subprocess.run([a.fsck, "-n", img],
                          capture_output=True, text=True)
    out["fsck_exit"] = fsck.returncode
    os.remove(img)
    return out


def run_all(a):
    threads = [int(x) for x in a.threads.split(",")]
    efs = [int(x) for x in a.efs.split(",")]
    base, query, gt = load(a.data)
    n, dim = base.shape
    del base
    gt = gt_ids(gt)
    os.makedirs(a.work, exist_ok=True)
    results = {"data": a.data, "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
               "threads": threads, "efs": efs, "runs": [], "machine": machine(),
               "n": int(n), "dim": int(dim), "queries": len(query)}
    order = a.libs.split(",")
    for r in range(a.rounds):
        libs = order[r % len(order):] + order[:r % len(order)]
        for t in threads:
            for lib in libs:
                print(f"bulk: round {r + 1}/{a.rounds}, {lib}, {t} thread(s)", file=sys.stderr, flush=True)
                if lib.startswith("vexfs"):
                    o = run_vexfs(a, t, efs, gt, lib, int(n))
                else:
                    p = subprocess.run([sys.executable, os.path.abspath(__file__), "lib", lib, "--data", a.data,
                                        "--threads", str(t), "--efs", a.efs, "--work", a.work],
                                       capture_output=True, text=True)
                    if p.returncode != 0:
                        raise SystemExit(f"bulk.py lib {lib} failed:\n{p.stderr}")
                    o = json.loads(p.stdout.splitlines()[-1])
                o["round"] = r
                results["runs"].append(o)
                print(f"bulk:   build {o['build_secs']:.1f} s", file=sys.stderr, flush=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release()}


# ---- report ------------------------------------------------------------------------------------

def best(runs, lib, t):
    rs = [r for r in runs if r["library"] == lib and r["threads"] == t]
    return min(rs, key=lambda r: r["build_secs"]) if rs else None


def fmt_secs(s):
    return f"{s:,.1f}"


def report(a):
    res = json.load(open(a.results))
    runs, n, dim, queries = res["runs"], res["n"], res["dim"], res["queries"]
    rounds = 1 + max(r["round"] for r in runs)
    name = os.path.basename(os.path.normpath(res["data"]))
    efs = res["efs"]
    lines = ["## Bulk build: `mkfs.vexfs --import -j` against hnswlib and faiss (issue 10)", ""]
    lines.append(
        f"Written by `bench/bulk.sh` from a run started {res['started']} on {res['machine']['cpus']} CPUs "
        f"({res['machine']['cpu']}). Data: {name}, {n:,} × {dim} float32, {queries:,} queries, "
        f"l2; m = 16, ef_construction = 200 for all but vexfs-pq (m 32, its default). {rounds} round(s); "
        "each builds with every thread "
        "count with every builder (each in a fresh process, in an order rotated per round); the "
        "table keeps each one's fastest build. vexfs's build is the whole `mkfs.vexfs --import` "
        "(format, one file per row, every vector linked, synced through the journal: the wall time of "
        "the process), with its two phases as it reports them. The vexfs builders: vexfs, the default "
        "(`--quant none`, `--build-on auto`: the graph built on SQ8 codes held in memory for the build "
        "only, or on the floats, by how well the codes keep a sample's neighbours; below, which it chose); "
        "vexfs-float, `--build-on float`; vexfs-build-sq8, `--build-on sq8`; vexfs-sq8, `--quant sq8` "
        "(the graph built on the SQ8 codes it keeps, searches walking them and re-ranking their nearest "
        "at full precision); vexfs-pq, `--quant pq` (PQ codes of mkfs.vexfs's default size, a byte per "
        "four components, trained on the rows; node records: searches walk the codes, each expanded node's "
        "record gives its exact distance). "
        "hnswlib's and faiss's builds are their "
        "inserts into an index in memory. Ratio = hnswlib's build time ÷ the builder's at the same "
        "thread count (above 1: faster than hnswlib). recall@10 and queries/s are from single-threaded "
        "queries (vexfs: `vexctl search-image --resident`, the kernel's search code in userspace, the "
        "image's vector regions loaded in memory first, as the libraries' indexes are). Index MiB per million vectors: vexfs, the bytes of its vector regions (bitmap, map, "
        "vectors or node records, HNSW, codes) for the rows (the regions are sized for the slots, a quarter "
        "more), what a search holds when the whole index is in memory; hnswlib and faiss, their serialized "
        "index. Peak RSS is the process's (vexfs: mkfs.vexfs, which holds the vector regions in its cache).")
    lines.append("")
    head = "| threads | library | build s | files s | links s | vectors/s | hnswlib ÷ | " + \
        " | ".join(f"recall@10 / QPS ef {e}" for e in efs) + " | index MiB / 1M | peak RSS MiB |"
    lines.append(head)
    lines.append("|" + "---:|" * 2 + "---:|" * (7 + len(efs)))
    verdicts = []
    for t in res["threads"]:
        h = best(runs, "hnswlib", t)
        for lib in VEXFS + ("hnswlib", "faiss"):
            b = best(runs, lib, t)
            if not b:
                continue
            ratio = f"{h['build_secs'] / b['build_secs']:.2f}" if h else "-"
            files = fmt_secs(b["files_secs"]) if "files_secs" in b else "-"
            links = fmt_secs(b["links_secs"]) if "links_secs" in b else "-"
            rec = " | ".join(f"{s['recall']:.4f} / " + (f"{s['qps']:,.0f}" if s.get("qps") else "-")
                             for s in b["sweep"])
            mem = f"{b['index_bytes'] * 1_000_000 / n / 1048576:,.0f}" if b.get("index_bytes") else "-"
            lines.append(f"| {t} | {lib} | {fmt_secs(b['build_secs'])} | {files} | {links} | "
                         f"{n / b['build_secs']:,.0f} | {ratio} | {rec} | {mem} | "
                         f"{b['peak_rss_bytes'] / 1048576:,.0f} |")
        # The build targets compare builds of the same graph parameters (vexfs-pq's m is 32).
        for lib in VEXFS:
            v = best(runs, lib, t)
            if v and h and lib != "vexfs-pq":
                verdicts.append((t, v, h))
    lines.append("")
    chose = [(lib, b["build_on"]) for lib in VEXFS for t in res["threads"]
             if (b := best(runs, lib, t)) and b.get("build_on")]
    if chose:
        lines.append("What mkfs.vexfs said it built on: " + "; ".join(
            f"{lib}: {how}" for lib, how in dict(chose).items()) + ".")
    lines.append("")
    fsck = sorted({r["fsck_exit"] for r in runs if r["library"] in VEXFS})
    lines.append(f"`fsck.vexfs -n` exit status of every vexfs image: {', '.join(map(str, fsck))} (0: clean).")
    lines.append("")
    lines.append("| target | verdict | numbers |")
    lines.append("|:---|:---|:---|")
    for t, v, h in verdicts:
        if t != 2:
            continue
        scale = "" if n >= TARGET_ROWS else f" (for information: {n:,} rows, the target is for {TARGET_ROWS:,})"
        ok = v["build_secs"] < TARGET_SECS and n >= TARGET_ROWS
        who = v["library"]
        lines.append(f"| {who}: bulk build of 1M × 384 on 2 cores in under 5 min{scale} | "
                     f"{'**met**' if ok else ('not met' if n >= TARGET_ROWS else '-')} | "
                     f"{fmt_secs(v['build_secs'])} s for {n:,} rows |")
        ok = v["build_secs"] <= h["build_secs"]
        lines.append(f"| {who}: no slower than hnswlib's build with the same threads (2) | "
                     f"{'**met**' if ok else 'not met'} | {who} {fmt_secs(v['build_secs'])} s (links "
                     f"{fmt_secs(v['links_secs'])} s) vs hnswlib {fmt_secs(h['build_secs'])} s: "
                     f"{h['build_secs'] / v['build_secs']:.2f}×; recall@10 "
                     + ", ".join(f"ef {x['ef']} {x['recall']:.4f} vs {y['recall']:.4f}"
                                 for x, y in zip(v["sweep"], h["sweep"])) + " |")
    for t in res["threads"]:
        pq = best(runs, "vexfs-pq", t)
        if pq:
            lines.append(f"| (for information) vexfs-pq's build, {t} thread(s), m 32 (the others' is 16) | - | "
                         f"{fmt_secs(pq['build_secs'])} s (files {fmt_secs(pq['files_secs'])} s, links "
                         f"{fmt_secs(pq['links_secs'])} s, the rest formatting and training the codebook) |")
        for lib in VEXFS:
            v = best(runs, lib, t)
            if v and "files_commit_secs" in v:
                lines.append(f"| (for information) {lib}'s journal commits, {t} thread(s) | - | "
                             f"{fmt_secs(v['files_commit_secs'])} s of the files phase, "
                             f"{fmt_secs(v['links_commit_secs'])} s of the links phase |")
    one = best(runs, "vexfs", 1)
    two = best(runs, "vexfs", 2)
    if one and two:
        lines.append(f"| (for information) vexfs's links phase with 2 threads | - | "
                     f"{one['links_secs'] / two['links_secs']:.2f}× the speed of 1 thread |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.report:
        write_section(a.report, text, BEGIN, END)
        print(f"bulk.py: section written to {a.report}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("lib")
    s.add_argument("lib", choices=["hnswlib", "faiss"])
    s.add_argument("--data", required=True)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--efs", default="16,32,64")
    s.add_argument("--m", type=int, default=16)
    s.add_argument("--ef-construction", type=int, default=200)
    s.add_argument("--work", default="/tmp")
    s = sub.add_parser("run")
    s.add_argument("--data", required=True)
    s.add_argument("--mkfs", required=True)
    s.add_argument("--vexctl", required=True)
    s.add_argument("--fsck", required=True)
    s.add_argument("--work", required=True)
    s.add_argument("--libs", default="vexfs,hnswlib,faiss")
    s.add_argument("--out", required=True)
    s.add_argument("--threads", default="1,2")
    s.add_argument("--rounds", type=int, default=1)
    s.add_argument("--efs", default="16,32,64")
    s = sub.add_parser("report")
    s.add_argument("results")
    s.add_argument("--report")
    a = ap.parse_args()
    {"lib": run_lib, "run": run_all, "report": report}[a.cmd](a)


if __name__ == "__main__":
    main()
