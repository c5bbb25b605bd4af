#!/usr/bin/env bash
# The frozen image of on-disk format v1 (tests/images/v1.img.gz) reads through the kernel exactly
# as tests/images/v1.manifest says: every path with its inode number, mode, owner, link count,
# size, blocks and nanosecond mtime/ctime (stat), every file's sha256 (holes included), the
# symlink targets (readlink), every file's embeddings (vexctl get, the bits printed exactly) and
# chunk 0 as the xattr user.vexfs.embedding, the HNSW counts (vexctl stats: 12 vectors, 3
# tombstones) and the k-NN answers with their exact distances (vexctl search). The host tools
# read it the same (fsck.vexfs -n, vexctl cat, vexctl search-image) before the boot, and
# fsck.vexfs -n finds it clean after the kernel unmounts it, in the guest and on the host. The
# read-write mount upgrades it to the current format, v3 (the version field reads 3 after the boot).
# The image is decompressed to a temporary copy; the committed file is never written.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/frozen-lib.sh"

frozen_prepare 1

# ---- the host tools on the untouched image ---------------------------------------------------

frozen_host_tools "$img"

# ---- the kernel ----------------------------------------------------------------------------------

script=$(guest_script frozen.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/frozen-check.sh
mount_vexfs /dev/vda /mnt
frozen_check
must umount /mnt

section "fsck after the kernel"
must fsck.vexfs -n /dev/vda
GUEST
)
# Before the boot the image is format v1; the kernel's read-write mount upgrades it to the
# current version, 3 (docs/FORMAT.md, version history), and the clean unmount leaves RECOVER clear.
[ "$(ver format_version)" = 1 ] || fail "the frozen image should be format v1"
run_guest --disk "$img" --share "$share" --timeout 300 "$script"
[ "$(ver format_version)" = 3 ] || fail "a read-write mount should upgrade the image to format v3"
[ "$(ver feature_incompat)" = 0 ] || fail "RECOVER should be clear after a clean unmount"
check_fsck "$img"
echo "060-frozen-v1: PASS"
