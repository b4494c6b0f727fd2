# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034  # sets variables for the script that sources it
# Sourced by the service test scripts called as "SCRIPT BUILD_DIR SHARED_DIR":
# their arguments, the programs, and the checks' count.
#
# checks_start "$@": sets $build, $shared, $npud, $npuctl, $probe and $model
# (the small trained model); exits 2 on wrong usage, 77 (skip) without
# dbus-daemon. need_built PROGRAM...: fail without them. need_file FILE: skip
# without it. need_second_uid: the checks
# call as another uid: skip when not root, fail when root lacks setpriv (CI
# runs as root, and there they must count).
# ok NAME, bad NAME WHY (with npud's last lines when $tmp/npud.log exists),
# checks_summary: "N passed, N failed".

checks_start() {
	if [ $# -ne 2 ]; then
		echo "usage: $0 BUILD_DIR SHARED_DIR" >&2
		exit 2
	fi
	build=$(cd "$1" && pwd) || exit 2
	shared=$(cd "$2" && pwd) || exit 2
	npud=$build/daemon/npud/npud
	npuctl=$build/client/npuctl
	probe=$build/tests/service/npud-probe
	model=$shared/models/aidreams260K-f32.gguf
	command -v dbus-daemon >/dev/null || { echo "SKIP: no dbus-daemon"; exit 77; }
}

need_built() {
	for f in "$@"; do
		[ -x "$f" ] || { echo "FAIL setup: $f is not built"; echo "0 passed, 1 failed"; exit 1; }
	done
}

need_file() {
	[ -f "$1" ] || { echo "SKIP: no $1"; exit 77; }
}

need_second_uid() {
	[ "$(id -u)" -eq 0 ] || { echo "SKIP: not root (the checks call as another uid)"; exit 77; }
	command -v setpriv >/dev/null && return 0
	echo "FAIL setup: running as root without setpriv (util-linux): the checks as another uid cannot run"
	echo "0 passed, 1 failed"
	exit 1
}

passed=0
failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
bad() {
	echo "FAIL $1: $2"
	failed=$((failed + 1))
	[ -n "${tmp:-}" ] && [ -f "$tmp/npud.log" ] && tail -5 "$tmp/npud.log" | sed 's/^/  npud: /'
	return 0
}
checks_summary() { echo "$passed passed, $failed failed"; }
