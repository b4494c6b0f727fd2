#!/bin/bash
# SPDX-License-Identifier: MIT
# The int8 GEMM's figures (issue 15) on one shape, in one run, beside
# llama.cpp's on the same shape:
#   scripts/bench-gemm.sh [SHAPE] [THREADS] [WORKDIR]
# SHAPE is an npu-mkmodel shape (default tinyllama; llama2-7b files are
# 7-13 GB: one file at a time is written, measured and deleted), THREADS
# defaults to 2, WORKDIR to a new directory under /tmp (removed at the end).
# Prints, each under the command that gives it:
#   - llama.cpp's Q8_0 prefill 256 / decode 32 (llama-bench on PATH or in
#     $LLAMA_BENCH; skipped without it);
#   - npu-bench --task benchmark --prompt-lengths 256 on w8a8: prefill
#     against the int8 peak and decode against the read bandwidth, both
#     measured in the same run;
#   - npu-bench --task batch-decode: 8 sequences against 1;
#   - npu-bench --fake-context 4,4000 with the q8 KV cache, then f16;
#   - npuctl bench --clients 1,8 through npud (private bus, n_ctx 256);
#   - on the small shapes, the plot of w8a8 against w8a16 ($WORKDIR/plot.svg,
#     kept when WORKDIR is given).
# Only figures: nothing passes or fails. Wrap it in `flock` on a shared
# machine so that no other benchmark runs at the same time.
set -u
shape=${1:-tinyllama}
threads=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
tools=$root/build/daemon/tools
llama_bench=${LLAMA_BENCH:-$(command -v llama-bench || true)}
if [ -n "${3:-}" ]; then
	work=$3
	mkdir -p "$work" || exit 1
else
	work=$(mktemp -d /tmp/npud-bench-gemm.XXXXXX) || exit 1
	trap 'rm -rf "$work"' EXIT
fi
for t in npu-bench npu-mkmodel; do
	[ -x "$tools/$t" ] || { echo "$tools/$t is not built (ninja -C $root/build)" >&2; exit 1; }
done

run() {
	echo "### $*"
	"$@"
	echo
}

# npud on a private bus (tests/service/lib.sh), given the time a 7B load takes; n_ctx 256
# and 1536 MB of KV let 8 clients decode whole contexts at once on the 7B shape too
npud_clients() {
	model=$1
	npud=$root/build/daemon/npud/npud
	npuctl=$root/build/client/npuctl
	# shellcheck source=tests/service/lib.sh
	. "$root/tests/service/lib.sh"
	export NPUD_THREADS=$threads NPUD_N_CTX=256 NPUD_KV_BUDGET_MB=1536 NPUD_MAX_REQUESTS_PER_CLIENT=16 \
		NPUD_MAX_QUEUED_TOKENS=1000000 NPUD_MAX_QUEUE=256
	bus_start || return 1
	npud_conf
	"$npud" --bus "$addr" --model "$model" --config "$tmp/npud.conf" >"$tmp/npud.log" 2>&1 &
	npud_pid=$!
	for _ in $(seq 3000); do
		"$npuctl" --bus "$addr" status >/dev/null 2>&1 && break
		kill -0 "$npud_pid" 2>/dev/null || { cat "$tmp/npud.log"; return 1; }
		sleep 0.2
	done
	"$npuctl" --bus "$addr" bench --clients 1,8 --new-tokens 16
}

m=$work/$shape-w8a8.gguf
run "$tools/npu-mkmodel" --shape "$shape" --type w8a8 -o "$m" >/dev/null || exit 1
run "$tools/npu-bench" -m "$m" -t "$threads" --task benchmark --prompt-lengths 256 --new-tokens 32
run "$tools/npu-bench" -m "$m" -t "$threads" --task batch-decode --batch-sizes 1,8 --pp 32 --tg 8
run "$tools/npu-bench" -m "$m" -t "$threads" --fake-context 4,4000 --kv-type q8 --tg 8
run "$tools/npu-bench" -m "$m" -t "$threads" --fake-context 4,4000 --kv-type f16 --tg 8
echo "### npuctl bench --clients 1,8 --new-tokens 16 (npud: $threads threads, n_ctx 256, KV 1536 MB)"
(npud_clients "$m") || echo "npud: failed"
echo
if [ "$shape" != llama2-7b ]; then
	m16=$work/$shape-w8a16.gguf
	"$tools/npu-mkmodel" --shape "$shape" --type w8a16 -o "$m16" >/dev/null || exit 1
	run "$tools/npu-bench" -m "$m" -m "$m16" -t "$threads" --task benchmark \
		--prompt-lengths 2,4,8,16,32,64,128,256 --new-tokens 8 --no-peaks --plot "$work/plot.svg"
	rm -f "$m16"
fi
rm -f "$m"

if [ -n "$llama_bench" ]; then
	q=$work/$shape-q8_0.gguf
	"$tools/npu-mkmodel" --shape "$shape" --type q8_0 -o "$q" >/dev/null || exit 1
	run "$llama_bench" -m "$q" -t "$threads" -p 256 -n 32 -r 2 -o md
	rm -f "$q"
else
	echo "(no llama-bench: set LLAMA_BENCH or put it on PATH for llama.cpp's figures)"
fi
