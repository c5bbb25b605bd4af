#!/usr/bin/env bash
# PQ codes through the kernel (`mkfs.vexfs --quant pq:48`, 48 bytes per vector, in node records:
# each vector with its level-0 links, docs/FORMAT.md "Node records"), mounted with
# index_mem=1M (256 blocks; the index is several times that): tests/guest/codes.sh says what
# runs. With the budget the kernel reads, evicts and reads again the codebook, codes, links and
# vectors while it searches, and must still give the userspace core's answers byte for byte.
QUANT=pq:48 MOUNT_OPTS=index_mem=1M LAYOUT=records . "$(dirname "$0")/codes.sh"
echo "066-pq: PASS"
