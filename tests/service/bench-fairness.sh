#!/bin/bash
# SPDX-License-Identifier: MIT
# The fairness benchmark: how long a new uid's request waits for its first
# step while another uid floods npud with 40 connections of 8 requests each
# (its connections together hold max_requests_per_uid = 64 unfinished; the
# rest are refused), beside the 8-client throughput on the same model. The
# issue's bound on that wait is 2 s. Prints figures only (a benchmark, not
# a test).
#   tests/service/bench-fairness.sh [MODEL] [BUILD_DIR]
# MODEL defaults to the TinyLlama-shaped w8a8 model, made by npu-mkmodel in
# /tmp and removed after. The flood runs as uid 65534 (nobody): needs root
# and setpriv. NPUD_THREADS, NPUD_KV_BUDGET_MB, NPUD_N_CTX set npud;
# FLOOD_TOKENS the tokens of each flooding request (default 128), ROUNDS the
# new uid's requests (default 5). Wrap it in flock /work/bench.lock.
set -u

here=$(cd "$(dirname "$0")" && pwd)
build=$here/../../build
model=""
if [ $# -gt 0 ] && [ -f "$1" ]; then
	model=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
	shift
fi
[ $# -gt 0 ] && build=$1
build=$(cd "$build" && pwd) || exit 2
npud=$build/daemon/npud/npud
npuctl=$build/client/npuctl
probe=$build/tests/service/npud-probe
for f in "$npud" "$npuctl" "$probe"; do
	[ -x "$f" ] || { echo "$f is not built (ninja -C $build)" >&2; exit 1; }
done
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
	echo "needs root and setpriv (the flood runs as another uid)" >&2
	exit 1
fi
made=""
if [ -z "$model" ]; then
	model=/tmp/npud-bench-tinyllama-w8a8.$$.gguf
	echo "making the TinyLlama-shaped w8a8 model ($model)..."
	"$build/daemon/tools/npu-mkmodel" --shape tinyllama --type w8a8 -o "$model" >/dev/null || exit 1
	made=$model
fi

# shellcheck source=lib.sh
. "$here/lib.sh"
: "${NPUD_THREADS:=$(nproc)}"
: "${NPUD_KV_BUDGET_MB:=1024}"
: "${NPUD_N_CTX:=2048}"
NPUD_MAX_REQUESTS_PER_CLIENT=8
NPUD_MAX_QUEUED_TOKENS=1000000
NPUD_MAX_QUEUE=64
flood_tokens=${FLOOD_TOKENS:-128}
rounds=${ROUNDS:-5}
prompt="The little robot looked at the stars and wondered what the night would bring"
service_start || exit 1
trap 'service_cleanup; [ -n "$made" ] && rm -f "$made"' EXIT
install -m 0755 "$probe" "$tmp/npud-probe"
stat_of() { "$probe" "$addr" stats | sed -n "s/^$1=//p"; }
field() { grep -o "\"$1\": *[0-9.]*" | head -1 | sed 's/.*: *//'; }

echo "npud: $(basename "$model"), $NPUD_THREADS threads, KV budget $NPUD_KV_BUDGET_MB MB, max_active 16"
echo
echo "== 8 clients at once, alone on the service"
"$npuctl" --bus "$addr" bench --clients 8 --new-tokens 32 --prompt-lengths 32 || exit 1

echo
echo "== one uid (nobody) floods: 40 connections x 8 requests of $flood_tokens tokens"
for i in $(seq 40); do
	setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/npud-probe" "$addr" flood 8 "$flood_tokens" \
		"$prompt" >"$tmp/flood.$i" 2>&1 &
done
for i in $(seq 600); do
	[ "$(grep -l "^replied" "$tmp"/flood.* 2>/dev/null | wc -l)" -ge 40 ] && break
	sleep 0.1
done
accepted=$(cat "$tmp"/flood.* | sed -n 's/^accepted //p' | awk '{s += $1} END {print s + 0}')
echo "the flood: $accepted requests taken, $(cat "$tmp"/flood.* | grep -c "LimitExceeded") refused LimitExceeded (its uid's limit), $(cat "$tmp"/flood.* | grep -c "Error.Busy") refused Busy (its share of the queue)"
sleep 2
echo "while it runs: $(stat_of active_requests) active, $(stat_of queued_requests) queued"
echo
echo "== a new uid's request (root), $rounds times while the flood runs"
printf "%-6s %14s %14s %16s %12s\n" round "queue wait ms" "prefill ms" "first token ms" "ms/token"
worst=0
for r in $(seq "$rounds"); do
	t0=$(date +%s%N)
	json=$("$npuctl" --bus "$addr" generate --json --temp 0 --max-tokens 16 "Once upon a time, in a quiet town," 2>/dev/null)
	q=$(echo "$json" | field queue_ms)
	p=$(echo "$json" | field prefill_ms)
	mpt=$(echo "$json" | field ms_per_token)
	printf "%-6s %14.1f %14.1f %16.1f %12.1f\n" "$r" "${q:-0}" "${p:-0}" "$(echo "${q:-0} + ${p:-0}" | bc)" "${mpt:-0}"
	worst=$(echo "if (${q:-0} > $worst) ${q:-0} else $worst" | bc)
	sleep 1
done
echo
echo "worst queue wait of the new uid: $worst ms (the bound: 2000 ms) while $(stat_of active_requests) requests ran and $(stat_of queued_requests) waited"
echo "scheduler: $(stat_of preemptions) pre-emptions, $(stat_of recomputed_tokens) tokens computed again"
