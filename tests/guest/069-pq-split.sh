#!/usr/bin/env bash
# PQ codes through the kernel as 066-pq.sh, with the split layout (`mkfs.vexfs --quant pq:48
# --pq-layout split`: the vectors in the data region, the level-0 links in the HNSW region, no
# node records): tests/guest/codes.sh says what runs.
QUANT=pq:48 MOUNT_OPTS=index_mem=1M MKFS_OPTS="--pq-layout split" LAYOUT=split . "$(dirname "$0")/codes.sh"
echo "069-pq-split: PASS"
