#!/bin/bash
# SPDX-License-Identifier: MIT
# Liveness: npud on a KV pool of 64 blocks (1024 positions) with a context
# of 2048, where sessions, queued turns and long prompts compete for the
# pool. In every scenario each request must finish (or be refused at once
# with a named error): npud never stops making progress.
#   tests/service/liveness.sh BUILD_DIR SHARED_DIR
# Each scenario runs on a fresh npud. Prints "ok NAME" or "FAIL NAME: why";
# ends with "N passed, N failed".
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=checks.sh
. "$here/checks.sh"
checks_start "$@"
need_file "$model"
# shellcheck source=lib.sh
. "$here/lib.sh"

run() { timeout 60 "$probe" "$addr" run "$@" 2>&1; }

export NPUD_KV_BUDGET_MB=1 NPUD_N_CTX=2048 NPUD_MAX_QUEUED_TOKENS=100000 NPUD_MAX_REQUESTS_PER_CLIENT=16
fresh() {
	service_stop
	service_start || exit 1
}

# check NAME OUTPUT WANT...: every WANT line is in OUTPUT
check() {
	local name=$1 out=$2 w
	shift 2
	for w in "$@"; do
		if ! grep -q -- "^$w" <<<"$out"; then
			bad "$name" "no '$w' in: $(tr '\n' ';' <<<"$out")"
			return
		fi
	done
	ok "$name"
}

# 8. A request that could never fit the pool (900 + 200 positions > 1024):
#    refused at once with its own error, not Busy.
fresh
out=$(run "gen big 900 200" "gen small 10 4" "wait small 10")
check "never-fits-named-error" "$out" "error big org.npud.Inference1.Error.RequestTooLarge" "finished small length"

# 6. A session's turn needs blocks that the prefix cache still holds once
#    another (idle) session was reclaimed: they are evicted and the turn runs,
#    with nothing else to wake the scheduler.
fresh
out=$(run "session s1" "send s1 600 8" "wait s1 10" "session s2" "send s2 600 8" "wait s2 10")
check "turn-after-reclaim-runs" "$out" "finished s1 length" "finished s2 length"

# 5. Two session turns queue (holding their sessions' KV) behind a long
#    request; when it ends neither fits while the other holds its blocks.
#    Queued KV is reclaimed: both turns run, and another client's short
#    request is not held up behind them.
fresh
run "session s1" "send s1 320 8" "wait s1 10" "session s2" "send s2 320 8" "wait s2 10" \
	"gen long 200 150" "send s1 400 8" "send s2 400 8" "wait long 8" "wait s1 8" "wait s2 8" >"$tmp/deadlock" &
p1=$!
sleep 0.5
out=$(run "gen other 5 4" "wait other 12")
wait $p1
check "queued-turns-no-deadlock" "$(cat "$tmp/deadlock")" "finished long length" "finished s1 length" "finished s2 length"
check "short-request-not-held-up" "$out" "finished other length"

# 7. One model that cannot step does not freeze another: a second model's
#    long request keeps going while the first model's turn waits for room.
fresh
cp "$model" "$tmp/second.gguf"
"$npuctl" --bus "$addr" load "$tmp/second.gguf" --name second >/dev/null 2>&1
out=$(run "session t1" "send t1 600 8" "wait t1 10" "session t2" "model second" "gen b1 10 300" "send t2 600 8" \
	"wait b1 20" "wait t2 20")
check "other-model-not-frozen" "$out" "finished t1 length" "finished b1 length" "finished t2 length"

# Out of KV: three connections ask for 12 requests of 25 blocks each at once
# (300 times the pool): they queue, are admitted as blocks come back, and all
# finish; the pool is whole again after.
fresh
kv_pids=""
for c in 1 2 3; do
	run "gen k${c}a 300 100" "gen k${c}b 300 100" "gen k${c}c 300 100" "gen k${c}d 300 100" \
		"wait k${c}a 60" "wait k${c}b 60" "wait k${c}c 60" "wait k${c}d 60" >"$tmp/kv.$c" &
	kv_pids="$kv_pids $!"
done
# shellcheck disable=SC2086
wait $kv_pids
all=$(cat "$tmp"/kv.*)
if [ "$(echo "$all" | grep -c "^finished k[0-9][a-d] length generated=100")" = 12 ] &&
	[ "$("$probe" "$addr" stats | sed -n 's/^kv_blocks_used=//p')" = 0 ]; then
	ok "out-of-kv-all-finish"
else
	bad "out-of-kv-all-finish" "$(echo "$all" | tr '\n' ';')"
fi

# 7b. Nor does a model whose only request waits for its consumer (a
#     connection that reads nothing: its request is held, keeping its KV).
fresh
cp "$model" "$tmp/second.gguf"
"$npuctl" --bus "$addr" load "$tmp/second.gguf" --name second >/dev/null 2>&1
"$probe" "$addr" run "gen a 10 900" "stall 4000" "wait a 20" >"$tmp/held" 2>&1 &
holder=$!
sleep 1
out=$(run "model second" "gen b 10 100" "wait b 3")
wait $holder
check "held-model-does-not-stop-others" "$out" "finished b length"
check "held-request-goes-on-when-read" "$(cat "$tmp/held")" "finished a length generated=900 tokens=900"

service_stop
checks_summary
[ "$failed" -eq 0 ]
