#!/usr/bin/env bash
# SQ8 codes through the kernel (`mkfs.vexfs --quant sq8`): tests/guest/codes.sh says what runs.
QUANT=sq8 . "$(dirname "$0")/codes.sh"
echo "048-sq8: PASS"
