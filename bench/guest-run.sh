#!/bin/sh
# Runs in the QEMU guest (bench/guest.sh boots it): the in-kernel search against the same core
# code in userspace, on the same image, in the same guest.
#
#   guest-run.sh EFS PASSES ROUNDS K [CONC_EF [QUANT SIZE_MIB]]
#
# /dev/vda: a fresh vexfs sized for the data; /share: base.fvecs, query.fvecs, groundtruth.ivecs
# and the two benchmark tools (guest-search: VEXFS_IOC_SEARCH; bench_search: the image crate's
# Searcher, the code behind `vexctl search-image`; bench_core: core's MemIndex). Steps: `vexctl
# import` of the base set into /mnt/docs and the index worker's linking of it (wait-indexed),
# `vexctl stats`, the same vectors built in userspace, one thread: by bench_core (core's
# MemIndex, float32), and, given QUANT (none or sq8, the image's --quant) and SIZE_MIB, by
# `mkfs.vexfs --import -j 1` into a file in /tmp of SIZE_MIB (its links phase: the kernel's own
# insert code, core::vindex, on the same kind of image: the like-with-like reference), then ROUNDS
# times: mount read-only; at each EF in turn, kernel searches and userspace searches on /dev/vda
# (beside the mount) with the kernel's distance kernels, one after the other, the side that
# goes first alternating from one EF (and round) to the next; umount; a byte-for-byte
# comparison of both sides' results for every EF. Each side also searches with one thread per
# vCPU at once (-t: "kernel-mt", "user-mt").
# With CONC_EF > 0 and a second disk /dev/vdb (a fresh vexfs sized for twice the base set), the
# searches during an import: the base set imported into /mnt/docs alone ("conc-import"), the
# kernel searches at CONC_EF on the idle index (phase "idle"), then /share/neg.fvecs imported
# into /mnt/neg and linked while guest-search runs one pass after another (phase "during",
# numbered by "iteration"), then the idle searches again (phase "after"); guest-search's records
# of this part have their sides prefixed "conc-".
# Every result is a line "BENCH {json}".
# Never print the words the harness takes for kernel errors (see scripts/lib.sh).
. /lib/vexfs/guest-lib.sh
EFS=$1
PASSES=$2
ROUNDS=$3
K=$4
CONC_EF=${5:-0}
QUANT=${6:-}
SIZE_MIB=${7:-}
# Threads searching at once in the second measurement of each EF: one per vCPU.
THREADS=$(grep -c ^processor /proc/cpuinfo)
S=/share

cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)
section "guest: $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs, clocksource $cs"
echo "BENCH {\"side\": \"guest\", \"kernel\": \"$(uname -r)\", \"cpus\": $(grep -c ^processor /proc/cpuinfo), \"clocksource\": \"$cs\"}"
# import_linked FVECS DIR: `vexctl import` of FVECS into DIR on the vexfs at /mnt, then the
# index worker's linking of it. The SETs are acknowledged through the vector write-ahead log and
# linked into the graph after: the ingest is done when they are (and searches then see no
# pending vector). Prints vexctl's line on stderr and, on stdout, the fields of a BENCH record:
# "wall_secs" (until acknowledged), "linked_secs" (until linked), "summary" (vexctl's line).
import_linked() {
    t0=$(date +%s)
    out=$(vexctl import "$1" "$2" --quiet) || fail "vexctl import of $1 into $2: $out"
    t1=$(date +%s)
    echo "$out" >&2
    must vexctl wait-indexed -q /mnt --timeout 7200 >&2
    t2=$(date +%s)
    echo "\"wall_secs\": $((t1 - t0)), \"linked_secs\": $((t2 - t0)), \"summary\": \"$out\""
}

mount_vexfs /dev/vda /mnt
section "import $S/base.fvecs"
fields=$(import_linked $S/base.fvecs /mnt/docs) || exit 1
echo "BENCH {\"side\": \"import\", $fields}"
vexctl stats /mnt --json > /tmp/stats.json || fail "vexctl stats"
echo "BENCH {\"side\": \"stats\", \"stats\": $(tr -d '\n' < /tmp/stats.json)}"
umount /mnt || fail "umount after import"

section "userspace build of the same vectors (core MemIndex, one thread)"
$S/bench_core $S/base.fvecs $S/query.fvecs $S/groundtruth.ivecs --efs 64 --passes 1 \
    > /tmp/core.json || fail "bench_core (status $?)"
echo "BENCH {\"side\": \"user-build\", \"core\": $(tr -d '\n' < /tmp/core.json)}"
if [ -n "$QUANT" ]; then
    section "userspace build of the same vectors (mkfs.vexfs --import -j 1 --quant $QUANT)"
    # none: on the floats, the kernel's insert's distances (not --build-on auto's codes).
    qargs="--build-on float"
    [ "$QUANT" = none ] || qargs="--quant $QUANT --train $S/base.fvecs"
    # shellcheck disable=SC2086 # qargs: words
    out=$(mkfs.vexfs -f --import $S/base.fvecs --import-dir docs --metric l2 -j 1 $qargs \
        /tmp/user-build.img "${SIZE_MIB}M" 2>&1) || fail "mkfs.vexfs --import in the guest: $out"
    rm -f /tmp/user-build.img
    # "Imported N rows ...: files in F s (...), N vectors linked in L s (...)"
    line=$(echo "$out" | grep '^Imported ')
    links=$(echo "$line" | sed -n 's/.* vectors linked in \([0-9.]*\) s.*/\1/p')
    files=$(echo "$line" | sed -n 's/.*: files in \([0-9.]*\) s.*/\1/p')
    [ -n "$links" ] && [ -n "$files" ] || fail "no phase times in mkfs.vexfs's output: $line"
    echo "BENCH {\"side\": \"user-build-vindex\", \"quant\": \"$QUANT\", \"files_secs\": $files, \"links_secs\": $links}"
fi

# The distance implementation the kernel picked (vexctl stats above): userspace runs the same.
impl=$(json_str distance_impl /tmp/stats.json)
[ -n "$impl" ] || fail "no distance_impl in vexctl stats --json"
r=0
while [ "$r" -lt "$ROUNDS" ]; do
    # Kernel and userspace take turns at each EF, on one read-only mount (userspace reads
    # /dev/vda beside it: the same page-cache pages the kernel holds), the side that goes
    # first alternating from one EF and one round to the next: both sides see the same
    # stretch of a noisy host, not one side the first half of a round and the other the last.
    section "round $r: kernel (VEXFS_IOC_SEARCH) and userspace (image crate Searcher on /dev/vda, $impl) in turns, ef $EFS"
    mount_vexfs /dev/vda /mnt ro
    i=$r
    for ef in $(echo "$EFS" | tr ',' ' '); do
        if [ $((i % 2)) -eq 0 ]; then order="kernel user"; else order="user kernel"; fi
        i=$((i + 1))
        for side in $order; do
            if [ "$side" = kernel ]; then
                $S/guest-search /mnt /mnt/docs $S/query.fvecs $S/groundtruth.ivecs "$ef" -k "$K" \
                    -p "$PASSES" -t "$THREADS" -d /tmp/k$r > /tmp/k$r.out || fail "guest-search (status $?)"
                sed "s/^BENCH {/BENCH {\"round\": $r, /" /tmp/k$r.out
            else
                $S/bench_search /dev/vda $S/query.fvecs $S/groundtruth.ivecs "$ef" -k "$K" -p "$PASSES" \
                    -t "$THREADS" --dist-impl "$impl" -d /tmp/u$r > /tmp/u$r.out || fail "bench_search (status $?)"
                sed "s/^BENCH {/BENCH {\"round\": $r, /" /tmp/u$r.out
            fi
        done
    done
    umount /mnt || fail "umount"

    for ef in $(echo "$EFS" | tr ',' ' '); do
        kf=/tmp/k$r-$ef.txt
        uf=/tmp/u$r-$ef.txt
        [ -f "$kf" ] && [ -f "$uf" ] || continue
        kl=$(wc -l < "$kf")
        ul=$(wc -l < "$uf")
        d=$(paste -d'|' "$kf" "$uf" | awk -F'|' '$1 != $2 { n++ } END { print n + 0 }')
        same=false
        cmp -s "$kf" "$uf" && same=true
        echo "BENCH {\"side\": \"compare\", \"round\": $r, \"ef\": $ef, \"identical\": $same, \"kernel_lines\": $kl, \"user_lines\": $ul, \"differing_lines\": $d}"
        if [ "$same" != true ]; then
            echo "first differing lines (query rank ino chunk distance-bits), kernel | user:"
            paste -d'|' "$kf" "$uf" | awk -F'|' '$1 != $2' | head -n 5
        fi
    done
    r=$((r + 1))
done

# conc_search PHASE ITERATION PASSES: guest-search at CONC_EF on the read-write mount of
# /dev/vdb, its records tagged with the phase and iteration.
conc_search() {
    $S/guest-search /mnt /mnt/docs $S/query.fvecs $S/groundtruth.ivecs "$CONC_EF" -k "$K" -p "$3" \
        -t "$THREADS" > /tmp/conc.out || fail "guest-search, phase $1 (status $?)"
    sed -n "s/^BENCH {\"side\": \"/BENCH {\"phase\": \"$1\", \"iteration\": $2, \"side\": \"conc-/p" /tmp/conc.out
}

if [ "$CONC_EF" -gt 0 ] && [ -b /dev/vdb ]; then
    section "searches during an import (/dev/vdb): the base set alone first"
    mount_vexfs /dev/vdb /mnt
    fields=$(import_linked $S/base.fvecs /mnt/docs) || exit 1
    echo "BENCH {\"side\": \"conc-import\", \"searches\": false, $fields}"
    conc_search idle 0 "$PASSES"

    section "searches at ef $CONC_EF while $S/neg.fvecs is imported into /mnt/neg and linked"
    import_linked $S/neg.fvecs /mnt/neg > /tmp/neg.fields &
    pid=$!
    i=0
    while kill -0 "$pid" 2> /dev/null; do
        conc_search during "$i" 1
        i=$((i + 1))
    done
    wait "$pid" || fail "the import of neg.fvecs during the searches failed (status $?)"
    echo "BENCH {\"side\": \"conc-import\", \"searches\": true, \"search_runs\": $i, $(cat /tmp/neg.fields)}"
    conc_search after 0 "$PASSES"
    umount /mnt || fail "umount of the second image"
fi
section "done"
