#!/usr/bin/env bash
# The frozen image of on-disk format v3 with the feature SQ8 (tests/images/v3-sq8.img.gz)
# through the kernel: tests/guest/frozen-codes.sh says what runs.
FROZEN=3-sq8 FEATURES=10 CODES=SQ8 FIELD='"sq8_shift": 5,' . "$(dirname "$0")/frozen-codes.sh"
echo "065-frozen-v3-sq8: PASS"
