#!/bin/bash
# SPDX-License-Identifier: MIT
# npu-bench and llama.cpp's llama-bench on the same GGUF file, one after the
# other in the same run, and the ratios:
#   scripts/bench-vs-llama.sh MODEL.gguf [THREADS] [LLAMA_BENCH...]
# THREADS defaults to 2; LLAMA_BENCH (one or more llama-bench binaries, e.g.
# two builds) defaults to llama-bench on PATH. Prefill is 256 prompt tokens,
# decode 32 new tokens, as llama-bench -p 256 -n 32 measures them. llama.cpp
# is a measuring tool here, not a dependency: without it only npud's row is
# printed. Prints a Markdown table, then npu-bench's bandwidth line.
set -u
model=${1:?usage: bench-vs-llama.sh MODEL.gguf [THREADS] [LLAMA_BENCH...]}
threads=${2:-2}
shift $(($# >= 2 ? 2 : 1))
root=$(cd "$(dirname "$0")/.." && pwd)
npu_bench=${NPU_BENCH:-$root/build/daemon/tools/npu-bench}
llamas=("$@")
[ ${#llamas[@]} -eq 0 ] && command -v llama-bench >/dev/null && llamas=(llama-bench)

out=$("$npu_bench" -m "$model" -t "$threads" --pp 256 --tg 32 2>&1) || { echo "$out"; exit 1; }
npu_pp=$(echo "$out" | awk '/^prompt processing:/ {print $(NF-1)}')
npu_tg=$(echo "$out" | awk '/^generation:/ {print $(NF-1)}')

echo "| $(basename "$model"), $threads threads | prefill 256 tok/s | decode tok/s | npud prefill / this | npud decode / this |"
echo "| --- | --- | --- | --- | --- |"
echo "| npud (npu-bench) | $npu_pp | $npu_tg | | |"
for lb in "${llamas[@]}"; do
	csv=$("$lb" -m "$model" -t "$threads" -p 256 -n 32 -o csv 2>/dev/null) || { echo "| $lb | failed | | | |"; continue; }
	# columns by name: n_prompt, n_gen, avg_ts
	echo "$csv" | awk -F, -v name="$lb" -v npp="$npu_pp" -v ntg="$npu_tg" '
		NR == 1 { for (i = 1; i <= NF; i++) { h = $i; gsub(/"/, "", h); col[h] = i } next }
		{
			gsub(/"/, "")
			if ($col["n_prompt"] > 0) pp = $col["avg_ts"]; else tg = $col["avg_ts"]
		}
		END {
			rp = pp > 0 ? npp / pp : 0
			rt = tg > 0 ? ntg / tg : 0
			printf "| llama.cpp (%s) | %.2f | %.2f | %.2fx | %.2fx |\n", name, pp, tg, rp, rt
		}'
done
echo "$out" | grep -E '^decode:'
