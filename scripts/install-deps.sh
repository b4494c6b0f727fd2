#!/bin/sh
# Install every package the build and the tests need, from Debian's archive.
# Safe to run again: apt-get skips what is already installed.
set -eu

packages="
	build-essential meson ninja-build pkg-config
	libcmocka-dev libjson-c-dev libinih-dev libedit-dev libsystemd-dev libpcre2-dev
	libdrm-dev libnl-3-dev libnl-genl-3-dev libxrt-dev uuid-dev libmicrohttpd-dev
	clang libclang-rt-14-dev
	dbus util-linux curl nodejs
	sentencepiece python3-sentencepiece
	qemu-system-x86 busybox-static kmod dwarves cpio xz-utils bc flex bison libelf-dev
	systemd udev polkitd libdbus-1-dev libxml2-utils scdoc
	debhelper dh-dkms dkms dpkg-dev fakeroot lintian debootstrap e2fsprogs zstd
	bochs bochsbios vgabios isolinux syslinux-common xorriso
"

missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
# npm (npud-http's tests install the openai package with it) comes with some
# nodejs builds and is Debian's package npm with Debian's own
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -z "$missing" ] && exit 0

export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
