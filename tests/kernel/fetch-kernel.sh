#!/bin/sh
# Fetch and unpack the newest Debian 12 6.12 kernel (image, headers, kbuild)
# into a cache directory, keyed by version. Prints the version dir on stdout.
# usage: fetch-kernel.sh CACHE_DIR
set -eu

cache=$1
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# Package lists may be missing on a fresh machine.
if ! apt-cache search --names-only '^linux-headers-6\.12\.[0-9]+\+deb12-amd64$' |
	grep -q .; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -q >&2
fi

ver=$(apt-cache search --names-only '^linux-headers-6\.12\.[0-9]+\+deb12-amd64$' |
	sed -n 's/^linux-headers-\(6\.12\.[0-9]*\)+deb12-amd64 .*/\1/p' |
	sort -t. -k3,3n | tail -1)
if [ -z "$ver" ]; then
	# Offline fallback: reuse the newest cached version.
	ver=$(ls "$cache" 2>/dev/null | sed -n 's/^linux-\(6\.12\.[0-9]*\)$/\1/p' |
		sort -t. -k3,3n | tail -1)
	[ -n "$ver" ] || { echo "no 6.12 kernel found" >&2; exit 1; }
fi

dir=$cache/linux-$ver
if [ -f "$dir/.done" ]; then
	echo "$dir"
	exit 0
fi

rm -rf "$dir"
mkdir -p "$dir/debs" "$dir/root"
kv=$ver+deb12
(
	cd "$dir/debs"
	apt-get download -q \
		"linux-image-$kv-amd64-unsigned" \
		"linux-headers-$kv-amd64" \
		"linux-headers-$kv-common" \
		"linux-kbuild-$kv" >&2
)
for d in "$dir"/debs/*.deb; do
	dpkg-deb -x "$d" "$dir/root"
done
rm -rf "$dir/debs"

hdr=$dir/root/usr/src/linux-headers-$kv-amd64
common=$dir/root/usr/src/linux-headers-$kv-common
# The arch headers' Makefile includes the common tree by absolute path.
sed -i "s|/usr/src/linux-headers-$kv-common|$common|g" "$hdr/Makefile"
# Its scripts and tools are symlinks into /usr/lib/linux-kbuild-*; make them relative.
for l in "$hdr"/scripts "$hdr"/tools; do
	if [ -L "$l" ]; then
		t=$(readlink "$l")
		case "$t" in
		/*) ln -sfn "$dir/root$t" "$l" ;;
		esac
	fi
done
touch "$dir/.done"
echo "$dir"
