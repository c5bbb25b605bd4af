#!/bin/sh
# Runs in the QEMU guest (bench/budget.sh boots it): each disk (/dev/vda, /dev/vdb, ...: one
# bulk-built image per LABEL) mounted without a budget, then with index_mem = its vector and
# index regions' bytes / RATIO (at least 256 KiB); guest-search at EFS each time. Every result
# is a line "BENCH {json}" tagged with the image's label and the budget (0: none).
#
# A third mount has index_mem = 0.35 x the raw float32 vectors (RAW_BYTES: rows x dim x 4), the
# SQ8 target's memory; a fourth a tenth of the float32 index (F32_BYTES: rows x (vector stride +
# level-0 record)), the PQ target's. BUDGETS chooses the mounts, in its order: none, ratio,
# raw35, f32x10. On a disk whose LABEL ends in -codes (sq8-codes: a copy of the sq8 image),
# every search asks for the codes' distances (guest-search -c: VEXFS_SEARCH_CODE_DISTANCES).
#
#   budget-run.sh EFS PASSES RATIO RAW_BYTES F32_BYTES BUDGETS LABEL...
. /lib/vexfs/guest-lib.sh
EFS=$1
PASSES=$2
RATIO=$3
RAW=$4
F32=$5
BUDGETS=$6
shift 6
S=/share
set -- "$@"
dev=a
for label in "$@"; do
    d=/dev/vd$dev
    mount_vexfs $d /mnt
    bytes=$(vexctl stats /mnt --json | tr -d ' ' | grep -o '"bytes_on_disk":[0-9]*' | cut -d: -f2)
    must umount /mnt
    budget=$((bytes / RATIO / 4096 * 4096))
    [ $budget -ge 262144 ] || budget=262144
    raw35=$((RAW * 35 / 100 / 4096 * 4096))
    [ $raw35 -ge 262144 ] || raw35=262144
    f32x10=$((F32 / 10 / 4096 * 4096))
    [ $f32x10 -ge 262144 ] || f32x10=262144
    mounts=
    for which in $(echo "$BUDGETS" | tr , ' '); do
        case $which in
            none) mounts="$mounts 0" ;;
            ratio) mounts="$mounts $budget" ;;
            raw35) mounts="$mounts $raw35" ;;
            f32x10) mounts="$mounts $f32x10" ;;
            *) fail "unknown budget $which" ;;
        esac
    done
    for b in $mounts; do
        section "$label: index $bytes bytes, budget $b"
        if [ $b = 0 ]; then mount_vexfs $d /mnt; else mount_vexfs $d /mnt index_mem=$b; fi
        # A label ending in -codes: the searches rank by the codes' distances.
        codes=
        case $label in *-codes) codes=-c ;; esac
        # shellcheck disable=SC2086 # $codes: the flag or nothing
        $S/guest-search /mnt /mnt/docs $S/query.fvecs $S/groundtruth.ivecs "$EFS" -k 10 -p "$PASSES" $codes > /tmp/out.txt ||
            fail "guest-search on $label (budget $b)"
        sed -n "s/^BENCH {/BENCH {\"image\": \"$label\", \"index_bytes\": $bytes, \"raw_bytes\": $RAW, \"f32_bytes\": $F32, \"budget\": $b, /p" /tmp/out.txt
        vexctl stats /mnt
        must umount /mnt
    done
    dev=$(echo $dev | tr 'a-y' 'b-z')
done
