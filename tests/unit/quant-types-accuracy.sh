#!/bin/sh
# The GGUF block types and w4a8 on the widened small model (dim 256: every
# matrix divisible by 256, so every type applies), quantized by npu-quantize
# from aidreams-wide-f32.gguf and measured on the second half of the shared
# calibration text (the first half calibrates):
#   - perplexity per type against f32's, within a bound per type (about
#     twice the measured loss, so a broken kernel or quantizer fails);
#   - KL divergence from the f32 model and top-1 agreement with it, through
#     npu-run --save-logits / --kl-divergence-base;
#   - w4a8 with the search of alpha is closer to the f32 model (KL
#     divergence) than w4a8 at a fixed alpha, for groups of 32 and of 128;
#   - a GGUF block type as input: q4_k_m -> w8a8 runs within w8a8's bound.
set -eu
bin=$1
shared=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
model=$shared/models/aidreams-wide-f32.gguf
head -c 7400 "$shared/data/aidreams-calib.txt" >"$tmp/calib.txt"
tail -c +7401 "$shared/data/aidreams-calib.txt" >"$tmp/eval.txt"

ppl() {
	"$bin/npu-run" -m "$1" --perplexity "$tmp/eval.txt" 2>/dev/null | awk '/^perplexity:/ {print $2}'
}
kld() {
	"$bin/npu-run" -m "$1" --kl-divergence-base "$tmp/f32.logits" 2>/dev/null |
		awk '/^mean KL/ {k = $4} /^top-1/ {t = $3} END {print k, t}'
}

"$bin/npu-run" -m "$model" --save-logits "$tmp/f32.logits" --perplexity "$tmp/eval.txt" >/dev/null 2>&1
f32=$(ppl "$model")
[ -n "$f32" ] || { echo "no f32 perplexity"; exit 1; }
echo "f32: perplexity $f32"
fail=0
# type and the perplexity bound above f32's, in percent
for spec in q8_0:1 q6_k:1 q5_k:2 q5_1:2 q5_0:2.5 q4_k:4 q4_1:4 q4_0:7 q3_k:18 q2_k:75 q4_k_m:4 q5_k_m:2; do
	t=${spec%%:*}
	bound=${spec#*:}
	if ! "$bin/npu-quantize" -i "$model" -o "$tmp/$t.gguf" --precision "$t" 2>"$tmp/$t.log"; then
		echo "$t: npu-quantize failed: $(tail -1 "$tmp/$t.log")"
		fail=1
		continue
	fi
	p=$(ppl "$tmp/$t.gguf")
	set -- $(kld "$tmp/$t.gguf")
	echo "$t: perplexity $p, KL divergence from f32 ${1:-?}, top-1 agreement ${2:-?} %, size $(stat -c %s "$tmp/$t.gguf")"
	awk -v p="$p" -v f="$f32" -v b="$bound" -v t="$t" 'BEGIN {
		if (p == "" || p > f * (1 + b / 100)) { print t ": perplexity " p " is more than " b "% above f32"; exit 1 }
	}' || fail=1
	rm -f "$tmp/$t.gguf"
done

for g in 32 128; do
	"$bin/npu-quantize" -i "$model" -o "$tmp/search.gguf" --precision w4a8 --group-size $g \
		--calib "$tmp/calib.txt" 2>"$tmp/search.log" || { tail -3 "$tmp/search.log"; exit 1; }
	"$bin/npu-quantize" -i "$model" -o "$tmp/fixed.gguf" --precision w4a8 --group-size $g \
		--calib "$tmp/calib.txt" --no-search 2>/dev/null
	ps=$(ppl "$tmp/search.gguf")
	pf=$(ppl "$tmp/fixed.gguf")
	ks=$(kld "$tmp/search.gguf")
	kf=$(kld "$tmp/fixed.gguf")
	echo "w4a8 group $g, searched alpha: perplexity $ps, KL divergence and top-1: $ks"
	echo "w4a8 group $g, alpha 0.5:      perplexity $pf, KL divergence and top-1: $kf"
	awk -v s="${ks%% *}" -v f="${kf%% *}" -v ps="$ps" -v p32="$f32" -v g=$g 'BEGIN {
		ok = 1
		if (s == "" || f == "" || !(s < f)) { print "w4a8 group " g ": the search is not closer to f32"; ok = 0 }
		if (ps == "" || ps > p32 * 1.06) { print "w4a8 group " g ": perplexity more than 6% above f32"; ok = 0 }
		exit ok ? 0 : 1
	}' || fail=1
done

# a GGUF block type as input: dequantized, then SmoothQuant
"$bin/npu-quantize" -i "$model" -o "$tmp/q4km.gguf" --precision q4_k_m 2>/dev/null
"$bin/npu-quantize" -i "$tmp/q4km.gguf" -o "$tmp/q4km-w8a8.gguf" --precision w8a8 --calib "$tmp/calib.txt" 2>/dev/null
p=$(ppl "$tmp/q4km-w8a8.gguf")
echo "q4_k_m -> w8a8: perplexity $p"
awk -v p="$p" -v f="$f32" 'BEGIN { if (p == "" || p > f * 1.05) { print "q4_k_m -> w8a8 more than 5% above f32"; exit 1 } }' ||
	fail=1
exit $fail
