#!/bin/bash
# SPDX-License-Identifier: MIT
# npu-run's greedy tokens beside llama.cpp's on the same GGUF files, for the
# architectures of issue 13 (a measuring tool, never a dependency and not part
# of tests/run: build llama.cpp yourself, see ../shared/reference).
#   scripts/compare-llamacpp.sh LLAMA_CPP_BUILD_DIR [N_TOKENS] [MODEL.gguf...]
# Without models it writes its own into a temporary folder: tiny random models
# of npu-mkmodel --arch llama3|qwen2|qwen3 with the real Llama 3 and Qwen2
# vocabularies of ../shared/tokenizer (f32), the same with linear rope scaling
# (factor 4), and the small trained model of ../shared (llama) rewritten as
# llama3, qwen2 and qwen3 by tests/models/retarget, and its widened copy
# (aidreams-wide-f32.gguf) the same way, also as Q8_0 (llama-quantize).
# NPU_RUN_ARGS: more options for npu-run (e.g. --kv-type f32).
# Both sides decode greedily with control tokens parsed in the prompt and
# printed as text (llama-simple's way). Per model and prompt it prints how
# many of the generated tokens are equal: all N when the texts are the same
# bytes, else the largest k whose k-token text of npu-run is a prefix of
# llama.cpp's (npu-run run again with -n k). Ends with
# "N runs: N equal, N differ, N not loaded by llama.cpp".
set -u
if [ $# -lt 1 ] || [ ! -x "$1/llama-simple" ]; then
	echo "usage: $0 LLAMA_CPP_BUILD_DIR [N_TOKENS] [MODEL.gguf...] (LLAMA_CPP_BUILD_DIR/llama-simple)" >&2
	exit 2
fi
llama_bin=$(cd "$1" && pwd)
n=${2:-48}
shift $(($# >= 2 ? 2 : 1))
root=$(cd "$(dirname "$0")/.." && pwd)
shared=$root/../shared
tools=${NPU_BUILD:-$root/build}/daemon/tools
retarget=${NPU_BUILD:-$root/build}/tests/models/retarget
for t in "$tools/npu-run" "$tools/npu-mkmodel"; do
	[ -x "$t" ] || { echo "$t is not built (ninja -C build)" >&2; exit 2; }
done
work=$(mktemp -d /tmp/npud-vs-llamacpp.XXXXXX)
trap 'rm -rf "$work"' EXIT

models=("$@")
if [ ${#models[@]} -eq 0 ]; then
	for a in llama3 qwen2 qwen3; do
		v=$shared/tokenizer/ggml-vocab-qwen2.gguf
		[ $a = llama3 ] && v=$shared/tokenizer/ggml-vocab-llama3.gguf
		"$tools/npu-mkmodel" --arch $a --shape small --type f32 --vocab "$v" -o "$work/$a.gguf" &&
			"$tools/npu-mkmodel" --arch $a --shape small --type f32 --vocab "$v" --rope-scaling linear:4 \
				-o "$work/$a-linear4.gguf" || exit 1
		models+=("$work/$a.gguf" "$work/$a-linear4.gguf")
	done
	models+=("$shared/models/aidreams260K-f32.gguf")
	if [ -x "$retarget" ]; then
		for a in llama3 qwen2 qwen3; do
			"$retarget" "$shared/models/aidreams260K-f32.gguf" "$work/aidreams-as-$a.gguf" $a &&
				models+=("$work/aidreams-as-$a.gguf")
			# the widened copy (rows of 256): Q8_0 by llama-quantize
			"$retarget" "$shared/models/aidreams-wide-f32.gguf" "$work/wide-as-$a.gguf" $a || continue
			models+=("$work/wide-as-$a.gguf")
			if [ -x "$llama_bin/llama-quantize" ] &&
				"$llama_bin/llama-quantize" "$work/wide-as-$a.gguf" "$work/wide-as-$a-q8_0.gguf" Q8_0 \
					>/dev/null 2>&1; then
				models+=("$work/wide-as-$a-q8_0.gguf")
			fi
		done
	fi
fi

read -ra extra <<<"${NPU_RUN_ARGS:-}"
prompts=("Once upon a time" "The quick brown fox" "def fibonacci(n):" "1, 2, 3, 4," "你好，世界")
runs=0 equal=0 differ=0 refused=0
# llama_text MODEL PROMPT OUT: llama-simple's continuation (its echo of the prompt and BOS cut off)
llama_text() {
	"$llama_bin/llama-simple" -m "$1" -n "$n" "$2" >"$3.raw" 2>"$3.err" || return 1
	python3 - "$3.raw" "$3" "$2" <<-'EOF'
		import sys
		raw = open(sys.argv[1], 'rb').read()
		prompt = sys.argv[3].encode()
		for bos in (b'<|begin_of_text|>', b'<s>', b'<|endoftext|>'):
		    if raw.startswith(bos):
		        raw = raw[len(bos):]
		raw = raw.lstrip(b' ') if not prompt.startswith(b' ') else raw
		if not raw.startswith(prompt):
		    sys.exit('llama-simple did not echo the prompt')
		raw = raw[len(prompt):]
		if raw.endswith(b'\n'):
		    raw = raw[:-1]  # llama-simple ends its output with a newline
		open(sys.argv[2], 'wb').write(raw)
	EOF
}
# npu_text MODEL PROMPT N OUT: npu-run's continuation (without the newline it ends its output with)
npu_text() {
	"$tools/npu-run" -m "$1" -p "$2" -n "$3" --temp 0 --special --no-display-prompt -t 2 "${extra[@]}" >"$4" 2>"$work/npu.err"
	[ "$(tail -c 1 "$4" | od -An -c | tr -d ' ')" = '\n' ] && truncate -s -1 "$4"
	return 0
}
# the tokens npu-run generated, from its "generation: N tokens, ..., stop: why" line
npu_tokens() { sed -n "s/^generation: \([0-9]*\) tokens.*stop: \(.*\)/all \1 generated tokens equal (at most $n; stop: \2)/p" "$work/npu.err"; }
for model in "${models[@]}"; do
	for p in "${prompts[@]}"; do
		runs=$((runs + 1))
		name="$(basename "$model") '$p'"
		if ! llama_text "$model" "$p" "$work/want"; then
			refused=$((refused + 1))
			echo "llama.cpp cannot load  $name: $(grep -m1 -E 'error loading|unknown model|failed' "$work/want.err")"
			continue
		fi
		npu_text "$model" "$p" "$n" "$work/got"
		if cmp -s "$work/got" "$work/want"; then
			equal=$((equal + 1))
			echo "equal   $name: $(npu_tokens), $(stat -c %s "$work/got") bytes"
			continue
		fi
		differ=$((differ + 1))
		lo=0 hi=$n # the largest k whose text is a prefix of llama.cpp's
		while [ "$lo" -lt "$hi" ]; do
			mid=$(((lo + hi + 1) / 2))
			npu_text "$model" "$p" $mid "$work/k"
			if cmp -s -n "$(stat -c %s "$work/k")" "$work/k" "$work/want"; then lo=$mid; else hi=$((mid - 1)); fi
		done
		echo "DIFFER  $name: $lo of $n tokens equal"
		echo "        llama.cpp: $(head -c 200 "$work/want" | tr '\n' ' ')"
		echo "        npu-run:   $(head -c 200 "$work/got" | tr '\n' ' ')"
	done
done
echo "$runs runs: $equal equal, $differ differ, $refused not loaded by llama.cpp"
[ $differ -eq 0 ]
