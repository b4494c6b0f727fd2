#!/bin/sh
# Run the kernel's checkpatch.pl --strict and kernel-doc -Wall on driver/
# and uapi/. Both scripts come from Debian's
# linux-source-6.12, downloaded and extracted once into a cache directory
# (default tests/kernel/.cache/checkpatch).
# usage: scripts/checkpatch.sh [files...]
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${NPU_CHECKPATCH_CACHE:-$root/tests/kernel/.cache/checkpatch}
cp_pl=$cache/scripts/checkpatch.pl
kdoc=$cache/scripts/kernel-doc

if [ ! -f "$cp_pl" ] || [ ! -f "$kdoc" ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download -q linux-source-6.12 >&2)
	deb=$(ls "$tmp"/linux-source-6.12_*.deb)
	dpkg-deb --fsys-tarfile "$deb" |
		tar -x -C "$tmp" --wildcards './usr/src/linux-source-6.12.tar.*'
	mkdir -p "$cache/scripts"
	tar -x -C "$tmp" -f "$tmp"/usr/src/linux-source-6.12.tar.* \
		--wildcards '*/scripts/checkpatch.pl' '*/scripts/spelling.txt' \
		'*/scripts/const_structs.checkpatch' '*/scripts/kernel-doc'
	cp "$tmp"/linux-source-6.12/scripts/checkpatch.pl \
		"$tmp"/linux-source-6.12/scripts/spelling.txt \
		"$tmp"/linux-source-6.12/scripts/const_structs.checkpatch \
		"$tmp"/linux-source-6.12/scripts/kernel-doc \
		"$cache/scripts/"
fi

cd "$root"
if [ $# -eq 0 ]; then
	set -- driver/*.c driver/*.h uapi/drm/npu_accel.h uapi/linux/npu_genl.h
fi
rc=0
perl "$cp_pl" --no-tree --strict --terse --show-types -f "$@" || rc=1
# kernel-doc reports problems as "file:line: warning: ..." on stderr.
for f in "$@"; do
	case "$f" in
	uapi/*.h | driver/*) perl "$kdoc" -none -Wall "$f" 2>&1 | grep . && rc=1 ;;
	esac
done
exit $rc
