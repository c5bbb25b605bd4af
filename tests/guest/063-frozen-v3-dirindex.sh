#!/usr/bin/env bash
# The frozen image of on-disk format v3 with the feature DIR_INDEX (tests/images/v3-dirindex.img.gz:
# indexed directories) through the kernel. The image is a clean filesystem whose /big is an
# indexed directory of 1,970 entries (names of 1 to 64 bytes and 255-byte ones; 100 files, hard
# links to 9 of them, subdirectories, symlinks, a FIFO; about 280 names removed by the writer)
# in 42 buckets at depths 5 to 7, next to /small, a linear directory of one block.
#
# Before the boot, the host tools read it as the manifest says (fsck.vexfs -n, vexctl cat,
# vexctl search-image). In the guest, every manifest item reads the same through the kernel (as
# 060 checks v1's: stat of every path, so every name is looked up through the index; sha256sum,
# vexctl get and the xattr once per file, not once per hard link; readlink; stats; the search),
# and readdir of each indexed directory (find, which does not sort) gives its names in the key
# order of the manifest's dirindex item (count and sha256). Then the kernel changes /big: 400
# new names (100 files, 20 directories, 280 hard links; 255-byte ones among them) that split its
# buckets further, 200 unlinks (hard links of the image and new files), an rmdir, renames within /big (a
# file, over an existing name, the subdirectory holding a file with an embedding), out of it
# (a file, a subdirectory) and into it; ls gives exactly the names the same operations give on
# the host, once per name, the directory's link count follows its subdirectories and its blocks
# grew (splits); after a remount with fsck.vexfs -n clean before it the same again, the moved
# file's embedding and contents included. fsck.vexfs -n is clean in the guest and on the host
# after, and the host's vexctl ls lists /big and /small as the guest did. The image is
# decompressed to a temporary copy; the committed file is never written.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/frozen-lib.sh"

frozen_prepare 3-dirindex

# ---- the host tools on the untouched image ---------------------------------------------------

frozen_host_tools "$img"
[ "$(ver format_version)" = 3 ] || fail "the frozen image should be format v3"
[ "$(ver feature_incompat)" = 2 ] || fail "the frozen image should have DIR_INDEX (2) and nothing else"

# Contents, chunks and the xattr once per file inode (its first path): 1,850 hard links read
# through the kernel would each repeat what their inode's first path shows; stat of every path
# (frozen_check's tree) already checks each name leads to its inode.
awk '$1 == "inode" && $3 == "file" { f[$2] = 1 } $1 == "path" && f[$2] && !seen[$2]++ { print $3 }' "$M" > "$T/keep"
[ "$(wc -l < "$T/keep")" -lt 120 ] || fail "the manifest should name about 100 files"
cp "$T/keep" "$share/files.list"
for f in data xattr; do
    awk 'NR == FNR { k[$1] = 1; next } k[$1]' "$T/keep" "$share/$f.expected" > "$T/$f.kept"
    mv "$T/$f.kept" "$share/$f.expected"
done
awk 'NR == FNR { k["/mnt" $1] = 1; next } /^\/mnt/ { p = $1; sub(/:$/, "", p); keep = (p in k) } keep' \
    "$T/keep" "$share/get.expected" > "$T/get.kept"
mv "$T/get.kept" "$share/get.expected"
[ "$(wc -l < "$share/data.expected")" = "$(wc -l < "$T/keep")" ] || fail "filtering data.expected"

# The indexed directories' readdir: "PATH ENTRIES SHA256" (the names in key order).
: > "$share/dirindex.expected"
while read -r _ ino _ _ _ entries sum; do
    path=$(awk -v i="$ino" '$1 == "path" && $2 == i { print $3; exit }' "$M")
    echo "$path $entries $sum" >> "$share/dirindex.expected"
done < <(grep '^dirindex ' "$M")
grep -q -x "/big 1970 [0-9a-f]*" "$share/dirindex.expected" || fail "the manifest should index /big (1,970 entries)"

# ---- the kernel's changes, as operations on paths under /mnt, simulated on the host ----------

# /big's names and types as the image holds them; its subdirectories by content.
declare -A type_of big small
while read -r _ ino type _; do type_of[$ino]=$type; done < <(grep '^inode ' "$M")
while read -r _ ino path; do
    case $path in
        /big/*/*) ;;
        /big/*) big[${path#/big/}]=${type_of[$ino]} ;;
        /small/*/*) ;;
        /small/*) small[${path#/small/}]=${type_of[$ino]} ;;
    esac
done < <(grep '^path ' "$M")
[ "${#big[@]}" = 1970 ] || fail "the manifest should give /big 1,970 names, not ${#big[@]}"
with_embedding=$(awk '$1 == "path" && $3 ~ /^\/big\/[^\/]+\/deep\.txt$/ { split($3, p, "/"); print p[3] }' "$M")
with_alias=$(awk '$1 == "path" && $3 ~ /^\/big\/[^\/]+\/alias-of-10$/ { split($3, p, "/"); print p[3] }' "$M")
empty_dir=""
for n in "${!big[@]}"; do
    [ "${big[$n]}" = dir ] && ! grep -q "^path [0-9]* /big/$n/" "$M" && { empty_dir=$n; break; }
done
[ -n "$with_embedding" ] && [ -n "$with_alias" ] && [ -n "$empty_dir" ] ||
    fail "the manifest should give /big a subdirectory with deep.txt, one with alias-of-10 and an empty one"
# Hard links of the image (files with more than 10 links), sorted by name: the unlinks and
# renames; over_src and over_dst, two of them naming different inodes (rename over a name).
declare -A link_ino
while read -r n ino; do link_ino[$n]=$ino; done < <(awk '$1 == "inode" && $3 == "file" && $7 > 10 { l[$2] = 1 }
    $1 == "path" && l[$2] && $3 ~ /^\/big\/[^\/]+$/ { print substr($3, 6), $2 }' "$M")
mapfile -t links < <(printf '%s\n' "${!link_ino[@]}" | LC_ALL=C sort)
[ "${#links[@]}" -gt 1500 ] || fail "the manifest should give /big over 1,500 hard links"
target=${links[0]} over_src=${links[3]} over_dst=${links[4]}
[ "${link_ino[$over_src]}" != "${link_ino[$over_dst]}" ] || over_dst=${links[6]}
[ "${link_ino[$over_src]}" != "${link_ino[$over_dst]}" ] || fail "links 3, 4 and 6 name one inode"

# new_name I: the I-th new name, 8 to 124 bytes, every 25th 255.
new_name() {
    local len=$((8 + ($1 * 53) % 117)) s="new$1-"
    [ $(($1 % 25)) = 0 ] && len=255
    while [ ${#s} -lt "$len" ]; do s+="xyzzy"; done
    echo "${s:0:$len}"
}

ops="$share/ops"
{
    for i in $(seq 0 399); do
        n=$(new_name "$i")
        # 100 new files and 20 directories (the image has 144 free inodes), 280 hard links.
        if [ $((i % 20)) = 7 ]; then
            echo "mkdir big/$n"
        elif [ $((i % 4)) = 0 ]; then
            echo "create big/$n"
        else
            echo "link big/$target big/$n"
        fi
    done
    for i in $(seq 0 149); do echo "rm big/${links[$((1 + i * 10))]}"; done
    for i in $(seq 0 49); do echo "rm big/$(new_name $((i * 8)))"; done
    echo "rmdir big/$empty_dir"
    echo "mv big/${links[2]} big/renamed-within"
    echo "mv big/$over_src big/$over_dst"
    echo "mv big/$with_embedding big/renamed-dir-with-embedding"
    echo "mv big/${links[5]} small/moved-out"
    echo "mv big/$with_alias small/moved-dir"
    echo "mv small/a big/moved-in"
} > "$ops"

# The same operations on the host's model of /big and /small: NAME -> dir or file.
simulate() {
    local -n from=$1
    case $2 in
        create | link) from[$3]=file ;;
        mkdir) from[$3]=dir ;;
        rm | rmdir) [ -n "${from[$3]:-}" ] || fail "simulated $2 of a missing $3"; unset "from[$3]" ;;
    esac
}
while read -r op a b; do
    case $op in
        create | mkdir | rm | rmdir) simulate "${a%%/*}" "$op" "${a#*/}" ;;
        link) simulate "${b%%/*}" link "${b#*/}" ;;
        mv)
            declare -n src=${a%%/*} dst=${b%%/*}
            t=${src[${a#*/}]:-}
            [ -n "$t" ] || fail "simulated mv of a missing $a"
            unset "src[${a#*/}]"
            dst[${b#*/}]=$t
            unset -n src dst
            ;;
    esac
done < "$ops"
printf '%s\n' "${!big[@]}" > "$share/big.expected"
printf '%s\n' "${!small[@]}" > "$share/small.expected"
big_dirs=0
for n in "${!big[@]}"; do [ "${big[$n]}" = dir ] && big_dirs=$((big_dirs + 1)); done
{
    echo "BIG_NAMES=${#big[@]}"
    echo "BIG_LINKS=$((2 + big_dirs))"
    echo "DEEP_SHA=$(awk '$1 == "path" && $3 ~ /\/deep\.txt$/ { i = $2 } $1 == "data" && $2 == i { print $3 }' "$M")"
} > "$share/expect.env"
echo "operations: $(wc -l < "$ops"); /big ends with ${#big[@]} names ($big_dirs directories), /small with ${#small[@]}"

# A static helper running the operations: one process for all of them (a process each costs
# about a quarter of a second under emulation). "N ops, ok", or the failed operation and errno.
cat > "$T/run-ops.c" <<'C'
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static char line[2048], a[1024], b[1024];
	FILE *f = argc == 3 ? fopen(argv[2], "r") : NULL;
	int n = 0;
	if (!f) {
		fprintf(stderr, "usage: run-ops ROOT OPS\n");
		return 2;
	}
	while (fgets(line, sizeof(line), f)) {
		char op[16], x[512], y[512];
		int k = sscanf(line, "%15s %511s %511s", op, x, y), r, fd;
		if (k < 2)
			continue;
		snprintf(a, sizeof(a), "%s/%s", argv[1], x);
		snprintf(b, sizeof(b), "%s/%s", argv[1], k == 3 ? y : "");
		if (!strcmp(op, "create")) {
			fd = open(a, O_WRONLY | O_CREAT | O_EXCL, 0644);
			r = fd < 0 ? -1 : close(fd);
		} else if (!strcmp(op, "mkdir")) {
			r = mkdir(a, 0755);
		} else if (!strcmp(op, "link") && k == 3) {
			r = link(a, b);
		} else if (!strcmp(op, "rm")) {
			r = unlink(a);
		} else if (!strcmp(op, "rmdir")) {
			r = rmdir(a);
		} else if (!strcmp(op, "mv") && k == 3) {
			r = rename(a, b);
		} else {
			fprintf(stderr, "unknown operation: %s", line);
			return 2;
		}
		if (r != 0) {
			fprintf(stderr, "operation %d, %s %s %s: %s\n", n + 1, op, x, k == 3 ? y : "", strerror(errno));
			return 1;
		}
		n++;
	}
	printf("%d ops, ok\n", n);
	return 0;
}
C
"${CC:-cc}" -static -O2 -Wall -Wextra -Werror "$T/run-ops.c" -o "$share/run-ops" ||
    fail "cannot build the operations helper with ${CC:-cc} -static"

# ---- the kernel ----------------------------------------------------------------------------------

script=$(guest_script frozen-v3-dirindex.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/frozen-check.sh
. /share/expect.env
# Sections with the guest's uptime: where its time goes.
section() { echo "== $* (uptime $(cut -d' ' -f1 /proc/uptime) s)"; }

# readdir_order: each indexed directory's names in readdir order (find does not sort): count
# and sha256, as the manifest's dirindex item says.
readdir_order() {
    : > /tmp/dirindex.out
    while read -r path _; do
        find "/mnt$path" -mindepth 1 -maxdepth 1 | sed "s|^/mnt$path/||" > /tmp/order
        echo "$path $(wc -l < /tmp/order) $(sha256sum < /tmp/order | cut -d' ' -f1)" >> /tmp/dirindex.out
    done < "$S/dirindex.expected"
    same dirindex
}

# listings: /big and /small as the operations leave them, each name once; /big's link count.
listings() {
    ls -1 /mnt/big > /tmp/big.out || fail "ls /mnt/big"
    same big
    ls -1 /mnt/small > /tmp/small.out || fail "ls /mnt/small"
    same small
    assert_eq "$(ls /mnt/big | wc -l)" "$BIG_NAMES" "ls /mnt/big | wc -l"
    assert_eq "$(find /mnt/big -mindepth 1 -maxdepth 1 | sort | uniq -d | wc -l)" 0 "names readdir gives twice"
    assert_eq "$(find /mnt/big -mindepth 1 -maxdepth 1 | wc -l)" "$BIG_NAMES" "names readdir gives"
    assert_eq "$(stat -c %h /mnt/big)" "$BIG_LINKS" "/big's link count (2 + subdirectories)"
}

mount_vexfs /dev/vda /mnt
frozen_check
section "readdir of the indexed directory: key order, as the manifest says"
readdir_order

section "the kernel changes /big: creates (splits), unlinks, an rmdir, renames within, out of and into it"
before=$(stat -c %b /mnt/big)
cp "$S/run-ops" /tmp/run-ops && chmod +x /tmp/run-ops || fail "copying the operations helper"
assert_eq "$(/tmp/run-ops /mnt "$S/ops")" "$(wc -l < "$S/ops") ops, ok" "the operations"
after=$(stat -c %b /mnt/big)
[ "$after" -gt "$before" ] || fail "/big should have grown (buckets split): $before then $after blocks of 512"
echo "/big: $before then $after blocks of 512 (buckets split)"
listings
cycle() {
    must umount /mnt
    fsck.vexfs -n /dev/vda > /tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "fsck.vexfs -n after $1"; }
    echo "fsck clean after $1"
    mount_vexfs /dev/vda /mnt
}
cycle "the changes"

section "after a remount: the same names; the moved subdirectory's file, its embedding"
listings
assert_eq "$(stat -c %b /mnt/big)" "$after" "/big's blocks after the remount"
assert_eq "$(sha256sum < /mnt/big/renamed-dir-with-embedding/deep.txt | cut -d' ' -f1)" "$DEEP_SHA" "deep.txt's content"
vexctl get /mnt/big/renamed-dir-with-embedding/deep.txt | grep -q '^/mnt/big/renamed-dir-with-embedding/deep.txt: 1 chunk ' ||
    fail "deep.txt should keep its 1 chunk"
assert_eq "$(stat -c %h /mnt/small/moved-dir)" 2 "the moved subdirectory's links"
[ -f /mnt/small/moved-dir/alias-of-10 ] || fail "the moved subdirectory's hard link"
assert_eq "$(cat /mnt/big/moved-in)" "small a" "the file moved into /big"
must umount /mnt

section "fsck after the kernel"
must fsck.vexfs -n /dev/vda
GUEST
)
run_guest --disk "$img" --share "$share" --timeout 300 "$script"
[ "$(ver format_version)" = 3 ] || fail "the image should still be format v3"
[ "$(ver feature_incompat)" = 2 ] || fail "RECOVER should be clear after a clean unmount, DIR_INDEX kept"
check_fsck "$img"
diff <(LC_ALL=C sort "$share/big.expected") <("$VEXCTL" ls "$img" /big | LC_ALL=C sort) ||
    fail "the host's vexctl ls /big differs from the operations' result"
diff <(LC_ALL=C sort "$share/small.expected") <("$VEXCTL" ls "$img" /small | LC_ALL=C sort) ||
    fail "the host's vexctl ls /small differs from the operations' result"
echo "063-frozen-v3-dirindex: PASS"
