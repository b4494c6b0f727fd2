#!/bin/bash
# SPDX-License-Identifier: MIT
# Fairness between uids (issue 12, finding 2): limits counted per uid over
# all its connections, and a full queue that refuses only a uid holding its
# share of it. Another uid (nobody, 65534) makes requests that cannot end
# while the checks run: its connections read nothing (npud-probe "stall"),
# so npud holds their requests (streaming backpressure) and nothing finishes
# or leaves the queue behind the checks' backs.
#   tests/service/fairness.sh BUILD_DIR SHARED_DIR
# Needs root and setpriv (a failure, not a skip, when root lacks setpriv:
# CI runs as root). Prints "ok NAME" or "FAIL NAME: why"; ends with
# "N passed, N failed".
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=checks.sh
. "$here/checks.sh"
checks_start "$@"
need_file "$model"
need_second_uid
# shellcheck source=lib.sh
. "$here/lib.sh"

E=org.npud.Inference1.Error
stat_of() { "$probe" "$addr" stats | sed -n "s/^$1=//p"; }
# npud stops cleanly on SIGTERM and its log has no sanitizer report (ASan/UBSan builds)
stop_checked() {
	local rc
	[ -n "${npud_pid:-}" ] || return 0
	kill "$npud_pid"
	wait "$npud_pid"
	rc=$?
	npud_pid=""
	if [ $rc -ne 0 ] || grep -q "runtime error\|ERROR: AddressSanitizer\|ERROR: LeakSanitizer" "$tmp/npud.log"; then
		bad "npud-clean-exit ($1)" "exit $rc; $(grep -m3 "runtime error\|Sanitizer" "$tmp/npud.log" | tr '\n' ';')"
	else
		ok "npud-clean-exit ($1)"
	fi
	service_stop
}
fresh() {
	service_stop
	service_start || exit 1
	install -m 0755 "$probe" "$tmp/npud-probe"
}
# as nobody: npud-probe run STEPS... (the copy in $tmp: the build tree may be closed to nobody)
nobody_run() { setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/npud-probe" "$addr" run "$@" 2>&1; }

export NPUD_KV_BUDGET_MB=1 NPUD_N_CTX=2048 NPUD_MAX_QUEUED_TOKENS=100000

# A full queue refuses only a uid holding its share of it. One slot
# (max_active = 1) and a queue of 4: nobody's first request runs (the
# others are sent once it streams, so it has left the queue whatever the
# machine's speed), four wait, its sixth is Busy; then nobody reads nothing,
# so its requests stay where they are. root's request finds the queue full,
# holds no part of it, and is taken and served; nobody's requests all finish
# once it reads again. The stall outlasts the polling below on a slow host.
NPUD_MAX_QUEUE=4 NPUD_MAX_REQUESTS_PER_CLIENT=16 npud_conf_extra="max_active = 1" fresh
nobody_run "gen a1 10 900" "first a1 30" "gen a2 10 900" "gen a3 10 900" "gen a4 10 900" "gen a5 10 900" \
	"gen a6 10 900" "stall 15000" "wait a1 60" "wait a2 60" "wait a3 60" "wait a4 60" "wait a5 60" >"$tmp/hog" &
hog=$!
for i in $(seq 200); do
	[ "$(stat_of queued_requests)" = 4 ] && break
	sleep 0.05
done
sleep 0.5 # nobody stalls: nothing of its moves now
queued=$(stat_of queued_requests)
out=$(timeout 30 "$probe" "$addr" run "gen r 10 4" "wait r 10" 2>&1)
wait $hog
if [ "$queued" != 4 ]; then
	bad "full-queue-takes-new-uid" "the queue was not full when root asked ($queued of 4 queued): the check did not run"
elif grep -q "^finished r length" <<<"$out"; then
	ok "full-queue-takes-new-uid"
else
	bad "full-queue-takes-new-uid" "$(tr '\n' ';' <<<"$out")"
fi
if grep -q "^error a6 $E.Busy" "$tmp/hog" &&
	[ "$(grep -c "^finished a[1-5] length generated=900" "$tmp/hog")" = 5 ]; then
	ok "full-queue-refuses-the-uid-holding-it"
else
	bad "full-queue-refuses-the-uid-holding-it" "$(tr '\n' ';' <"$tmp/hog")"
fi
stop_checked "queue"

# Limits count a uid's requests over all its connections: with
# max_requests_per_uid = 6, three connections of nobody asking for 4
# requests each (within max_requests_per_client = 4) get 6 in all; the
# others are LimitExceeded, naming the uid's limit. None can end meanwhile.
NPUD_MAX_QUEUE=64 NPUD_MAX_REQUESTS_PER_CLIENT=4 npud_conf_extra="max_requests_per_uid = 6" fresh
pids=""
for c in 1 2 3; do
	nobody_run "gen ${c}a 10 900" "gen ${c}b 10 900" "gen ${c}c 10 900" "gen ${c}d 10 900" "stall 3000" \
		>"$tmp/conn.$c" &
	pids="$pids $!"
done
# root asks while nobody's six wait: the uid's limit is its own
for i in $(seq 100); do
	[ "$(($(stat_of active_requests) + $(stat_of queued_requests)))" -ge 6 ] && break
	sleep 0.05
done
out=$(timeout 30 "$probe" "$addr" run "gen r 10 4" "wait r 10" 2>&1)
# shellcheck disable=SC2086
wait $pids
refused=$(cat "$tmp"/conn.* | grep -c "^error [0-9][a-d] $E.LimitExceeded")
others=$(cat "$tmp"/conn.* | grep "^error" | grep -vc "$E.LimitExceeded")
if [ "$refused" = 6 ] && [ "$others" = 0 ]; then
	ok "uid-limit-across-connections"
else
	bad "uid-limit-across-connections" "$refused of 12 refused LimitExceeded (want 6): $(cat "$tmp"/conn.* | tr '\n' ';')"
fi
if grep -q "^finished r length" <<<"$out"; then
	ok "uid-limit-not-shared-by-uids"
else
	bad "uid-limit-not-shared-by-uids" "$(tr '\n' ';' <<<"$out")"
fi

stop_checked "uid limit"
checks_summary
[ "$failed" -eq 0 ]
