#!/bin/bash
# SPDX-License-Identifier: MIT
# The README's "which precision should I use" speed columns: one TinyLlama-
# shaped model (random weights, Llama 2's vocabulary) in every precision
# npud runs, each timed by npu-bench (prefill of 256 tokens, 32 decoded),
# beside llama.cpp's llama-bench on the same file where llama.cpp reads it
# (f16, q8_0, q4_k_m; w8a8, w8a16 and w4a8 are npud's own formats).
#   scripts/bench-precisions.sh [THREADS] [WORKDIR] [LLAMA_BENCH]
# THREADS defaults to 2, WORKDIR to a temporary folder (the files take
# 6.5 GB; removed at the end unless WORKDIR is given), LLAMA_BENCH to
# llama-bench on PATH (none: npud's columns only). Wrap it in
# flock /work/bench.lock on a shared machine: figures only, no verdict.
set -u
threads=${1:-2}
work=${2:-}
llama=${3:-$(command -v llama-bench || true)}
root=$(cd "$(dirname "$0")/.." && pwd)
tools=${NPU_TOOLS:-$root/build/daemon/tools}
shared=${NPU_SHARED:-$root/../shared}

if [ -z "$work" ]; then
	work=$(mktemp -d /tmp/bench-precisions.XXXXXX)
	trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
f16=$work/tiny-f16.gguf
[ -f "$f16" ] || "$tools/npu-mkmodel" --shape tinyllama --type f16 \
	--vocab "$shared/tokenizer/ggml-vocab-llama-spm.gguf" -o "$f16" >/dev/null || exit 1
for p in q8_0 q4_k_m w8a8 w8a16 w4a8; do
	[ -f "$work/tiny-$p.gguf" ] && continue
	# w4a8 without its alpha search (an hour on this shape at 2 threads): the speed is the same
	extra=""
	[ "$p" = w4a8 ] && extra=--no-search
	"$tools/npu-quantize" -i "$f16" -o "$work/tiny-$p.gguf" --precision "$p" --threads "$threads" $extra \
		--calib "$shared/data/aidreams-calib.txt" --samples 4 >"$work/quantize-$p.log" 2>&1 ||
		{ tail -5 "$work/quantize-$p.log"; exit 1; }
done

# llama_ts FILE: llama-bench's prefill and decode tokens/s, or nothing
llama_ts() {
	[ -n "$llama" ] || return 0
	"$llama" -m "$1" -t "$threads" -p 256 -n 32 -o csv 2>/dev/null | awk -F, '
		NR == 1 { for (i = 1; i <= NF; i++) { h = $i; gsub(/"/, "", h); col[h] = i } next }
		{ gsub(/"/, ""); if ($col["n_prompt"] > 0) pp = $col["avg_ts"]; else tg = $col["avg_ts"] }
		END { if (pp > 0) printf "%.1f %.2f", pp, tg }'
}

echo "| precision | file GB | npud prefill 256 tok/s | npud decode tok/s | decode GB/s (of measured) | llama.cpp prefill | llama.cpp decode |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for p in f16 q8_0 q4_k_m w8a8 w8a16 w4a8; do
	f=$work/tiny-$p.gguf
	out=$("$tools/npu-bench" -m "$f" -t "$threads" --pp 256 --tg 32 2>&1) || { echo "| $p | failed |"; continue; }
	pp=$(echo "$out" | awk '/^prompt processing:/ {print $(NF-1)}')
	tg=$(echo "$out" | awk '/^generation:/ {print $(NF-1)}')
	got=$(echo "$out" | sed -n 's/^decode: .* = \([0-9.]*\) GB\/s; median step.*/\1/p' | head -1)
	bw=$(echo "$out" | sed -n 's/^decode against the measured read bandwidth \([0-9.]*\) GB\/s .*: mean \([0-9]*%\).*/\1 (\2)/p' | head -1)
	[ -n "$got" ] && [ -n "$bw" ] && bw="$got of $bw"
	gb=$(stat -c %s "$f" | awk '{printf "%.2f", $1 / 1e9}')
	lpp="" ltg=""
	case $p in f16 | q8_0 | q4_k_m) read -r lpp ltg <<<"$(llama_ts "$f")" ;; esac
	echo "| $p | $gb | $pp | $tg | ${bw:-} | ${lpp:--} | ${ltg:--} |"
done
echo "$threads threads; npu-bench -m FILE -t $threads --pp 256 --tg 32; llama-bench -p 256 -n 32 -t $threads"
