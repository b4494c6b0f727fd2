#!/bin/sh
# Build, once, the debug kernel of the driver tests: Debian 12's
# linux-source-6.12, "make tinyconfig" merged with debug-kernel.config
# (KASAN, lockdep, kmemleak, debug objects, fault injection) and the
# driver's Kconfig entry, so the build takes minutes on 2 cores.
#
# The tree is cached outside the clone, in
# $NPU_DEBUG_KERNEL_CACHE/<key> (default /var/cache/npu-test-kernel, or
# ~/.cache/npu-test-kernel where that is not writable), <key> being a hash
# of the source version, the fragment, driver/Kconfig and the recipe
# version below; a change to any of them builds a new tree. Concurrent runs
# wait for one build (flock). Prints the tree's directory on stdout: its
# arch/x86/boot/bzImage boots, and "make -C TREE M=..." builds modules.
# Progress and the build log's tail go to stderr.
set -eu

# Bump when the build steps below change what gets built.
recipe=1

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
frag=$here/debug-kernel.config
kconfig=$root/driver/Kconfig

cache=${NPU_DEBUG_KERNEL_CACHE:-/var/cache/npu-test-kernel}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/npu-test-kernel
	mkdir -p "$cache"
fi

say() {
	echo "# debug kernel: $*" >&2
}

candidate() {
	apt-cache policy linux-source-6.12 2>/dev/null |
		sed -n 's/^ *Candidate: *//p' | grep -v '^(none)$' || true
}

ver=$(candidate)
if [ -z "$ver" ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -q >&2 || true
	ver=$(candidate)
fi
if [ -z "$ver" ]; then
	# Offline: the newest tree built from the same inputs, any version.
	ver=$(ls "$cache" 2>/dev/null | sed -n 's/^\(.*\)\.version$/\1/p' | tail -1)
	[ -n "$ver" ] || { say "no linux-source-6.12 package"; exit 1; }
fi

key=$( { echo "$recipe $ver"; cat "$frag" "$kconfig"; } | sha256sum | cut -c1-16)
dir=$cache/$key
if [ -f "$dir/.done" ]; then
	echo "$dir/linux"
	exit 0
fi

exec 9>"$cache/.lock"
say "waiting for the build lock"
flock 9
if [ -f "$dir/.done" ]; then
	echo "$dir/linux"
	exit 0
fi

say "building $key from linux-source-6.12 $ver in $dir"
t0=$(date +%s)
rm -rf "$dir"
mkdir -p "$dir/deb"
(cd "$dir/deb" && apt-get download -q "linux-source-6.12=$ver" >&2)
dpkg-deb --fsys-tarfile "$dir"/deb/linux-source-6.12_*.deb |
	tar -x -C "$dir/deb" ./usr/src/linux-source-6.12.tar.xz
mkdir "$dir/linux"
tar -xJf "$dir/deb/usr/src/linux-source-6.12.tar.xz" -C "$dir/linux" \
	--strip-components=1
rm -rf "$dir/deb"

cd "$dir/linux"
# The driver's Kconfig entry, as drivers/accel/npu/Kconfig would be in tree.
mkdir -p drivers/accel/npu
cp "$kconfig" drivers/accel/npu/Kconfig
sed -i 's|^source "drivers/accel/qaic/Kconfig"$|&\nsource "drivers/accel/npu/Kconfig"|' \
	drivers/accel/Kconfig
grep -q 'drivers/accel/npu/Kconfig' drivers/accel/Kconfig

make -s tinyconfig >&2
scripts/kconfig/merge_config.sh -m .config "$frag" >"$dir/config.log" 2>&1
make -s olddefconfig >&2
bad=""
while read -r line; do
	case "$line" in
	CONFIG_*=*)
		grep -qx "$line" .config || bad="$bad ${line%%=*}"
		;;
	"# CONFIG_"*" is not set")
		opt=${line#"# "}
		opt=${opt%" is not set"}
		grep -q "^$opt=" .config && bad="$bad $opt"
		;;
	esac
done <"$frag"
if [ -n "$bad" ]; then
	say "options the config did not take:$bad"
	exit 1
fi

say "make bzImage modules (nice, -j$(nproc))"
if ! nice make -j"$(nproc)" bzImage modules >"$dir/build.log" 2>&1; then
	tail -30 "$dir/build.log" >&2
	exit 1
fi
# Objects are not needed to build external modules or to boot.
find . -name '*.o' ! -path './scripts/*' ! -path './tools/*' -delete
rm -f vmlinux.o .tmp_vmlinux*
echo "$ver" >"$cache/$ver.version"
say "built in $(($(date +%s) - t0)) s"
touch "$dir/.done"
echo "$dir/linux"
