#!/bin/sh
# SPDX-License-Identifier: MIT
# npu-bench prints its paired figure (decode steps against probe samples
# taken between them) and the fake contexts side by side, alternated;
# npu-kbench its best-of figure and its paired one (each kernel run against
# a probe sample taken right after it).
# usage: bench-figures.sh NPU_BENCH SHARED_DIR NPU_KBENCH
set -eu
bench=$1
kbench=$3
model=$2/models/aidreams260K-f32.gguf
[ -r "$model" ] || { echo "$model not found: skipped"; exit 77; }
grep -q avx2 /proc/cpuinfo || { echo "no AVX2: the probe does not run; skipped"; exit 77; }
fail=0
# a figure above zero, as printed (0.93 is one, 0 and 0.00 are not)
pos='([1-9][0-9]*(\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)'
check() { # what, pattern, text
        if printf '%s\n' "$3" | grep -Eq "$2"; then echo "ok: $1"; else echo "FAIL: $1 (no line matching: $2)"; fail=1; fi
}

out=$("$bench" -m "$model" -t 2 --task benchmark --prompt-lengths 8 --new-tokens 6 2>&1)
printf '%s\n' "$out" | tail -5
# 6 new tokens: the first from the prompt, then 5 steps, each paired with a probe sample
check "paired decode" '^decode paired with the probe \(5 steps at context 8, .*median probe '"$pos"' GB/s$' "$out"
check "best-of-run figure beside it" '^decode against the measured read bandwidth [1-9]' "$out"

out=$("$bench" -m "$model" -t 2 --fake-context 4,200,64 --tg 3 --kv-type q8 2>&1)
printf '%s\n' "$out"
check "first context, ratio 1" '^\| +4 \|.*\| +1\.00x \| +[0-9.]+ \| +[0-9.]+ \|$' "$out"
check "second context" '^\| +200 \|.*\| +[0-9.]+x \| +[0-9.]+ \| +[0-9.]+ \|$' "$out"
check "third context" '^\| +64 \|.*\| +[0-9.]+x \| +[0-9.]+ \| +[0-9.]+ \|$' "$out"
check "alternated" 'contexts taking turns token by token' "$out"
check "the floor of a ratio" '^context 200 against 4: [0-9.]+ MB more a step; at the rate of context 4.s steps \([0-9.]+ GB/s\) the ratio would be 1\.[0-9]+x; the extra bytes took' "$out"
# each round's two steps against each other: the median between its quartiles
paired=$(printf '%s\n' "$out" | sed -nE 's/^context 200 against 4 round by round \(a step of each back to back\): median ([0-9.]+)x, quartiles ([0-9.]+)-([0-9.]+)x$/\2 \1 \3/p')
if [ -n "$paired" ] && echo "$paired" | awk '{ exit !($1 > 0 && $1 <= $2 && $2 <= $3) }'; then
        echo "ok: round by round, quartiles $paired"
else
        echo "FAIL: round by round: no line, or its median outside its quartiles: '$paired'"
        fail=1
fi
# a step reads more at a longer context: MB/token (column 8) grows with it, by the K/V of the positions between
mb() { printf '%s\n' "$out" | awk -F'|' -v n="$1" '$2 + 0 == n && NF > 8 { print $8 + 0 }'; }
if awk -v a="$(mb 4)" -v b="$(mb 64)" -v c="$(mb 200)" 'BEGIN { exit !(a > 0 && a < b && b < c && (c - a) / (b - a) > 3.0 && (c - a) / (b - a) < 3.5) }'; then
        echo "ok: bytes per token grow with the context"
else
        echo "FAIL: bytes per token at 4, 64, 200: $(mb 4) $(mb 64) $(mb 200)"
        fail=1
fi

out=$("$kbench" --type q4_k --rows 1024 --cols 4096 --bytes 64000000 --reps 3 2>&1)
printf '%s\n' "$out"
# under ASan on a loaded CI host the kernel has run at 0.93 GB/s (4 % of the probe)
check "kernel alone, best of its runs" '^Q4_K 1024x4096, [0-9]+ copies .*: '"$pos"' GB/s; read bandwidth '"$pos"' GB/s \([0-9]+% of it\)$' "$out"
check "kernel runs paired with the probe" '^paired with the probe \(3 runs, a probe sample after each\): run / probe median [0-9]+%, best [0-9]+%; median run '"$pos"' GB/s, median probe '"$pos"' GB/s$' "$out"
exit $fail
