#!/usr/bin/env python3
"""The memory-budget benchmark's table and report section (bench/budget.sh runs it).

  budget.py RESULTS.jsonl [--report REPORT.md] [--section NAME]

RESULTS.jsonl holds the guest's "kernel" records of bench/guest-search.c, each tagged by
bench/budget-run.sh with the image ("none": float32 only, "sq8": with SQ8 codes, "sq8-codes": the same searched by
the codes' distances, "pq": with PQ codes), the vector and
index regions' bytes, the raw float32 bytes and the index_mem= budget (0: none), and by
bench/budget.sh with the image's HNSW m ("hnsw_m") and, with node records, "node_records". Prints one
table per image (each budget and ef: recall@10, QPS, p50/p99 latency, 4 KiB block reads per
query, hit rate, bytes held) and the verdicts on issue 10's memory targets that this run can
judge; with --report, writes them between the markers of bench/REPORT.md (with --section NAME,
those of the section NAME: another data set's run beside the default one).
"""
import argparse
import datetime
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report_section import markers, write_section  # noqa: E402

MIB = 1 << 20


def load(path):
    recs, run = [], {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("side") == "kernel" and "image" in r:
                recs.append(r)
            elif r.get("side") == "run":
                run = r
    return recs, run


def budget_name(r):
    b = r["budget"]
    if b == 0:
        return "none (all in memory)"
    name = f"{b / MIB:.1f} MiB = {b / r['index_bytes']:.2f}x the regions = {b / r['raw_bytes']:.2f}x raw"
    if r.get("f32_bytes"):
        name += f" = {b / r['f32_bytes']:.2f}x the float32 index"
    return name


def best_at(recs, recall):
    """The record with the fewest block reads per query among those at `recall` or above."""
    ok = [r for r in recs if r["recall"] >= recall]
    return min(ok, key=lambda r: (r["block_reads_per_query"], -r["qps"])) if ok else None


MOUNTS = {"none": "without a budget", "ratio": "with `index_mem=` {frac} of its vector and index regions",
          "raw35": "with 0.35x the raw float32 vectors",
          "f32x10": "with a tenth of the float32 index (rows x (vector + level-0 record) bytes)"}


def render(recs, run):
    out = []
    n, dim = run.get("vectors", "?"), run.get("dim", "?")
    when = datetime.date.today().isoformat()
    data = os.path.basename(run.get("data", "?"))
    ratio = run.get("ratio", 10)
    frac = "a tenth" if ratio == 10 else f"1/{ratio}"
    mounts = [MOUNTS[m].format(frac=frac) for m in run.get("budgets", "none,ratio,raw35").split(",") if m in MOUNTS]
    mounts = ", ".join(mounts[:-1]) + (" and " if len(mounts) > 1 else "") + mounts[-1]
    ms = sorted({r.get("hnsw_m", 16) for r in recs})
    graph = f"m {ms[0]}" if len(ms) == 1 else "HNSW m per image below"
    out.append(f"## Index within a memory budget: `index_mem=` in the guest, {data} (issue 10)\n")
    out.append(
        f"`bench/budget.sh` on {data} ({n} x {dim}, l2, {graph}, "
        "ef_construction 200, bulk-built with `mkfs.vexfs --import -j 2`, its default slot order, "
        f"near rows in the same blocks), {when}. One QEMU guest "
        f"(TCG, 2 vCPUs, 1 GiB); every query through `VEXFS_IOC_SEARCH`; each image mounted {mounts}. "
        "Block reads (4 KiB, read ahead included) come from `VEXFS_IOC_INDEX_MEM` "
        "around the timed pass: counted, not timed, so they compare across machines; latencies are "
        "TCG's, to compare within the run only. Each mount starts cold.\n")
    for image in sorted({r["image"] for r in recs}):
        rows = [r for r in recs if r["image"] == image]
        label = {"none": "float32 vectors only", "sq8": "SQ8 codes (the walk), float32 re-rank",
                 "sq8-codes": "SQ8 codes (the walk), ranked by the codes' distances "
                              "(`VEXFS_SEARCH_CODE_DISTANCES`: no float32 vector read, distances approximate; "
                              "the same image as `sq8`)",
                 "pq": "PQ codes (the walk), float32 re-rank",
                 "pq-split": "PQ codes (the walk), float32 re-rank of the 10k nearest, split layout (vectors and "
                             "level-0 links in their own regions)"}.get(image, image)
        if rows[0].get("node_records"):
            label += ", node records (each vector with its level-0 links; every candidate re-ranked)"
        if len(ms) > 1:
            label += f", m {rows[0].get('hnsw_m', 16)}"
        out.append(f"### Image `{image}`: {label}, regions {rows[0]['index_bytes'] / MIB:.1f} MiB "
                   f"(raw float32 {rows[0]['raw_bytes'] / MIB:.1f} MiB)\n")
        # The reads per region (VEXFS_IOC_INDEX_READS), when the module gave them.
        regions = all("region_reads_per_query" in r for r in rows)
        split = " | of them codes / hnsw / data / map" if regions else ""
        out.append(f"| budget | ef | recall@10 | QPS | p50 µs | p99 µs | block reads / query{split} | hit rate | "
                   "held MiB |")
        out.append("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if regions else "") + "---:|---:|")
        for r in sorted(rows, key=lambda r: (r["budget"] != 0, r["budget"], r["ef"])):
            per = ""
            if regions:
                g = r["region_reads_per_query"]
                per = f" | {g['codes']:.1f} / {g['hnsw']:.1f} / {g['data']:.1f} / {g['map']:.1f}"
            out.append(
                f"| {budget_name(r)} | {r['ef']} | {r['recall']:.4f} | {r['qps']:.0f} | {r['p50_us']:.0f} | "
                f"{r['p99_us']:.0f} | {r['block_reads_per_query']:.1f}{per} | {r['cache_hit_rate']:.3f} | "
                f"{r['mem_bytes'] / MIB:.1f} |")
        out.append("")
    out.append("### Verdicts\n")
    for image in sorted({r["image"] for r in recs}):
        rows = [r for r in recs if r["image"] == image]
        free = {r["ef"]: r for r in rows if r["budget"] == 0}
        for b in sorted({r["budget"] for r in rows if r["budget"]}):
            tight = [r for r in rows if r["budget"] == b]
            same = all(free.get(r["ef"]) and abs(free[r["ef"]]["recall"] - r["recall"]) < 1e-9 for r in tight)
            versus = ((f"recall {'the same as' if same else 'DIFFERENT from'} the unbudgeted mount at every ef")
                      if free else "no unbudgeted mount in this run")
            held_ok = all(r["mem_bytes"] <= b for r in tight)
            best = best_at(tight, 0.95)
            reads = (f"{best['block_reads_per_query']:.1f} block reads per query at recall {best['recall']:.4f} "
                     f"(ef {best['ef']})" if best else "recall 0.95 not reached")
            out.append(
                f"- `{image}`, budget {budget_name(tight[0])}: {versus}; held {'within' if held_ok else 'OVER'} the budget after "
                f"each pass; {reads}.")
    fl = [r for r in recs if r["image"] == "none" and r["budget"] == 0]
    for image, how in (("sq8", "re-ranked with the float32 vectors"),
                       ("sq8-codes", "ranked by the codes' distances")):
        sq8 = [r for r in recs if r["image"] == image and r["budget"] and r["budget"] <= 0.35 * r["raw_bytes"]]
        if not (sq8 and fl):
            continue
        s, f = best_at(sq8, 0.95), best_at(fl, 0.95)
        if s and f:
            # The float32 index's QPS at its smallest ef reaching the SQ8 row's recall.
            at = [r for r in fl if r["recall"] >= s["recall"]]
            g = min(at, key=lambda r: r["ef"]) if at else None
            ok = s["qps"] >= f["qps"] and (g is None or s["qps"] >= g["qps"])
            out.append(
                f"- SQ8 target (RAM at most 0.35x the raw vectors, recall@10 >= 0.95, QPS no lower than "
                f"float32 at the same recall), `{image}` ({how}): at 0.35x, recall {s['recall']:.4f} at "
                f"{s['qps']:.0f} QPS (ef {s['ef']}, {s['block_reads_per_query']:.1f} block reads per query) "
                f"against float32 all in memory {f['recall']:.4f} at {f['qps']:.0f} QPS (ef {f['ef']})"
                + (f" and {g['recall']:.4f} at {g['qps']:.0f} QPS (ef {g['ef']})" if g and g is not f else "")
                + f": **{'met' if ok else 'not met'}** in this guest.")
    if isinstance(n, int) and n >= 1_000_000:
        best = max(recs, key=lambda r: (r["recall"], r["qps"]))
        ok = best["recall"] >= 0.95
        out.append(
            f"- 1M target (the {n:,}-vector image mounts in a guest with 1 GiB of RAM and answers the "
            f"{best.get('queries', 1000):,} queries through the kernel with recall@10 >= 0.95): best recall "
            f"{best['recall']:.4f} (image `{best['image']}`, budget {budget_name(best)}, ef {best['ef']}): "
            f"**{'met' if ok else 'not met'}**.")
    # The PQ target's budget: a tenth of the float32 index (f32x10), or, in runs without it, a
    # tenth of the PQ image's regions (which hold the codes besides the float32 index). A
    # verdict per PQ image (node records, split layout).
    verdicts = []
    for image in sorted({r["image"] for r in recs if r["image"].startswith("pq")}):
        pq = [r for r in recs if r["image"] == image and r["budget"] and r.get("f32_bytes")
              and r["budget"] * 10 <= r["f32_bytes"]]
        basis = "a tenth of the float32 index of these rows"
        if not pq:
            pq = [r for r in recs if r["image"] == image and r["budget"] and r["budget"] * 9.5 <= r["index_bytes"]]
            basis = ("a tenth of the PQ image's vector and index regions, which hold the codebook and codes "
                     "besides the float32 index")
        if not pq:
            continue
        ok_rows = [r for r in pq if r["recall"] >= 0.95 and r["block_reads_per_query"] <= 50]
        best = best_at(pq, 0.95)
        where = "the 1M set" if isinstance(n, int) and n >= 1_000_000 else f"{n:,} vectors, not the 1M set"
        got = (f"recall {best['recall']:.4f} with {best['block_reads_per_query']:.1f} block reads per query "
               f"(ef {best['ef']})" if best else "recall 0.95 not reached")
        verdicts.append(
            f"- PQ target (budget 10% of the float32 index, recall@10 >= 0.95 at no more than 50 block reads "
            f"per query on the 1M set), image `{image}`: budget {budget_name(pq[0])} ({basis}), {where}: {got}: "
            f"**{'met' if ok_rows and isinstance(n, int) and n >= 1_000_000 else 'not met'}**.")
    if verdicts:
        out.extend(verdicts)
        out.append("")
    else:
        out.append(
            "- PQ target (budget 10% of the float32 index, recall@10 >= 0.95 at no more than 50 block reads "
            "per query on the 1M set): no PQ image at a tenth in this run.\n")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--report")
    ap.add_argument("--section", help="the report section's name (default: the unnamed one)")
    a = ap.parse_args()
    recs, run = load(a.results)
    if not recs:
        sys.exit(f"budget.py: no guest records in {a.results}")
    text = render(recs, run)
    print(text)
    if a.report:
        write_section(a.report, text, *markers(f"bench/budget.sh {a.section}" if a.section else "bench/budget.sh"))


if __name__ == "__main__":
    main()
