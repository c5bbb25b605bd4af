#!/usr/bin/env python3
"""The host half of the vector write-ahead log benchmark (bench/wal.sh). Standard library only.

    wal.py RESULTS.jsonl [--report REPORT.md]

Reads the "BENCH" records of bench/wal-run.sh and wal-tool (plus the host's "run" record),
prints the tables and, with --report, writes them as the section between the WAL markers of
REPORT.md (replaced if present, else appended after the rest; nothing else in the file changes).
"""

import argparse
import json
import statistics
import sys
from datetime import datetime, timezone

from report_section import write_section

BEGIN = "<!-- bench/wal.sh: begin -->"
END = "<!-- bench/wal.sh: end -->"


def passes(n):
    return f"{n} pass" + ("" if n == 1 else "es")


def fmt(x, digits=1):
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def spread(values, digits=1):
    """'median (min–max)' of values."""
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med, digits)
    return f"{fmt(med, digits)} ({fmt(min(values), digits)}–{fmt(max(values), digits)})"


class Results:
    def __init__(self, path):
        self.records = [json.loads(line) for line in open(path) if line.strip()]
        runs = self.all("run")
        if len(runs) != 1:
            sys.exit(f"wal.py: {path} holds {len(runs)} run records, expected 1")
        self.run = runs[0]
        guests = self.all("guest")
        self.guest = guests[0] if guests else {}

    def all(self, tool, **match):
        return [r for r in self.records if r.get("tool") == tool and all(r.get(k) == v for k, v in match.items())]

    def one(self, tool, **match):
        found = self.all(tool, **match)
        if len(found) != 1:
            sys.exit(f"wal.py: {len(found)} records of {tool} {match}, expected 1")
        return found[0]

    def rounds(self, test, mode):
        """Per round: (acknowledge secs, catch-up secs: the test's end to nothing pending, 0 if none was)."""
        out = []
        for rep in range(self.run["rounds"]):
            r = self.one("round", test=test, mode=mode, rep=rep)
            w = self.one("wait", test=test, mode=mode, rep=rep)
            if not w["wait"]["indexed"]:
                sys.exit(f"wal.py: {test} {mode} round {rep}: the wait ended with vectors pending")
            catch = max(0.0, w["t_end"] - r["t_end"]) if w["wait"]["pending_at_start"] else 0.0
            out.append((r["secs"], catch))
        return out


def rate_at(trace, t0, t1):
    """Vectors linked per second between uptimes t0 and t1, from (t, pending) samples."""
    pts = [(t, p) for t, p in trace if t0 - 1e-9 <= t <= t1 + 1e-9]
    if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
        return None
    return (pts[0][1] - pts[-1][1]) / (pts[-1][0] - pts[0][0])


def report(res):
    run = res.run
    g = res.guest
    n_imp, n_rows, per = run["import"], run["rows"], run["per"]
    lines = []
    out = lines.append

    # 1. WAL against --index-now.
    tests = [
        ("import", f"1 vector per SET: `vexctl import` of {n_imp:,} vectors (a new file per vector)", n_imp),
        ("rows", f"{per} vectors per SET: `vexctl set --rows` of {n_rows:,} vectors ({-(-n_rows // per)} files, "
                 "one `vexctl` process per SET)", n_rows),
    ]
    rows1 = []
    readings = []
    for test, label, n in tests:
        wal = res.rounds(test, "wal")
        now = res.rounds(test, "now")
        wal_ack = [n / a for a, _ in wal]
        now_ack = [n / a for a, _ in now]
        ratio = [w / x for w, x in zip(wal_ack, now_ack)]
        catch = [c for _, c in wal]
        wal_graph = [n / (a + c) for a, c in wal]
        graph_ratio = [w / x for w, x in zip(wal_graph, now_ack)]
        # The worker's own pace: the catch-up less its 1 s start delay after the last SET.
        worker = [n / (c - 1.0) for c in catch if c > 1.2]
        rows1.append((label, wal_ack, now_ack, ratio, catch, wal_graph, graph_ratio, worker))
        line = (f"{label.split(':')[0]}: the WAL acknowledges {statistics.median(ratio):.1f}× as many embeddings "
                f"per second as `--index-now`; counting its catch-up (the worker starts 1 s after the last SET), "
                f"the vectors are all in the graph at {statistics.median(graph_ratio):.2f}× the synchronous rate")
        if worker:
            pace = statistics.median(worker) / statistics.median(now_ack)
            line += (f"; the worker's own pace, {statistics.median(worker):,.0f} linked/s, is {pace:.2f}× the "
                     "synchronous path's" + (", so on a test this short the 1 s start delay is most of the "
                                             "difference" if pace >= 0.8 else ""))
        readings.append(line + ".")

    out("## Vector write-ahead log: acknowledged embeddings, catch-up after a burst, search meanwhile (issue 7)")
    out("")
    out(f"Written by `bench/wal.sh` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, vexfs commit "
        f"{run['commit']}; the guest run took {run['wall_secs'] / 60:.1f} min. One QEMU guest (TCG software "
        f"emulation, {g.get('cpus', '?')} vCPUs, kernel {g.get('kernel', '?')}, clocksource "
        f"{g.get('clocksource', '?')}, {g.get('mem_kib', 0) // 1024:,} MiB) with one disk of "
        f"{run['image_mib']:,} MiB, formatted in the guest before **every** measurement (a fresh, empty "
        f"filesystem each time, always `mkfs.vexfs {run['mkfs']}`: m 16, ef_construction 200, a "
        "128 MiB journal (given; the default grows to 256 MiB), since a `--index-now` SET of 100 chunks may change "
        "about 7,500 blocks in one transaction). Data: "
        f"{run['data'].rstrip('/').split('/')[-1]} ({run['dim']}-d, l2); the round tests use its first rows. "
        f"`fsck.vexfs -n` ran in the guest after every round measurement (all clean, or the run fails).")
    out("")
    out(f"### Acknowledged embeddings per second: through the WAL against `--index-now`")
    out("")
    out(f"{run['rounds']} rounds; each runs both modes, the WAL first in even rounds and `--index-now` first "
        "in odd ones, every test on a fresh filesystem with the same data. A test is timed whole (the "
        "commands' wall time, process starts included): an embedding is acknowledged when its SET "
        "returns, which means durable in both modes (one journal commit per SET); with the WAL it is "
        "pending (searchable, not yet linked), with `--index-now` it is in the HNSW graph. Then "
        "`vexctl wait-indexed` times the WAL's catch-up (the index worker starts 1 s after the last "
        "SET, at once at 4,096 pending; nothing pending after `--index-now`). Median (min–max) of the "
        "rounds; the ratios are per round.")
    out("")
    out("| test | WAL, acknowledged/s | `--index-now`, acknowledged/s | WAL ÷ now | WAL catch-up after, s "
        "| WAL, in the graph/s (acknowledge + catch-up) | ÷ now | the worker alone, linked/s |")
    out("|:---|---:|---:|---:|---:|---:|---:|---:|")
    for label, wal_ack, now_ack, ratio, catch, wal_graph, graph_ratio, worker in rows1:
        out(f"| {label} | {spread(wal_ack)} | {spread(now_ack)} | **{spread(ratio, 2)}** | {spread(catch, 2)} | "
            f"{spread(wal_graph)} | {spread(graph_ratio, 2)} | {spread(worker) if worker else '-'} |")
    out("")
    out("The catch-up runs from the end of the test to nothing pending; the last column divides the "
        "vectors by the catch-up less the worker's 1 s start delay (its own pace, to compare with a "
        "synchronous insert; approximate: the delay counts from the last SET, a few ms before the "
        "test's end).")
    out("")
    out("Per round, WAL / `--index-now` acknowledged per second: " + "; ".join(
        f"{label.split(':')[0]} " + ", ".join(f"{fmt(a)} / {fmt(b)}" for a, b in zip(wal_ack, now_ack))
        for label, wal_ack, now_ack, *_ in rows1) + ".")
    out("")

    # 2. The burst and its catch-up.
    b = res.one("set", mode="wal")
    during = [r for r in res.all("search") if r.get("mode") == "catchup"]
    during = during[0] if during else None
    after = res.one("search", mode="after")
    wait = res.one("wait", test="burst")
    blocks = res.all("search-block")
    trace = sorted((r["t"], r["pending"]) for r in res.all("pending"))
    trace = [(b["t_end"], b["pending"])] + trace + [(wait["t_end"], 0)]
    bd = run["burst_data"]
    catch_secs = wait["t_end"] - b["t_end"]
    linked_in_burst = b["vectors"] - b["pending"]
    out(f"### A burst of {b['vectors']:,} embeddings, and the catch-up")
    out("")
    if b["vectors"] != 100_000:
        out(f"**A smaller burst than the issue's 100,000** (`--burst {b['vectors']}`): the catch-up time grows "
            "with the burst (more to link, and a larger graph to link into), so this run's catch-up is a lower "
            "bound for 100,000.")
        out("")
    if bd["perturbed"]:
        made = (f"The burst: {bd['rows']:,} vectors made from the {bd['base_rows']:,} real ones (`wal-tool gen`: "
                f"{bd['copies']} copies of the set; copy 0 unchanged, each later row the real vector plus Gaussian "
                f"noise of σ = {bd['sigma']} per component, scaled back to unit length, which moves it by "
                f"{bd['mean_moved']:.2f} on average, max {bd['max_moved']:.2f}, against 0.6 to 1.1 between a query "
                "and its nearest real passages; seeded, so every run makes the same file, in ")
    else:
        made = (f"The burst: the first {bd['rows']:,} of the {bd['base_rows']:,} real vectors, unchanged "
                "(`wal-tool gen`, in ")
    out(made +
        "`$VEXFS_CACHE/bench-wal/share`). One process (`wal-tool set`) creates a file and sets "
        f"{b['per_set']} chunks per SET through the WAL, {b['sets']:,} SETs, each timed alone (TSC). "
        f"Then at once the {run['queries']:,} queries of query.fvecs run in a loop (`wal-tool search`, one "
        "process, each ioctl timed alone, each query issued only while vectors are pending, for at most "
        f"{run['during']} s), then `vexctl wait-indexed` waits for the rest, then {passes(run['after'])} over "
        "every query after the catch-up. Recall@10 is against the exact top 10 of each query among the "
        "burst's vectors (`wal-tool gt`); searches use k 10, ef 64.")
    out("")
    out("| measure | value |")
    out("|:---|---:|")
    out(f"| time to acknowledge the burst ({b['vectors']:,} embeddings, {b['sets']:,} SETs), s | "
        f"**{b['secs']:.1f}** ({b['vectors'] / b['secs']:,.0f} embeddings/s) |")
    out(f"| one SET of {b['per_set']} acknowledged: p50 / p99 / max, ms | {b['set_p50_ms']:.1f} / "
        f"{b['set_p99_ms']:.1f} / {b['set_max_ms']:.1f} |")
    out(f"| pending at the burst's end (the worker, started at 4,096 pending, linked "
        f"{linked_in_burst:,} during it) | {b['pending']:,} |")
    out(f"| catch-up: from the burst's end to nothing pending, s | **{catch_secs:,.0f}** "
        f"({catch_secs / 60:.1f} min; {b['pending'] / catch_secs:,.1f} vectors linked/s) |")
    if during:
        d_secs = during["t_end"] - b["t_end"]
        linked_d = b["pending"] - during["pending_after"]
        out(f"| of which with the search loop running (from the burst's end), s; vectors linked/s | "
            f"{d_secs:,.0f}; {linked_d / d_secs:,.1f} |")
        rest = wait["t_end"] - during["t_end"]
        if rest > 0:
            out(f"| of which without searches, s; vectors linked/s | {rest:,.0f}; "
                f"{during['pending_after'] / rest:,.1f} |")
    # The worker's rate as the graph grows: quarters of the search-free part.
    t_free = during["t_end"] if during else b["t_end"]
    quarters = []
    span = wait["t_end"] - t_free
    if span > 40:
        for i in range(4):
            r = rate_at(trace, t_free + span * i / 4 - 10, t_free + span * (i + 1) / 4 + 10)
            if r is not None:
                quarters.append(r)
    if len(quarters) == 4:
        out("| worker without searches, vectors linked/s in each quarter of that time | "
            + " / ".join(f"{q:,.0f}" for q in quarters) + " |")
    out("")

    # 3. Search latency and recall during the catch-up and after.
    out("### Search while the worker catches up, and after")
    out("")
    out("| phase | queries | pending during | p50 ms | p99 ms | mean ms | max ms | recall@10 |")
    out("|:---|---:|---:|---:|---:|---:|---:|---:|")
    if during and during["queries"]:
        out(f"| during the catch-up ({during['distinct_queries']:,} distinct queries, {during['secs']:.0f} s) | "
            f"{during['queries']:,} | {during['pending_first']:,} → {during['pending_last']:,} | "
            f"{during['p50_us'] / 1e3:.1f} | {during['p99_us'] / 1e3:.1f} | {during['mean_us'] / 1e3:.1f} | "
            f"{during['max_us'] / 1e3:.1f} | **{during['recall']:.4f}** |")
    if after.get("subset"):
        out(f"| after, the same {after['subset']:,} queries ({passes(run['after'])}) | {after['subset'] * run['after']:,} "
            f"| 0 | | | | | **{after['subset_recall']:.4f}** |")
    out(f"| after, every query ({passes(run['after'])}) | {after['queries']:,} | 0 | {after['p50_us'] / 1e3:.2f} | "
        f"{after['p99_us'] / 1e3:.2f} | {after['mean_us'] / 1e3:.2f} | {after['max_us'] / 1e3:.1f} | "
        f"{after['recall']:.4f} |")
    out("")
    if blocks:
        step = max(1, len(blocks) // 8)
        picked = blocks[::step]
        if picked[-1] is not blocks[-1]:
            picked.append(blocks[-1])
        out("Latency against the pending count (blocks of 100 consecutive queries during the catch-up): "
            + "; ".join(f"{x['pending_start']:,} pending: p50 {x['p50_us'] / 1e3:.0f} ms, p99 "
                        f"{x['p99_us'] / 1e3:.0f} ms" for x in picked) + ".")
        out("")

    # Reading.
    out("Reading:")
    out("")
    for line in readings:
        out(f"- {line}")
    out(f"- The burst: {b['vectors']:,} embeddings acknowledged in {b['secs']:.1f} s; the graph caught up "
        f"{catch_secs / 60:.1f} min after its end, so the worker's insert, not the acknowledgement, bounds "
        "a sustained rate.")
    if b["set_p99_ms"] > 5 * b["set_p50_ms"]:
        out(f"- The burst's SETs spread: p50 {b['set_p50_ms']:.0f} ms, p99 {b['set_p99_ms']:.0f} ms, max "
            f"{b['set_max_ms']:.0f} ms. Slow ones can come from the worker running alongside (from 4,096 pending "
            "on it takes the index lock and a journal handle between SETs) or from a commit that must first "
            "checkpoint the journal; this benchmark does not tell the two apart.")
    if during and during["queries"]:
        ok = during["recall"] >= (after.get("subset_recall") or after["recall"])
        out(f"- Recall@10 during the catch-up {during['recall']:.4f} against {after.get('subset_recall') or after['recall']:.4f} "
            f"after it for the same queries: {'not lower' if ok else '**lower**'} (pending vectors are "
            "scanned exactly, the graph is approximate).")
        out(f"- Latency during the catch-up is that of the exact scan of the pending vectors: p50 "
            f"{during['p50_us'] / 1e3:.0f} ms with {during['pending_first']:,} → {during['pending_last']:,} pending, "
            f"{during['p50_us'] / after['p50_us']:.0f}× the {after['p50_us'] / 1e3:.1f} ms after it. Searches and the "
            "worker share the index lock: while the loop ran, the worker linked "
            f"{(b['pending'] - during['pending_after']) / (during['t_end'] - b['t_end']):,.0f} vectors/s"
            + (f" against {during['pending_after'] / (wait['t_end'] - during['t_end']):,.0f} without searches"
               if wait["t_end"] > during["t_end"] else "") + ".")
    out("")
    clocks = {c["at"]: c for c in res.all("clock")}
    if "start" in clocks and "end" in clocks:
        tsc = clocks["end"]["t"] - clocks["start"]["t"]
        jiffies = clocks["end"]["uptime"] - clocks["start"]["uptime"]
        out(f"Clock: every time above is the guest's TSC (the host's, under TCG) at the host's measured "
            f"{run.get('tsc_mhz', 0):,.1f} MHz: {tsc / 60:.1f} min from the guest script's start to its end, "
            f"within the host's {run['wall_secs'] / 60:.1f} min for the whole guest run (boot included); "
            f"the guest's own clock (jiffies) counted {jiffies / 60:.1f} min over the same span"
            + (f", {100 * (1 - jiffies / tsc):.0f}% slow: it loses ticks when the host is busy, which is why it "
               "is not used" if jiffies < 0.98 * tsc else "") + ".")
        out("")
    ok = "clean" if run["fsck_vexfs"] == 0 else f"status {run['fsck_vexfs']}"
    out(f"After the run: `fsck.vexfs -n` of the burst's filesystem (on the host) {ok}; `fsck.vexfs -n` "
        "clean after every round measurement (in the guest).")
    out("")
    load = res.all("host-load")
    samples = load[0]["samples"] if load else []
    if samples:
        shared = sum(1 for _, _, others in samples if others > 0)
        host = (f"The host was shared: another QEMU guest ran in {shared} of {len(samples)} samples taken every 20 s "
                f"during the guest run (the host's load average {min(x[1] for x in samples):.1f} to "
                f"{max(x[1] for x in samples):.1f} on 2 cores)" if shared else
                f"No other QEMU guest ran during the guest run ({len(samples)} samples every 20 s; the host's "
                f"load average up to {max(x[1] for x in samples):.1f} on 2 cores)")
    else:
        busy = run.get("host_qemu_other", [0, 0])
        host = (f"Other QEMU guests ran on the same 2-core host ({busy[0]} at the run's start, {busy[1]} at its end)"
                if any(busy) else "No other QEMU guest ran on the host at the start or the end of the run")
    out("Caveats. Under TCG every instruction is emulated, so the CPU-bound paths (the HNSW insert, the "
        "exact scan) weigh more than on hardware. QEMU's `cache=unsafe` makes a flush cost its "
        "submission only: on a disk with a flush latency, both modes pay it once per SET (one writer here, "
        "so no group commit), which pulls the WAL ÷ now ratios towards 1, most for small SETs; several "
        f"concurrent writers, whose SETs would share commits, are not measured. {host}: "
        "absolute numbers are noisy across runs, ratios within a round less so.")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--report")
    a = ap.parse_args()
    text = report(Results(a.results))
    print(text)
    if a.report:
        write_section(a.report, text, BEGIN, END)
        print(f"wal.py: section written to {a.report}", file=sys.stderr)


if __name__ == "__main__":
    main()
