# Shared by the frozen-image guest tests (060-frozen-v1.sh, 061-frozen-v2.sh): sourced after lib.sh.
# shellcheck shell=bash
# shellcheck disable=SC2034 # variables set here are for the tests that source this file
#
#   frozen_prepare N      decompresses tests/images/vN.img.gz to $img (checked against the
#                         manifest's size and hash) and writes to $share what the guest must see,
#                         built from the manifest $M: tree.expected, files.list, links.expected,
#                         data.expected, get.expected, xattr.expected, queries.fvecs and
#                         queries.list, search.expected, stats.expected; the static xattr helper
#                         xattr-hex; and frozen-check.sh, the guest part (below)
#   frozen_host_tools IMG the host tools read IMG as the manifest says: fsck.vexfs -n clean,
#                         vexctl cat of every file, vexctl search-image of every query
#   field KEY NAME        the value of manifest line "KEY NAME VALUE"
#   ver FIELD             a numeric field of `vexctl inspect --json $img`
#
# In the guest, `. /share/frozen-check.sh` defines `same NAME` (the sorted lines of
# /tmp/NAME.out must equal $S/NAME.expected) and `frozen_check` (every manifest item through the
# kernel, on the filesystem mounted at /mnt: tree, contents, embeddings, xattr, symlinks, stats,
# searches) and `frozen_search` (the searches only).

images="$VEXFS_ROOT/tests/images"
share="$T/share"

field() {
    awk -v k="$1" -v n="$2" '$1 == k && $2 == n { print substr($0, length(k n) + 3); f = 1 } END { exit !f }' "$M" ||
        fail "no '$1 $2' line in the manifest"
}

# stamp SECONDS.NANOSECONDS: the time as busybox stat's %y prints it in the guest (UTC).
stamp() {
    printf '%s.%s +0000' "$(date -u -d "@${1%.*}" '+%Y-%m-%d %H:%M:%S')" "${1#*.}"
}

# The first "$1" field's digits; awk reads to the end (a `head` here could SIGPIPE the writers).
ver() { "$VEXCTL" inspect --json "$img" | tr ',' '\n' | awk -v k="\"$1\"" 'index($0, k) && !n++' | tr -dc '0-9'; }

frozen_prepare() {
    M="$images/v$1.manifest"
    img="$T/v$1.img"
    mkdir -p "$share"
    need_tool "$VEXCTL"

    # The image, checked against the manifest's size and hash.
    gzip -dc "$images/v$1.img.gz" > "$img" || fail "cannot decompress $images/v$1.img.gz"
    local want_size want_sha size
    read -r _ want_size want_sha < <(grep '^image ' "$M")
    size=$(stat -c %s "$img")
    [ "$size" = "$want_size" ] || fail "image is $size bytes, the manifest says $want_size"
    [ "$(sha256sum < "$img" | cut -d' ' -f1)" = "$want_sha" ] || fail "image sha256 differs from the manifest"

    # ---- what the guest must see, built here from the manifest ---------------------------------
    local ino type mode uid gid links size blocks mtime ctime path chunk decimals n bits hex w
    declare -A ino_fields first_path kind chunks_of
    while read -r _ ino type mode uid gid links size blocks _ mtime ctime; do
        ino_fields[$ino]="$ino $(printf '%x' $((8#$mode))) $uid $gid $links $size $((blocks * 8)) $(stamp "$mtime") $(stamp "$ctime")"
        kind[$ino]=$type
    done < <(grep '^inode ' "$M")
    : > "$share/tree.expected"
    : > "$share/files.list"
    : > "$share/links.expected"
    while read -r _ ino path; do
        echo "$path ${ino_fields[$ino]:?"path $path: inode $ino has no inode line"}" >> "$share/tree.expected"
        [ -n "${first_path[$ino]:-}" ] || first_path[$ino]=$path
        case ${kind[$ino]} in
            file) echo "$path" >> "$share/files.list" ;;
            symlink) echo "$path $(field target "$ino")" >> "$share/links.expected" ;;
        esac
    done < <(grep '^path ' "$M")

    # Per regular-file path: its sha256; vexctl get's output; its xattr (chunk 0, little-endian).
    : > "$share/data.expected"
    : > "$share/get.expected"
    : > "$share/xattr.expected"
    while read -r _ ino chunk _ decimals; do
        chunks_of[$ino]+="chunk $chunk: ${decimals//,/ }"$'\n'
    done < <(grep '^chunk ' "$M")
    while read -r path; do
        ino=$(awk -v p="$path" '$1 == "path" && substr($0, length($1 $2) + 3) == p { print $2 }' "$M")
        echo "$path $(field data "$ino")" >> "$share/data.expected"
        n=$(grep -c "^chunk $ino " "$M" || true)
        printf '/mnt%s: %d chunk%s of dimension %d\n%s' "$path" "$n" "$([ "$n" = 1 ] || echo s)" \
            "$(field sb dim)" "${chunks_of[$ino]:-}" >> "$share/get.expected"
        bits=$(awk -v i="$ino" '$1 == "chunk" && $2 == i && $3 == 0 { print $4 }' "$M")
        if [ -n "$bits" ]; then
            hex=""
            for w in ${bits//,/ }; do hex+="${w:6:2}${w:4:2}${w:2:2}${w:0:2}"; done
            echo "$path $((${#hex} / 2)) $hex" >> "$share/xattr.expected"
        else
            echo "$path none" >> "$share/xattr.expected"
        fi
    done < "$share/files.list"

    # The queries as .fvecs rows (row Q = query Q), and vexctl search --json's answer to each.
    local dim dim_le fvecs_hex q k ef pending
    dim=$(field sb dim)
    : > "$share/queries.list"
    : > "$share/search.expected"
    fvecs_hex=""
    dim_le=$(printf '%08x' "$dim")
    while read -r _ q k ef bits _; do
        [ "$q" = "$(wc -l < "$share/queries.list")" ] || fail "query lines out of order at query $q"
        echo "$q $k $ef" >> "$share/queries.list"
        fvecs_hex+="${dim_le:6:2}${dim_le:4:2}${dim_le:2:2}${dim_le:0:2}"
        for w in ${bits//,/ }; do fvecs_hex+="${w:6:2}${w:4:2}${w:2:2}${w:0:2}"; done
        # serde_json prints an f32 as the shortest decimal that reads back, with ".0" when whole.
        awk -v q="$q" '$1 == "hit" && $2 == q {
            d = $8; if (d !~ /[.e]/) d = d ".0"
            path = $9; for (i = 10; i <= NF; i++) path = path " " $i
            r = r sep sprintf("{\"path\":\"%s\",\"ino\":%s,\"chunk\":%s,\"distance\":%s}", path, $4, $5, d); sep = ","
        } END { printf "{\"query\":%s,\"results\":[%s]}\n", q, r }' "$M" >> "$share/search.expected"
    done < <(grep '^query ' "$M")
    printf '%s' "$fvecs_hex" | busybox xxd -r -p > "$share/queries.fvecs"

    # vexctl stats --json: the fields the manifest fixes. Vectors are every searchable one, in
    # the graph or pending; the entry point and levels only while nothing is pending (the index
    # worker links pending vectors after the mount, which may change them).
    pending=$(awk '$1 == "hnsw" && $2 == "pending" { print $3 }' "$M")
    pending=${pending:-0}
    {
        echo "\"dim\":$dim"
        echo "\"metric\":\"$(field sb metric)\""
        echo "\"m\":$(field sb hnsw_m)"
        echo "\"ef_construction\":$(field sb hnsw_ef_construction)"
        echo "\"vectors\":$(($(field hnsw live) + pending))"
        echo "\"deleted\":$(field hnsw deleted)"
        echo "\"capacity\":$(field sb vec_capacity)"
        if [ "$pending" = 0 ]; then
            echo "\"levels\":$(($(field hnsw entry_level) + 1))"
            echo "\"entry_point\":$(field hnsw entry)"
        fi
    } > "$share/stats.expected"

    # A static helper printing the xattr user.vexfs.embedding of each FILE: "FILE LEN HEX", or
    # "FILE none" when the file has none (ENODATA). The length asked first (size 0) must match.
    cat > "$T/xattr-hex.c" <<'C'
#include <errno.h>
#include <stdio.h>
#include <sys/xattr.h>

int main(int argc, char **argv)
{
	static unsigned char buf[65536];
	for (int i = 1; i < argc; i++) {
		ssize_t want = getxattr(argv[i], "user.vexfs.embedding", NULL, 0);
		if (want < 0 && errno == ENODATA) {
			printf("%s none\n", argv[i]);
			continue;
		}
		ssize_t n = getxattr(argv[i], "user.vexfs.embedding", buf, sizeof(buf));
		if (want < 0 || n != want) {
			perror(argv[i]);
			return 1;
		}
		printf("%s %zd ", argv[i], n);
		for (ssize_t j = 0; j < n; j++)
			printf("%02x", buf[j]);
		printf("\n");
	}
	return 0;
}
C
    "${CC:-cc}" -static -O2 -Wall -Wextra -Werror "$T/xattr-hex.c" -o "$share/xattr-hex" ||
        fail "cannot build the xattr helper with ${CC:-cc} -static"

    cat > "$share/frozen-check.sh" <<'GUEST'
S=/share
# same NAME: /tmp/NAME.out must hold the lines of $S/NAME.expected (both sorted; a diff is shown).
same() {
    sort "$S/$1.expected" > "/tmp/$1.want"
    sort "/tmp/$1.out" > "/tmp/$1.got"
    diff "/tmp/$1.want" "/tmp/$1.got" || fail "$1: the kernel's view differs from the manifest (- manifest, + kernel)"
    echo "$1: $(wc -l < "/tmp/$1.got") lines as the manifest says"
}

# frozen_search: every recorded query through the kernel, answers as the manifest says.
frozen_search() {
    : > /tmp/search.out
    while read -r q k ef; do
        vexctl search /mnt --fvecs "$S/queries.fvecs" --row "$q" -k "$k" --ef "$ef" --json >> /tmp/search.out ||
            fail "vexctl search, query $q"
    done < "$S/queries.list"
    cmp "$S/search.expected" /tmp/search.out || {
        diff "$S/search.expected" /tmp/search.out
        fail "the kernel's k-NN answers differ from the manifest"
    }
    echo "search: $(wc -l < /tmp/search.out) queries answered as the manifest says"
}

# frozen_check: every manifest item through the kernel (the filesystem mounted at /mnt).
frozen_check() {
    cp "$S/xattr-hex" /tmp/xattr-hex && chmod +x /tmp/xattr-hex || fail "copying the xattr helper"

    section "tree: paths, inodes, modes, owners, links, sizes, blocks, mtime, ctime"
    (cd /mnt && find .) > /tmp/paths || fail "find /mnt"
    : > /tmp/tree.out
    while read -r p; do
        rel=${p#.}
        echo "${rel:-/} $(stat -c '%i %f %u %g %h %s %b %y %z' "/mnt$rel")" >> /tmp/tree.out
    done < /tmp/paths
    same tree

    section "contents, symlinks, embeddings, xattr"
    : > /tmp/data.out
    : > /tmp/get.out
    : > /tmp/xattr.out
    while read -r path; do
        echo "$path $(sha256sum < "/mnt$path" | cut -d' ' -f1)" >> /tmp/data.out
        vexctl get "/mnt$path" >> /tmp/get.out || fail "vexctl get /mnt$path"
        /tmp/xattr-hex "/mnt$path" | sed 's|^/mnt||' >> /tmp/xattr.out
    done < "$S/files.list"
    same data
    # vexctl get's whole output, in file order.
    cmp "$S/get.expected" /tmp/get.out || { diff "$S/get.expected" /tmp/get.out; fail "vexctl get differs from the manifest"; }
    echo "get: $(grep -c '^chunk' /tmp/get.out) chunks as the manifest says"
    same xattr
    : > /tmp/links.out
    while read -r path _; do
        echo "$path $(readlink "/mnt$path")" >> /tmp/links.out
    done < "$S/links.expected"
    same links

    section "index: stats and searches"
    vexctl stats /mnt
    vexctl stats /mnt --json | tr -d ' \n' | tr ',{}' '\n\n\n' | grep -v '^$' > /tmp/stats.all || fail "vexctl stats"
    grep -x -F -f "$S/stats.expected" /tmp/stats.all > /tmp/stats.out
    same stats
    frozen_search
}
GUEST
}

frozen_host_tools() {
    local path sum q k ef
    check_fsck "$1"
    while read -r path sum; do
        [ "$("$VEXCTL" cat "$1" "$path" | sha256sum | cut -d' ' -f1)" = "$sum" ] || fail "vexctl cat $path: wrong sha256"
    done < "$share/data.expected"
    : > "$T/search-image.out"
    while read -r q k ef; do
        "$VEXCTL" search-image "$1" --fvecs "$share/queries.fvecs" --row "$q" -k "$k" --ef "$ef" --json \
            >> "$T/search-image.out" || fail "vexctl search-image, query $q"
    done < "$share/queries.list"
    diff "$share/search.expected" "$T/search-image.out" || fail "vexctl search-image answers differ from the manifest"
    echo "host tools: fsck clean, $(wc -l < "$share/data.expected") files and $(wc -l < "$share/queries.list") searches as the manifest says"
}
