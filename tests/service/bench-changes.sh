#!/bin/bash
# SPDX-License-Identifier: MIT
# What the change signals cost: npud with MODEL on a private D-Bus bus runs
# npuctl bench --clients 1,8 three times in each phase: with nobody
# watching, then with WATCHERS connections (default 64) that read the
# Manager's per-caller counters (each gets its own PropertiesChanged) and
# one that watches the broadcast ones, then with nobody again. Prints the
# table rows and the signals the watchers received; figures only.
#   tests/service/bench-changes.sh MODEL [BUILD_DIR] [-- extra npuctl bench options]
# Each phase runs a fresh npud, whose own count of its change-signal passes
# (the time they took, the signals sent) is printed when it stops. Wrap it
# in flock /work/bench.lock on a shared machine.
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
bench_args "$@"
set -- "${bench_opts[@]}"
probe=$build/tests/service/api-probe
for f in "$npud" "$npuctl" "$probe"; do
	[ -x "$f" ] || { echo "$f is not built (ninja -C $build)" >&2; exit 1; }
done

: "${NPUD_THREADS:=$(nproc)}"
: "${NPUD_KV_BUDGET_MB:=512}"
: "${NPUD_N_CTX:=0}"
: "${WATCHERS:=64}"
NPUD_MAX_REQUESTS_PER_CLIENT=16
NPUD_MAX_QUEUED_TOKENS=1000000
NPUD_MAX_QUEUE=256
# phase NAME WATCHERS: a fresh npud, three bench runs with WATCHERS readers of the per-caller counters
# (and one broadcast watcher when WATCHERS > 0), then npud's own count of its change-signal passes
phase() {
	local name=$1 n=$2 pids=() i
	service_start || exit 1
	echo
	echo "== $name"
	for i in $(seq "$n"); do
		"$probe" "$addr" watch 3600 >"$tmp/w.$i" 2>&1 &
		pids+=($!)
	done
	if [ "$n" -gt 0 ]; then
		"$probe" "$addr" watch 3600 Version >"$tmp/w.broadcast" 2>&1 &
		pids+=($!)
		for i in $(seq 400); do
			[ "$(cat "$tmp"/w.* 2>/dev/null | grep -c '^ready')" -gt "$n" ] && break
			sleep 0.05
		done
	fi
	for i in 1 2 3; do
		"$npuctl" --bus "$addr" bench --clients 1,8 "$@" | grep '^| *[18] |'
	done
	sleep 0.2
	[ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
	wait "${pids[@]}" 2>/dev/null
	if [ "$n" -gt 0 ]; then
		echo "signals received: $(cat "$tmp"/w.[0-9]* | grep -c '^changed') by the $n readers (each its own)," \
			"$(grep -c '^changed' "$tmp/w.broadcast") broadcast"
	fi
	kill "$npud_pid"
	wait "$npud_pid" 2>/dev/null
	npud_pid=""
	grep "change signals:" "$tmp/npud.log"
	service_stop
}
echo "npud: $model, $NPUD_THREADS threads; three runs of npuctl bench --clients 1,8 $* per phase"
echo "| Clients | Generated Tokens | Wall Time (s) | Aggregate Tokens/Sec | vs 1 Client | Time/Token per Client (ms) | ..."
phase "nobody watching" 0 "$@"
phase "$WATCHERS connections reading the per-caller counters, one watching the broadcast properties" "$WATCHERS" "$@"
phase "nobody watching, again" 0 "$@"
