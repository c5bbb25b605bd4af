#!/usr/bin/env bash
# The frozen image of on-disk format v3 with the features PQ and NODE_RECORDS
# (tests/images/v3-pq-records.img.gz: v3-pq's filesystem with each vector and its level-0 record
# together in a 96-byte node record of the vector data region) through the kernel, which walks
# the codes, expands each node from its record and writes new vectors and links into records:
# tests/guest/frozen-codes.sh says what runs.
FROZEN=3-pq-records FEATURES=50 CODES=PQ+NODE_RECORDS FIELD='"node_record_bytes": 96,' . "$(dirname "$0")/frozen-codes.sh"
echo "068-frozen-v3-pq-records: PASS"
