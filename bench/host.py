#!/usr/bin/env python3
"""vexfs benchmarks, host side, and the report (driven by scripts/bench).

  host.py lib {hnswlib,faiss} --data DIR [--efs ...] [--passes P] [--m M] [--ef-construction E]
      One round of one library in this process: load the data, build (single thread, timed;
      VmRSS before and after), ef sweep, serialized size. Prints one JSON object shaped like
      core/examples/bench_core.rs's.
  host.py run --data DIR --core-bin BIN --out host.json [--rounds R] [--passes P] [--efs ...]
      R rounds; each runs the three libraries (vexfs-core through BIN, hnswlib, faiss) in a fresh
      process each, in an order rotated per round. Keeps every number; the report takes the
      best build time and the best QPS per ef over the rounds (the machine is noisy).
  host.py report --host host.json [--guest guest.jsonl] --out REPORT.md [--wall-secs S] [--data-name N]
                 [--section NAME]
      Prints the tables and writes the Markdown report with the target verdicts: the top of
      REPORT.md (its marked sections kept after it), or with --section NAME the whole report, its
      headings one level down, as the section `<!-- scripts/bench NAME: begin -->` ... `end -->`
      of REPORT.md (replaced if there, else appended; the rest of the file kept as it is).

Metric: l2 everywhere (squared Euclidean: ours, hnswlib's "l2" space and faiss's METRIC_L2 are
the same); recall@k = |found ∩ first k ids of the ground truth| / k, averaged over the queries.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report_section import markers, sections, write_section  # noqa: E402

DEFAULT_EFS = "10,12,14,16,20,24,28,32,40,48,56,64,80,96,128,160,192,256,384,512"
TARGETS = (0.90, 0.95, 0.99)
LIBS = ("vexfs-core", "hnswlib", "faiss")
# The vector regions of an image without codes, whose bytes per slot the on-disk rows count
# (an SQ8 image adds "vector codes").
F32_REGIONS = ("vector bitmap", "vector map", "vector data", "hnsw index")


# ---- data --------------------------------------------------------------------------------------

def read_vecs(path, dtype):
    import numpy as np
    a = np.fromfile(path, dtype=np.int32)
    d = int(a[0])
    a = a.reshape(-1, d + 1)
    if not (a[:, 0] == d).all():
        raise SystemExit(f"{path}: rows of different widths")
    return np.ascontiguousarray(a[:, 1:]).view(dtype)


def load(data):
    import numpy as np
    base = read_vecs(os.path.join(data, "base.fvecs"), np.float32)
    query = read_vecs(os.path.join(data, "query.fvecs"), np.float32)
    gt = read_vecs(os.path.join(data, "groundtruth.ivecs"), np.int32)
    return base, query, gt


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def recall(ids, gt, k):
    hits = 0
    for found, truth in zip(ids, gt):
        hits += len(set(found[:k].tolist()) & set(truth[:k].tolist()))
    return hits / (k * len(gt))


# ---- one library, one round --------------------------------------------------------------------

def run_lib(a):
    base, query, gt = load(a.data)
    n, dim = base.shape
    k = a.k
    efs = [int(x) for x in a.efs.split(",") if int(x) >= k]
    out = {"library": a.lib, "n": n, "dim": dim, "queries": len(query), "k": k, "m": a.m,
           "ef_construction": a.ef_construction}
    if a.lib == "hnswlib":
        import hnswlib
        rss0 = rss_bytes()
        t = time.perf_counter()
        index = hnswlib.Index(space="l2", dim=dim)
        index.init_index(max_elements=n, M=a.m, ef_construction=a.ef_construction, random_seed=100)
        index.set_num_threads(1)
        index.add_items(base, num_threads=1)
        out["build_secs"] = time.perf_counter() - t
        out["rss_growth_bytes"] = rss_bytes() - rss0

        def search(ef, threads=1):
            index.set_ef(ef)
            labels, _ = index.knn_query(query, k=k, num_threads=threads)
            return labels

        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "index.bin")
            index.save_index(p)
            out["serialized_bytes"] = os.path.getsize(p)
    elif a.lib == "faiss":
        import faiss
        faiss.omp_set_num_threads(1)
        rss0 = rss_bytes()
        t = time.perf_counter()
        index = faiss.IndexHNSWFlat(dim, a.m, faiss.METRIC_L2)
        index.hnsw.efConstruction = a.ef_construction
        index.add(base)
        out["build_secs"] = time.perf_counter() - t
        out["rss_growth_bytes"] = rss_bytes() - rss0

        def search(ef, threads=1):
            index.hnsw.efSearch = ef
            faiss.omp_set_num_threads(threads)
            _, labels = index.search(query, k)
            faiss.omp_set_num_threads(1)
            return labels

        out["serialized_bytes"] = int(faiss.serialize_index(index).size)
    else:
        raise SystemExit(f"unknown library {a.lib}")
    out["raw_vector_bytes"] = n * dim * 4
    sweep = []
    for ef in efs:
        best = float("inf")
        rec = None
        for p in range(max(1, a.passes)):
            # One call for all queries, single thread: the library loops over them in C++, so
            # no Python overhead per query (ours loops in Rust).
            t = time.perf_counter()
            labels = search(ef)
            best = min(best, time.perf_counter() - t)
            if p == 0:
                rec = recall(labels, gt, k)
        sweep.append({"ef": ef, "recall": round(rec, 4), "qps": round(len(query) / best, 1)})
    out["sweep"] = sweep
    # The same queries from `threads` threads at once (the library splits the batch between
    # them): QPS of the best pass, and whether the answers are the single-thread ones.
    if a.threads > 1:
        sweep_mt = []
        for ef in efs:
            best, same = float("inf"), True
            single = search(ef)
            for _ in range(max(1, a.passes)):
                t = time.perf_counter()
                labels = search(ef, a.threads)
                best = min(best, time.perf_counter() - t)
                same &= bool((labels == single).all())
            sweep_mt.append({"ef": ef, "qps": round(len(query) / best, 1), "same": same})
        out["threads"] = a.threads
        out["sweep_mt"] = sweep_mt
    print(json.dumps(out))


# ---- all rounds --------------------------------------------------------------------------------

def run_all(a):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rounds = {lib: [] for lib in LIBS}
    for r in range(a.rounds):
        order = LIBS[r % 3:] + LIBS[:r % 3]
        for lib in order:
            if lib == "vexfs-core":
                cmd = [a.core_bin, *(os.path.join(a.data, f) for f in
                       ("base.fvecs", "query.fvecs", "groundtruth.ivecs")),
                       "--m", str(a.m), "--ef-construction", str(a.ef_construction),
                       "--k", str(a.k), "--efs", a.efs, "--passes", str(a.passes)]
            else:
                cmd = [sys.executable, os.path.abspath(__file__), "lib", lib, "--data", a.data,
                       "--m", str(a.m), "--ef-construction", str(a.ef_construction),
                       "--k", str(a.k), "--efs", a.efs, "--passes", str(a.passes),
                       "--threads", str(a.threads)]
            t = time.time()
            res = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True)
            j = json.loads(res.stdout.strip().splitlines()[-1])
            rounds[lib].append(j)
            print(f"[bench] round {r + 1}/{a.rounds} {lib:10s} build {j['build_secs']:6.2f} s, "
                  f"sweep of {len(j['sweep'])} ef ({time.time() - t:.0f} s)", file=sys.stderr)
    with open(a.out, "w") as f:
        json.dump({"rounds": a.rounds, "passes": a.passes, "efs": a.efs, "k": a.k, "m": a.m,
                   "ef_construction": a.ef_construction, "data": a.data, "runs": rounds}, f, indent=1)


# ---- report ------------------------------------------------------------------------------------

def combine(runs):
    """Best build time and best QPS per ef over the rounds; recall must not vary."""
    c = {"build_secs": min(r["build_secs"] for r in runs),
         "build_secs_all": [r["build_secs"] for r in runs], "sweep": [], "recall_varies": []}
    for i, s in enumerate(runs[0]["sweep"]):
        recs = [r["sweep"][i]["recall"] for r in runs]
        qps = [r["sweep"][i]["qps"] for r in runs]
        if len(set(recs)) > 1:
            c["recall_varies"].append((s["ef"], recs))
        c["sweep"].append({"ef": s["ef"], "recall": min(recs), "qps": max(qps), "qps_all": qps})
    if all("sweep_mt" in r for r in runs):
        c["threads"] = runs[0]["threads"]
        c["sweep_mt"] = [{"ef": s["ef"], "qps": max(r["sweep_mt"][i]["qps"] for r in runs),
                          "same": all(r["sweep_mt"][i]["same"] for r in runs)}
                         for i, s in enumerate(runs[0]["sweep_mt"])]
    for key in ("memory_bytes", "rss_growth_bytes", "serialized_bytes", "raw_vector_bytes",
                "link_bytes", "upper_lists", "impl", "n", "dim", "queries", "rss_growth_trimmed_bytes"):
        if key in runs[0]:
            vals = [r[key] for r in runs]
            c[key] = min(vals) if key.startswith("rss_growth") else vals[0]
    return c


def at_target(sweep, target):
    for s in sweep:
        if s["recall"] >= target:
            return s
    return None


def fmt_qps(s):
    return "not reached" if s is None else f"{s['qps']:,.0f} (ef {s['ef']}, recall {s['recall']:.3f})"


def table(headers, rows, align=None):
    align = align or ["r"] * len(headers)
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join(("---:" if x == "r" else ":---") for x in align) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True).stdout.strip()
    except OSError:
        return ""


def versions():
    from importlib import metadata
    v = {}
    for p in ("hnswlib", "faiss-cpu", "numpy"):
        try:
            v[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            v[p] = "not installed"
    v["rustc"] = sh("rustc --version")
    v["cc"] = sh("cc --version | head -n 1")
    v["python"] = platform.python_version()
    v["host kernel"] = platform.release()
    v["qemu"] = sh("qemu-system-x86_64 --version | head -n 1")
    return v


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def concurrent_section(guest, w):
    """The guest's searches during an import (bench/guest-run.sh, CONC_EF): QPS and recall@10 at
    one ef on the idle index, during the import and linking of the negated base set, and after;
    the import's rate alone and during the searches."""
    conc = [g for g in guest if g.get("side", "").startswith("conc-")]
    imports = {g["searches"]: g for g in conc if g["side"] == "conc-import"}
    one = [g for g in conc if g["side"] == "conc-kernel"]
    if not one or len(imports) != 2:
        return
    multi = [g for g in conc if g["side"] == "conc-kernel-mt" and g["threads"] > 1]
    stats = [g for g in conc if g["side"] == "conc-kernel-stats"]
    ef = one[0]["ef"]
    t = multi[0]["threads"] if multi else 1
    w("### Searches during a concurrent import\n")
    w("A second image (/dev/vdb, formatted for twice the rows): `vexctl import` of the base set "
      "into /mnt/docs with nothing else running, then `guest-search` at ef "
      f"{ef} over /mnt/docs (`VEXFS_IOC_SEARCH`, one thread, then {t} at once) on the idle index, then again "
      "and again while `vexctl import` writes the negated base set (every component's sign flipped: "
      "the same norms, the same insert work, away from the queries) into /mnt/neg and the index "
      "worker links it, then once more on the idle index with both sets. Recall@10 is against "
      "the base set's ground truth, so a negated vector among the answers counts as a miss. During "
      "the import each run is one pass (its single-thread and threaded QPS, and the vectors the "
      "index held when it started); the table gives the median of those runs with their range. "
      "Idle rows: the best of the passes.\n")

    def phase(name):
        return ([g for g in one if g["phase"] == name], [g for g in multi if g["phase"] == name],
                [g for g in stats if g["phase"] == name])

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2] if xs else None

    def cell(xs, fmt, best):
        if not xs:
            return "–"
        if best:
            return fmt.format(max(xs))
        return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"

    rows = []
    idle_qps = None
    for name, label in (("idle", "idle, before"), ("during", "during the import"), ("after", "idle, after")):
        o, m, st = phase(name)
        if not o:
            continue
        best = name != "during"
        q1 = [g["qps"] for g in o]
        qt = [g["qps"] for g in m]
        if name == "idle":
            idle_qps = (max(q1), max(qt) if qt else None)
        rel = ""
        if name == "during" and idle_qps:
            rel = f"{med(q1) / idle_qps[0]:.2f}"
            if qt and idle_qps[1]:
                rel += f" / {med(qt) / idle_qps[1]:.2f}"
        vecs = [g["vectors"] for g in st]
        rows.append([label, len(o), cell(vecs, "{:,}", best),
                     cell([g["recall"] for g in o], "{:.4f}", best), cell(q1, "{:,.1f}", best),
                     cell(qt, "{:,.1f}", best), rel])
    w(table(["", "runs", "vectors stored (linked or pending)", "recall@10", "QPS, 1 thread",
             f"QPS, {t} threads", f"÷ idle before (1 / {t} threads)"], rows,
            ["l", "r", "r", "r", "r", "r", "r"]))
    w("")
    a, b = imports[False], imports[True]
    rows = []
    for label, g in (("the base set into /mnt/docs, nothing else running", a),
                     (f"the negated set into /mnt/neg, during {b.get('search_runs', 0)} search runs", b)):
        m = re.match(r"imported (\d+) rows", g["summary"])
        nrows = int(m.group(1)) if m else None
        rate = lambda secs: f"{nrows / max(secs, 1):,.1f}" if nrows else "?"
        rows.append([label, f"{nrows:,}" if nrows else "?", f"{g['wall_secs']:,}", rate(g["wall_secs"]),
                     f"{g['linked_secs']:,}", rate(g["linked_secs"])])
    w(table(["`vexctl import`", "rows", "acknowledged, s", "vectors/s", "linked, s", "vectors/s"], rows,
            ["l", "r", "r", "r", "r", "r"]))
    w("")
    w("The second import links into a graph that already holds the base set (n to 2n vectors), "
      "so part of its slower rate is the larger graph, not the searches. The guest's 2 vCPUs are "
      "shared by the import, the index worker and the searching threads.\n")


def report(a):
    with open(a.host) as f:
        host = json.load(f)
    libs = {lib: combine(runs) for lib, runs in host["runs"].items() if runs}
    guest = []
    if a.guest and os.path.exists(a.guest):
        with open(a.guest) as f:
            guest = [json.loads(line) for line in f if line.strip()]
    v = versions()
    ours, hn, fa = libs.get("vexfs-core"), libs.get("hnswlib"), libs.get("faiss")
    n, dim = ours["n"], ours["dim"]
    L = []
    w = L.append
    now = datetime.datetime.now(datetime.timezone.utc)
    w("# vexfs benchmark report\n")
    run = next((g for g in guest if g.get("side") == "guest-run"), {})
    took = ""
    if a.wall_secs:
        took = f"; `scripts/bench` took {a.wall_secs / 60:.1f} min in all"
        if a.host_secs:
            took += f" (host benchmark {a.host_secs / 60:.1f} min"
            took += f", guest {run['wall_secs'] / 60:.1f} min)" if run else ")"
    w(f"Written by `scripts/bench` on {now:%Y-%m-%d %H:%M} UTC{took}.\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = sh(f"git -C {repo} rev-parse --short HEAD")
    if sh(f"git -C {repo} status --porcelain --untracked-files=no -- core image kmod include vexctl Kbuild"):
        commit += " (with uncommitted changes in the work tree)"
    w(table(["", ""], [
        ["machine", f"{os.cpu_count()} CPUs ({cpu_model()}), "
                    f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"],
        ["data", f"{a.data_name}: {n:,} base vectors × {dim}-d float32, {ours['queries']:,} queries, "
                 "exact top-100 ground truth; metric l2 (squared Euclidean)"],
        ["index", f"HNSW m = {host['m']} (2m = {2 * host['m']} links at level 0), "
                  f"ef_construction = {host['ef_construction']}, k = {host['k']}"],
        ["vexfs commit", commit or "?"],
        *[[k, x] for k, x in v.items()],
        ["our distance kernels", f"C, {ours.get('impl', '?')} (the implementation the kernel "
                                 "picks on this CPU); hnswlib was compiled from its sdist by pip "
                                 "on this machine (native flags, AVX-512 here); faiss-cpu is the "
                                 "PyPI wheel (AVX2/AVX-512 dispatch)"],
    ], ["l", "l"]))
    w("")
    w(f"Method. The host part runs {host['rounds']} rounds; each round runs the three libraries "
      "one after another, each in a fresh process and in an order rotated per round, on the "
      "same data in the same run of `scripts/bench`. Everything is single-threaded: our core "
      "(`core/examples/bench_core.rs`, `MemIndex` with the C distance kernels `c_dist`), "
      "hnswlib (`set_num_threads(1)`, `num_threads=1` for build and queries) and faiss "
      "(`IndexHNSWFlat`, `omp_set_num_threads(1)`). Build time covers the inserts only. Each ef "
      f"runs all queries {host['passes']} times per round (hnswlib and faiss: one batch call per "
      "pass, which loops over the queries in C++ on one thread; ours: a Rust loop), and QPS is "
      "queries / seconds of the fastest pass. **This machine is noisy (2 cores, other work "
      "running), so every table keeps the best of all rounds and passes** (best build time, best "
      "QPS per ef; recall is deterministic and the same in every round unless noted). Targets "
      "are read off the sweep: the smallest ef whose recall@10 reaches the target, with its QPS; "
      "nothing is interpolated. numpy only loads the data and computes recall (nothing it does "
      "is timed); `OPENBLAS_CORETYPE`/`OPENBLAS_L2_SIZE` are unset for the benchmark command. "
      "Raw results: `$VEXFS_CACHE/bench-results` (host.json, guest.jsonl, vindex-host.jsonl).\n")

    # --- host: summary
    w("## Host: core HNSW vs hnswlib vs faiss\n")
    rows = []
    for name, c in (("vexfs core (MemIndex)", ours), ("hnswlib", hn), ("faiss IndexHNSWFlat", fa)):
        if c is None:
            continue
        rows.append([name, f"{c['build_secs']:.2f}",
                     *(fmt_qps(at_target(c["sweep"], t)) for t in TARGETS)])
    w(table(["library", "build s (1 thread)", "QPS @ recall 0.90", "QPS @ 0.95", "QPS @ 0.99"],
            rows, ["l", "r", "r", "r", "r"]))
    w("")
    w("Build times of every round (s): " + "; ".join(
        f"{name} {', '.join(f'{x:.2f}' for x in c['build_secs_all'])}"
        for name, c in (("vexfs core", ours), ("hnswlib", hn), ("faiss", fa)) if c) + ".\n")
    varies = [(name, c["recall_varies"]) for name, c in libs.items() if c["recall_varies"]]
    if varies:
        w("Recall varied between rounds (the table uses the lowest): "
          + "; ".join(f"{name}: {vv}" for name, vv in varies) + ".\n")

    # --- host: sweep
    w("### ef sweep (recall@10 / best QPS)\n")
    rows = []
    for i, s in enumerate(ours["sweep"]):
        row = [s["ef"]]
        for c in (ours, hn, fa):
            if c is None:
                row.append("")
                continue
            x = c["sweep"][i]
            row.append(f"{x['recall']:.4f} / {x['qps']:,.0f}")
        rows.append(row)
    w(table(["ef", "vexfs core", "hnswlib", "faiss"], rows))
    w("")

    # --- memory
    w("### Memory\n")
    raw = ours["raw_vector_bytes"]
    links = ours["link_bytes"]
    yard = raw + links
    w(f"Yardstick: raw vectors {raw:,} B ({raw / n:.0f} B/vector) plus graph links {links:,} B "
      f"({links / n:.1f} B/vector: 4 bytes per link slot, {2 * host['m']} at level 0 for every "
      f"node and {host['m']} per upper level, {ours['upper_lists']:,} upper lists) = {yard:,} B "
      f"({yard / n:.1f} B/vector).\n")
    rows = [["vexfs core", f"{ours['memory_bytes'] / n:.1f}",
             f"{ours['memory_bytes'] / yard:.3f}",
             "`MemIndex::memory_bytes` (vectors, link lists with counts, levels)"],
            ["vexfs core", f"{ours['rss_growth_bytes'] / n:.1f}",
             f"{ours['rss_growth_bytes'] / yard:.3f}",
             "RSS growth around the build"]]
    if "rss_growth_trimmed_bytes" in ours:
        rows.append(["vexfs core", f"{ours['rss_growth_trimmed_bytes'] / n:.1f}",
                     f"{ours['rss_growth_trimmed_bytes'] / yard:.3f}",
                     "RSS growth after `malloc_trim(0)`: the rest was heap freed by the `Vec` "
                     "regrowth of the build, which glibc keeps"])
    for name, c in (("hnswlib", hn), ("faiss", fa)):
        if c is None:
            continue
        rows.append([name, f"{c['rss_growth_bytes'] / n:.1f}", f"{c['rss_growth_bytes'] / yard:.3f}",
                     "RSS growth around the build (lowest of the rounds)"])
        rows.append([name, f"{c['serialized_bytes'] / n:.1f}", f"{c['serialized_bytes'] / yard:.3f}",
                     "serialized index size (approximation)"])
    w(table(["library", "bytes/vector", "× yardstick", "how measured"], rows, ["l", "r", "r", "l"]))
    w("")

    # --- on disk
    disk = None
    insp = next((g for g in guest if g.get("side") == "inspect"), None)
    stats = next((g for g in guest if g.get("side") == "stats"), None)
    disk_per_vector = None
    disk_per_vector_f32 = None
    w("### On disk (vexfs)\n")
    if insp:
        sb = insp["superblock"]
        regs = {r["name"]: r["bytes"] for r in sb["regions"]}
        parts = list(F32_REGIONS)
        quant = ""
        if "sq8_shift" in sb:
            parts.append("vector codes")
            quant = f" --quant sq8 --sq8-shift {sb['sq8_shift']}"
        disk = sum(regs.get(p, 0) for p in parts)
        disk_per_vector = disk / sb["vec_capacity"]
        cap = sb["vec_capacity"]
        w(f"The guest's image was formatted for the data (`mkfs.vexfs --dim {sb['vec_dim']} --metric "
          f"{sb['vec_metric']} --vectors {cap}{quant}`); after the import its superblock (`vexctl inspect "
          f"--json`, on the host) gives the regions below. Bytes per vector = the {len(parts)} vector "
          f"regions / {cap:,} slots (all used).\n")
        w(table(["region", "bytes", "bytes/vector"],
                [[p, f"{regs.get(p, 0):,}", f"{regs.get(p, 0) / cap:.1f}"] for p in parts]
                + [["**total**", f"**{disk:,}**", f"**{disk / cap:.1f}**"]], ["l", "r", "r"]))
        w("")
        insp32 = next((g for g in guest if g.get("side") == "inspect-f32"), None)
        if insp32:
            sb32 = insp32["superblock"]
            regs32 = {r["name"]: r["bytes"] for r in sb32["regions"]}
            parts32 = F32_REGIONS
            disk32 = sum(regs32.get(p, 0) for p in parts32)
            disk_per_vector_f32 = disk32 / sb32["vec_capacity"]
            w(f"The same format without SQ8 codes (`mkfs.vexfs --dim {sb32['vec_dim']} --metric "
              f"{sb32['vec_metric']} --vectors {sb32['vec_capacity']}`, made on the host beside the run: "
              f"the regions are laid out whole at mkfs): {disk32:,} B in its {len(parts32)} vector "
              f"regions, **{disk_per_vector_f32:.1f}** B/vector; the codes add "
              f"{regs.get('vector codes', 0) / cap:.1f} B/vector.\n")
        if stats:
            s = stats["stats"]
            w(f"Cross-check: `vexctl stats --json` in the guest reported bytes_on_disk = "
              f"{s['bytes_on_disk']:,} for {s['vectors']:,} vectors "
              f"({s['bytes_on_disk'] / max(1, s['vectors']):.1f} B/vector).\n")
        w(f"For comparison, the serialized indexes: hnswlib {hn['serialized_bytes'] / n:.1f} B/vector, "
          f"faiss {fa['serialized_bytes'] / n:.1f} B/vector.\n" if hn and fa else "")
    else:
        w("No guest run: no on-disk figure.\n")

    # --- the kernel's code on the host
    vh, vh_sweep = [], []
    if a.vindex_host and os.path.exists(a.vindex_host):
        with open(a.vindex_host) as f:
            vh = [json.loads(line) for line in f if line.strip()]
    if vh:
        w("### The kernel's search code on the host\n")
        v1 = [g for g in vh if g.get("side", "user") == "user"]
        efs = sorted({g["ef"] for g in v1})
        sweep = []
        for ef in efs:
            gs = [g for g in v1 if g["ef"] == ef]
            b = max(gs, key=lambda g: g["qps"])
            sweep.append({"ef": ef, "recall": min(g["recall"] for g in gs), "qps": b["qps"],
                          "p50": b["p50_us"], "p99": b["p99_us"]})
        rounds_vh = len({g["round"] for g in vh})
        built = ("the image the kernel built in the guest" if a.vindex_image == "guest" else
                 "an image bulk-loaded on the host by `mkfs.vexfs --import` (the kernel's insert "
                 "code in userspace)")
        w("The same sweep through `core::vindex` (what the module runs: the on-disk records through "
          "the `Blocks` trait, via the image crate's `Searcher`, as `vexctl search-image`) over "
          f"{built}, on the host CPU with its distance kernels "
          f"({vh[0].get('distance_impl', '?')}); best of {rounds_vh} rounds × 2 passes. The graph "
          "is the kernel's (seeded by mkfs), not `MemIndex`'s, so recall differs slightly from the "
          "table above. This is the nearest figure to the kernel's speed on real hardware (KVM "
          "does not work here).\n")
        vh_sweep = sweep
        w(table(["", "QPS @ recall 0.90", "QPS @ 0.95", "QPS @ 0.99"],
                [["core::vindex over the image", *(fmt_qps(at_target(sweep, t)) for t in TARGETS)],
                 ["MemIndex (same run, above)", *(fmt_qps(at_target(ours["sweep"], t)) for t in TARGETS)]],
                ["l", "r", "r", "r"]))
        w("")
        w(table(["ef", "recall@10", "QPS", "p50 µs", "p99 µs", "MemIndex QPS at this ef"],
                [[s["ef"], f"{s['recall']:.4f}", f"{s['qps']:,.0f}", f"{s['p50']:.1f}",
                  f"{s['p99']:.1f}", next((f"{x['qps']:,.0f}" for x in ours["sweep"]
                                            if x["ef"] == s["ef"]), "")] for s in sweep]))
        w("")
        vmt = [g for g in vh if g.get("side") == "user-mt" and g["threads"] > 1]
        # The same harness's 1-thread passes, interleaved with the threaded ones (newer
        # bench_search): the speed-up compares these two.
        vmt1 = [g for g in vh if g.get("side") == "user-mt" and g["threads"] == 1]
        libs_mt = {lib: libs[lib] for lib in ("hnswlib", "faiss") if "sweep_mt" in libs.get(lib, {})}
        if vmt and libs_mt:
            t = vmt[0]["threads"]
            w(f"### Searches from {t} threads at once (host)\n")
            w(f"Each library's queries split between {t} threads of one process (core::vindex: "
              "`bench_search -t`, a search pad per thread over one `Searcher`, as the kernel's "
              "searches share its index; hnswlib: `knn_query(num_threads)`; faiss: OpenMP threads), "
              "at the ef where each reaches recall@10 0.95 alone; best pass of every round. "
              "\"same\": the threaded answers were the single-thread ones.\n")
            rows = []
            v95 = at_target(sweep, 0.95)
            if v95:
                v1 = max((g["qps"] for g in vmt1 if g["ef"] == v95["ef"]), default=v95["qps"])
                vt = max(g["qps"] for g in vmt if g["ef"] == v95["ef"])
                same = all(g["identical"] for g in vmt if g["ef"] == v95["ef"])
                rows.append(["core::vindex over the image", v95["ef"], f"{v1:,.0f}", f"{vt:,.0f}",
                             f"**{vt / v1:.2f}**", "yes" if same else "**NO**"])
            for lib, r in libs_mt.items():
                s95 = at_target(r["sweep"], 0.95)
                if s95:
                    mt = next(x for x in r["sweep_mt"] if x["ef"] == s95["ef"])
                    rows.append([lib, s95["ef"], f"{s95['qps']:,.0f}", f"{mt['qps']:,.0f}",
                                 f"**{mt['qps'] / s95['qps']:.2f}**", "yes" if mt["same"] else "no"])
            w(table(["", "ef", "QPS, 1 thread", f"QPS, {t} threads", "speed-up", "same"], rows,
                    ["l", "r", "r", "r", "r", "l"]))
            w("")

    # --- guest
    verdict_guest = None
    speedups, ingest_ratio = [], None
    w("## In the QEMU guest: kernel search vs the same code in userspace\n")
    kern = [g for g in guest if g.get("side") == "kernel"]
    user = [g for g in guest if g.get("side") == "user"]
    comp = [g for g in guest if g.get("side") == "compare"]
    if kern and user:
        gi = next((g for g in guest if g.get("side") == "guest"), {})
        imp = next((g for g in guest if g.get("side") == "import"), {})
        ks = next((g for g in guest if g.get("side") == "kernel-stats"), {})
        rounds = max(g["round"] for g in kern) + 1
        w(f"One guest (QEMU TCG software emulation, `-cpu max`, 2 vCPUs, kernel "
          f"{gi.get('kernel', '?')}), one image, the same {kern[0]['queries']:,} queries: "
          f"`vexctl import` of the {n:,} base vectors ({imp.get('summary', '?')}), then {rounds} "
          "rounds of: mount read-only, then at each ef every query through `VEXFS_IOC_SEARCH` "
          "(`bench/guest-search.c`) and the same queries through the image crate's "
          "`Searcher` on /dev/vda beside the mount (`image/examples/bench_search.rs`; the code of "
          "`vexctl search-image`: `core::vindex` over a read-only mmap), the two in turn, the side "
          "that goes first alternating from one ef and round to the next (so both see the same "
          "stretch of a noisy host; until 2026-12-06 the kernel searched every ef first, then "
          "userspace after an umount), with the kernel's distance "
          f"kernels ({ks.get('distance_impl', '?')}). Each side, at each ef: an untimed warm-up pass, then "
          f"{kern[0]['passes']} timed passes per ef per round; the fastest pass of all rounds is "
          "kept, with its own p50/p99. Each search is timed alone with the TSC, calibrated "
          "against CLOCK_MONOTONIC (the guest's clocksource is "
          f"{gi.get('clocksource', '?')}, 4 ms ticks). Absolute numbers in an emulated guest mean "
          f"little; the ratio is the result. The guest run took {run.get('wall_secs', 0) / 60:.1f} "
          "min.\n")
        rows = []
        ratios = []
        for ef in sorted({g["ef"] for g in kern}):
            kb = max((g for g in kern if g["ef"] == ef), key=lambda g: g["qps"])
            ub = max((g for g in user if g["ef"] == ef), key=lambda g: g["qps"])
            krec = {g["recall"] for g in kern if g["ef"] == ef}
            urec = {g["recall"] for g in user if g["ef"] == ef}
            cs = [g for g in comp if g["ef"] == ef]
            same = all(g["identical"] for g in cs) and cs
            ratio = kb["qps"] / ub["qps"]
            ratios.append((ef, ratio))
            rows.append([ef, "/".join(f"{x:.4f}" for x in sorted(krec)),
                         "/".join(f"{x:.4f}" for x in sorted(urec)),
                         "yes" if same else f"**NO** ({sum(g['differing_lines'] for g in cs)} lines differ)",
                         f"{kb['qps']:,.1f}", f"{ub['qps']:,.1f}", f"**{ratio:.3f}**",
                         f"{kb['p50_us'] / 1e3:.2f} / {kb['p99_us'] / 1e3:.2f}",
                         f"{ub['p50_us'] / 1e3:.2f} / {ub['p99_us'] / 1e3:.2f}",
                         f"{ub['p50_us'] / kb['p50_us']:.3f}"])
        w(table(["ef", "recall@10 kernel", "recall@10 user", "same results (bits)", "kernel QPS",
                 "user QPS", "kernel/user QPS", "kernel p50/p99 ms", "user p50/p99 ms",
                 "user/kernel p50"], rows))
        w("")
        def per_round(side, ef):
            return ", ".join("%.1f" % g["qps"] for g in side if g["ef"] == ef)
        w("Per round (QPS of the best pass): " + "; ".join(
            f"ef {ef}: kernel {per_round(kern, ef)} / user {per_round(user, ef)}"
            for ef in sorted({g["ef"] for g in kern})) + ". \"same results\" compares both sides' "
            "result lists (query, rank, inode, chunk, distance bits) byte for byte in every round.\n")
        verdict_guest = ratios
        kmt = [g for g in guest if g.get("side") == "kernel-mt" and g["threads"] > 1]
        umt = [g for g in guest if g.get("side") == "user-mt" and g["threads"] > 1]
        # 1-thread passes of the threaded harness, interleaved with its threaded ones (newer
        # guest-search and bench_search): the speed-ups compare these; older results fall back
        # on the single-thread sweep (each search timed alone).
        kmt1 = [g for g in guest if g.get("side") == "kernel-mt" and g["threads"] == 1]
        umt1 = [g for g in guest if g.get("side") == "user-mt" and g["threads"] == 1]
        if kmt and umt:
            t = kmt[0]["threads"]
            w(f"### {t} searchers at once (one per vCPU)\n")
            w(f"The same queries split between {t} threads of one process ("
              + ("each thread takes the next query from a shared counter), each pass timed whole and "
                 "right after a 1-thread pass of the same harness, whose best gives the 1-thread "
                 "columns (three times the passes: they are short); kernel:" if kmt1 else
                 f"thread i takes queries i, i + {t}, ...), each pass timed whole; kernel:")
              + f" {t} threads calling `VEXFS_IOC_SEARCH` on "
              "one mount (the index lock shared, a search pad each); userspace: the image crate's "
              f"`Searcher::search_shared`, a pad per thread. \"same\" says every threaded pass gave the "
              "single-thread answers. Best pass of all rounds.\n")
            rows = []
            for ef in sorted({g["ef"] for g in kmt}):
                k1 = max(g["qps"] for g in (kmt1 or kern) if g["ef"] == ef)
                u1 = max(g["qps"] for g in (umt1 or user) if g["ef"] == ef)
                kt = max(g["qps"] for g in kmt if g["ef"] == ef)
                ut = max(g["qps"] for g in umt if g["ef"] == ef)
                same = all(g["identical"] for g in kmt + umt if g["ef"] == ef)
                speedups.append((ef, kt / k1))
                rows.append([ef, f"{k1:,.1f}", f"{kt:,.1f}", f"**{kt / k1:.2f}**", f"{u1:,.1f}",
                             f"{ut:,.1f}", f"**{ut / u1:.2f}**", f"**{kt / ut:.3f}**",
                             "yes" if same else "**NO**"])
            w(table(["ef", "kernel QPS, 1 thread", f"kernel, {t} threads", "kernel speed-up",
                     "user QPS, 1 thread", f"user, {t} threads", "user speed-up",
                     f"kernel/user at {t} threads", "same"], rows))
            w("")
        ub = next((g for g in guest if g.get("side") == "user-build"), None)
        uv = next((g for g in guest if g.get("side") == "user-build-vindex"), None)
        if ub and imp.get("linked_secs"):
            core_build = ub["core"]
            nb = core_build.get("n", n)
            ack = n / max(imp["wall_secs"], 1)
            linked = n / max(imp["linked_secs"], 1)
            built = nb / core_build["build_secs"]
            # The reference of the verdict: the kernel's own insert code in userspace on the
            # same kind of image (mkfs.vexfs --import -j 1's links phase) when the run has it,
            # else MemIndex.
            on_vindex = bool(uv) and uv["links_secs"] > 0
            ref = n / uv["links_secs"] if on_vindex else built
            ingest_ratio = (linked / ref, linked, ref, "vindex" if on_vindex else "memindex")
            w("### Ingest in the guest\n")
            w(f"`vexctl import` of the {n:,} vectors (one file and one SET each, acknowledged through the "
              "vector write-ahead log), then the index worker linking them into the graph (`vexctl "
              "wait-indexed`), against building the same vectors in userspace in the same guest, one "
              "thread, with the same C distance kernels: core's `MemIndex` (`core/examples/bench_core.rs`, "
              "float32 vectors in memory)"
              + (f", and `mkfs.vexfs --import -j 1{'' if uv['quant'] == 'none' else ' --quant ' + uv['quant']}` "
                 "into a file in the guest's tmpfs, whose links phase runs the kernel's own insert code "
                 "(`core::vindex`) on an image of the same kind as the kernel's (for an SQ8 image: the "
                 "graph built on the codes), the reference of the ratio" if uv else "")
              + ". Wall clock of the guest (4 ms ticks; seconds for the import).\n")
            rows = [
                ["`vexctl import`, acknowledged", f"{imp['wall_secs']:,}", f"{ack:,.1f}", f"{ack / ref:.2f}"],
                ["`vexctl import` + linked (searchable in the graph)", f"{imp['linked_secs']:,}",
                 f"{linked:,.1f}", f"**{linked / ref:.2f}**"],
            ]
            if on_vindex:
                rows.append([f"userspace build, kernel's insert code (mkfs.vexfs --import -j 1, links phase; "
                             f"files phase {uv['files_secs']:,.1f} s)", f"{uv['links_secs']:,.1f}",
                             f"{ref:,.1f}", "1"])
            rows.append(["userspace build (MemIndex, 1 thread)", f"{core_build['build_secs']:,.1f}", f"{built:,.1f}",
                         f"{built / ref:.2f}"])
            w(table(["", "seconds", "vectors/s", "÷ userspace build"], rows))
            w("")
        concurrent_section(guest, w)
        for side, what in (("fsck", "the image"), ("fsck-conc", "the second image (searches during an import)")):
            fsck = next((g for g in guest if g.get("side") == side), None)
            if fsck:
                w(f"After the run, `fsck.vexfs -n` on {what}: exit {fsck['status']}"
                  f"{' (clean)' if fsck['status'] == 0 else ' (NOT clean)'}.\n")
    else:
        w("Not run (`scripts/bench --host-only`).\n")

    # --- verdicts
    w("## Targets\n")
    rows = []
    o95, h95 = at_target(ours["sweep"], 0.95), at_target(hn["sweep"], 0.95)
    if o95 and h95:
        ok = o95["qps"] >= h95["qps"]
        rows.append(["single-thread QPS at recall@10 0.95 ≥ hnswlib's (same run)",
                     "**met**" if ok else "**not met**",
                     f"ours {o95['qps']:,.0f} (ef {o95['ef']}) vs hnswlib {h95['qps']:,.0f} "
                     f"(ef {h95['ef']}): {o95['qps'] / h95['qps']:.2f}×"])
    else:
        rows.append(["single-thread QPS at recall@10 0.95 ≥ hnswlib's", "**not met**" if not o95 else "n/a",
                     f"0.95 not reached by {'ours' if not o95 else 'hnswlib'}"])
    ok = ours["build_secs"] <= hn["build_secs"]
    rows.append(["build time ≤ hnswlib's", "**met**" if ok else "**not met**",
                 f"ours {ours['build_secs']:.2f} s vs hnswlib {hn['build_secs']:.2f} s: "
                 f"{ours['build_secs'] / hn['build_secs']:.2f}×"])
    mr = ours["memory_bytes"] / yard
    rows.append(["memory ≤ 1.2 × (raw vectors + graph links)", "**met**" if mr <= 1.2 else "**not met**",
                 f"{ours['memory_bytes']:,} B = {mr:.3f}× of {yard:,} B (`memory_bytes`); RSS growth "
                 f"{ours['rss_growth_bytes'] / yard:.2f}×"])
    if verdict_guest:
        worst = min(r for _, r in verdict_guest)
        rows.append(["kernel QPS ≥ 0.8 × userspace (guest)", "**met**" if worst >= 0.8 else "**not met**",
                     ", ".join(f"ef {ef}: {r:.3f}×" for ef, r in verdict_guest)])
        same = comp and all(g["identical"] for g in comp)
        rows.append(["kernel and userspace give the same results", "**yes**" if same else "**NO**",
                     "identical result lists (inode, chunk, distance bits) at every ef and round"
                     if same else "see the table above"])
    # Issue 9's targets that this run measures (its host targets: bench/search.sh).
    if verdict_guest:
        worst = min(verdict_guest, key=lambda x: x[1])
        rows.append(["issue 9: the ioctl path ≥ 0.9 × the same code in userspace (guest, every ef)",
                     "**met**" if worst[1] >= 0.9 else "**not met**",
                     f"lowest {worst[1]:.3f}× (ef {worst[0]})"])
    if speedups:
        low = [f"ef {ef}: {r:.2f}×" for ef, r in speedups if r < 1.8]
        rows.append(["issue 9: 2 searchers on one mount ≥ 1.8 × one searcher's QPS (guest, kernel, every ef)",
                     "**met**" if not low else "**not met**",
                     ", ".join(f"ef {ef}: {r:.2f}×" for ef, r in speedups)
                     + (f" (below: {', '.join(low)})" if low else "")])
    if ingest_ratio:
        r, linked, built, what = ingest_ratio
        ref = "the kernel's insert code in userspace" if what == "vindex" else "MemIndex"
        rows.append(["issue 9: `vexctl import` (linked) ≥ 0.7 × the in-guest userspace build",
                     "**met**" if r >= 0.7 else "**not met**",
                     f"{linked:,.1f} vs {built:,.1f} vectors/s ({ref}): {r:.2f}×"])
    if disk_per_vector:
        sq8 = insp and "sq8_shift" in insp["superblock"]
        if disk_per_vector_f32:
            r = disk_per_vector_f32 / (yard / n)
            rows.append(["issue 9: bytes per vector on disk ≤ 1.1 × (raw vector + links), float32 image",
                         "**met**" if r <= 1.1 else "**not met**",
                         f"{disk_per_vector_f32:,.1f} B vs {yard / n:,.1f} B: {r:.3f}×"])
        r = disk_per_vector / (yard / n)
        rows.append(["issue 9: bytes per vector on disk ≤ 1.1 × (raw vector + links)"
                     + (", SQ8 image (the one benchmarked)" if sq8 else ""),
                     "**met**" if r <= 1.1 else "**not met**",
                     f"{disk_per_vector:,.1f} B vs {yard / n:,.1f} B: {r:.3f}×"
                     + (" (the SQ8 codes, one byte a component, are stored beside the float32 vectors: "
                        "the price of the SQ8 walk)" if r > 1.1 and sq8 else "")])
    if vh_sweep and h95:
        v95 = at_target(vh_sweep, 0.95)
        rows.append(["(for information, no target) the kernel's search code on the host vs hnswlib "
                     "at recall@10 0.95", "-",
                     f"core::vindex {fmt_qps(v95)} vs hnswlib {h95['qps']:,.0f} (ef {h95['ef']})"
                     + (f": {v95['qps'] / h95['qps']:.2f}×" if v95 else "")])
    w(table(["target", "verdict", "numbers"], rows, ["l", "l", "l"]))
    w("")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    if a.section:
        # One section among the others: a level-2 title, every heading below it one level down.
        sq8 = ", `--quant sq8` images" if insp and "sq8_shift" in insp["superblock"] else ""
        L[0] = f"## `scripts/bench` on {a.data_name}{sq8} (issue 9)\n"
        L[1:] = ["#" + x if x.startswith("#") else x for x in L[1:]]
        text = "\n".join(L)
        write_section(a.out, text, *markers(f"scripts/bench {a.section}"))
        print(text)
        return
    text = "\n".join(L)
    # The sections other scripts wrote (bench/bulk.sh, search.sh, wal.sh, ...) stay, after
    # the new text; scripts/bench's own later steps rewrite theirs in place.
    try:
        kept = sections(open(a.out).read())
    except FileNotFoundError:
        kept = []
    with open(a.out, "w") as f:
        f.write(text + "".join("\n" + s for s in kept))
    print(text)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("lib", "run"):
        s = sub.add_parser(name)
        if name == "lib":
            s.add_argument("lib", choices=("hnswlib", "faiss"))
        else:
            s.add_argument("--core-bin", required=True)
            s.add_argument("--out", required=True)
            s.add_argument("--rounds", type=int, default=3)
        s.add_argument("--data", required=True)
        s.add_argument("--efs", default=DEFAULT_EFS)
        s.add_argument("--passes", type=int, default=2)
        s.add_argument("--k", type=int, default=10)
        s.add_argument("--m", type=int, default=16)
        s.add_argument("--ef-construction", type=int, default=200)
        s.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                       help="threads of the second, threaded sweep (default: every CPU; 1: none)")
    sub.add_parser("efs")
    s = sub.add_parser("report")
    s.add_argument("--host", required=True)
    s.add_argument("--guest")
    s.add_argument("--vindex-host")
    s.add_argument("--vindex-image", choices=["guest", "host"], default="guest",
                   help="who built the image of --vindex-host")
    s.add_argument("--out", required=True)
    s.add_argument("--wall-secs", type=float, default=0)
    s.add_argument("--host-secs", type=float, default=0)
    s.add_argument("--data-name", default="pydocs-minilm")
    s.add_argument("--section", help="write the report as this marked section of --out, not its top")
    a = p.parse_args()
    {"lib": run_lib, "run": run_all, "report": report, "efs": lambda a: print(DEFAULT_EFS)}[a.cmd](a)


if __name__ == "__main__":
    main()
