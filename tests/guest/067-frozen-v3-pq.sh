#!/usr/bin/env bash
# The frozen image of on-disk format v3 with the feature PQ (tests/images/v3-pq.img.gz: a PQ
# codebook of 4 sub-quantisers, then a 4-byte code of every vector, tombstones included)
# through the kernel, which reads the codebook at the mount and encodes new vectors with it:
# tests/guest/frozen-codes.sh says what runs.
FROZEN=3-pq FEATURES=18 CODES=PQ FIELD='"pq_m": 4,' . "$(dirname "$0")/frozen-codes.sh"
echo "067-frozen-v3-pq: PASS"
