#!/usr/bin/env bash
# 070's crash points (the same workload, marks and checks: see 070-crash-replay.sh) on a
# filesystem with PQ codes in node records (CRASH_QUANT=pq: mkfs.vexfs --quant pq:48
# --pq-layout records). There a SET writes the vector and the level-0 links of its slot, and
# of the neighbours it links back to, into shared blocks of the vector data region, and the
# codes beside the codebook: each crash point must still show every acknowledged embedding
# found at distance 0 (the walk on the codes, the re-rank on the records) and fsck clean.
export CRASH_QUANT=pq
exec "$(dirname "$0")/070-crash-replay.sh" "$@"
