# SPDX-License-Identifier: MIT
# shellcheck shell=sh
# Sourced by tests/kernel/run and tests/vnni/run.
#
# initramfs_libs DIR FILE...: the shared libraries (and the loader) that
# each FILE needs, copied into the initramfs tree DIR at their paths, in a
# merged-/usr layout like the host's (/lib and /lib64 links where the host
# has them).
initramfs_libs() {
	initramfs_dir=$1
	shift
	mkdir -p "$initramfs_dir/usr/lib" "$initramfs_dir/usr/lib64"
	[ -L /lib ] && [ ! -e "$initramfs_dir/lib" ] && ln -s usr/lib "$initramfs_dir/lib"
	[ -L /lib64 ] && [ ! -e "$initramfs_dir/lib64" ] && ln -s usr/lib64 "$initramfs_dir/lib64"
	for f in "$@"; do
		ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
	done | sort -u | while read -r l; do
		mkdir -p "$initramfs_dir$(dirname "$l")"
		cp -L "$l" "$initramfs_dir$l"
	done
}
