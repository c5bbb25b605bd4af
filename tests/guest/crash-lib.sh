# Host side of the crash tests (tests/guest/070-crash-replay.sh, scripts/power-cut). Source it
# after tests/guest/lib.sh (it uses gen_data and fail).
# shellcheck shell=bash

# crash_share DIR FS SMALL: fills DIR, shared with the guest at /share, for tests/guest/crash-guest.sh:
# the script itself, crash-env.sh (FS: vexfs or ext4; SMALL: small files made by the workload),
# data/sN (N bytes of gen_data each) and emb.fvecs (the pydocs sample's 100 queries, dim 384: one
# row per SET, never reused).
crash_share() {
    local dir=$1 fs=$2 small=$3 size
    mkdir -p "$dir/data"
    cp "$VEXFS_ROOT/tests/guest/crash-guest.sh" "$dir/crash-guest.sh"
    printf 'FS=%s\nSMALL=%s\n' "$fs" "$small" > "$dir/crash-env.sh"
    cp "$VEXFS_ROOT/data/pydocs-minilm/small/query.fvecs" "$dir/emb.fvecs"
    for size in 0 1 100 4096 5000 70000 $(seq 1 20 | awk '{ print $1 * 300 + 7 }'); do
        gen_data "$SEED-$size" "$size" > "$dir/data/s$size" || fail "gen_data $size"
    done
}

# crash_image FS: prints the path of a new 16 MiB image holding an empty filesystem FS (vexfs:
# 64 vector slots of dimension 384 (CRASH_VECTORS for a longer workload), l2, the HNSW seed from
# $SEED; with CRASH_QUANT=pq, PQ codes of 48 bytes in node records, the codebook trained on the
# pydocs sample: a SET then writes vectors and level-0 links into the same blocks; ext4:
# mkfs.ext4 defaults).
crash_image() {
    local img quant=()
    case "${CRASH_QUANT:-none}" in
        none) ;;
        pq) quant=(--quant pq:48 --pq-layout records --train "$VEXFS_ROOT/data/pydocs-minilm/small/base.fvecs") ;;
        *) fail "CRASH_QUANT must be none or pq, not '$CRASH_QUANT'" ;;
    esac
    if [ "$1" = vexfs ]; then
        # `|| exit`: set -e does not reach into the caller's $(crash_image ...).
        img=$(mkimg 16M --dim 384 --metric l2 --vectors "${CRASH_VECTORS:-64}" --seed "$((SEED % 1000000))" "${quant[@]}") || exit 1
        if [ "${CRASH_QUANT:-none}" = pq ]; then
            has_node_records "$img" || fail "crash_image: no node records in $img"
        fi
        echo "$img"
    else
        img=$(mkraw 16M)
        mkfs.ext4 -q -F "$img" >&2 || fail "mkfs.ext4 $img"
        echo "$img"
    fi
}

# crash_share_dmsetup DIR: copies the host's dmsetup and every library ldd lists for it, beside
# the dynamic loader that starts it, into DIR/dm (the guest runs it through dm_create and $DM of
# tests/guest/crash-guest.sh; ../shared/KERNEL-NOTES.md, last section). Needs the Debian package
# dmsetup.
crash_share_dmsetup() {
    local dir=$1 dmsetup lib
    dmsetup=$(command -v dmsetup || true)
    [ -n "$dmsetup" ] || fail "no dmsetup on the host: install the Debian package dmsetup"
    mkdir -p "$dir/dm"
    cp -L "$dmsetup" "$dir/dm/dmsetup"
    ldd "$dmsetup" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
        cp -L "$lib" "$dir/dm/$(basename "$lib")"
    done
    [ -f "$dir/dm/ld-linux-x86-64.so.2" ] || fail "ldd $dmsetup lists no ld-linux-x86-64.so.2"
}
