#!/bin/sh
# Perplexity of the small model in f32, w8a16 and w8a8 (SmoothQuant and plain),
# calibrated on the first half of the shared calibration text and measured on
# the second half. Thresholds: w8a16 within 1 % of f32, w8a8 within 5 %, and
# SmoothQuant w8a8 no worse than plain w8a8 beyond 0.5 % (on this small model
# both are within 0.2 % of f32, so their difference is noise).
set -eu
bin=$1
shared=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
model=$shared/models/aidreams260K-f32.gguf
head -c 7400 "$shared/data/aidreams-calib.txt" >"$tmp/calib.txt"
tail -c +7401 "$shared/data/aidreams-calib.txt" >"$tmp/eval.txt"

ppl() {
	"$bin/npu-run" -m "$1" --perplexity "$tmp/eval.txt" 2>/dev/null | awk '/^perplexity:/ {print $2}'
}
"$bin/npu-quantize" -i "$model" -o "$tmp/w8a16.gguf" --precision w8a16 --calib "$tmp/calib.txt" 2>/dev/null
"$bin/npu-quantize" -i "$model" -o "$tmp/w8a8.gguf" --precision w8a8 --calib "$tmp/calib.txt" 2>/dev/null
"$bin/npu-quantize" -i "$model" -o "$tmp/plain.gguf" --precision w8a8 --no-smooth 2>/dev/null
f32=$(ppl "$model")
w8a16=$(ppl "$tmp/w8a16.gguf")
w8a8=$(ppl "$tmp/w8a8.gguf")
plain=$(ppl "$tmp/plain.gguf")
echo "perplexity: f32 $f32, w8a16 $w8a16, w8a8 smoothquant $w8a8, w8a8 plain $plain"
awk -v f="$f32" -v a="$w8a16" -v b="$w8a8" -v p="$plain" 'BEGIN {
	ok = 1
	if (f == "" || a == "" || b == "" || p == "") { print "missing figure"; exit 1 }
	if (a > f * 1.01) { print "w8a16 is more than 1% above f32"; ok = 0 }
	if (b > f * 1.05) { print "w8a8 is more than 5% above f32"; ok = 0 }
	if (b > p * 1.005) { print "smoothquant w8a8 is worse than plain w8a8"; ok = 0 }
	exit ok ? 0 : 1
}'
