#!/bin/bash
# Greedy text of npu-run beside llama.cpp's llama-simple on the same GGUF
# files (a measuring tool, never a dependency: build llama.cpp yourself).
#   tests/llamacpp/compare-greedy.sh LLAMA_SIMPLE N MODEL.gguf...
# Runs each model on a few prompts for N tokens, both sides greedy with
# control tokens parsed in the prompt and printed as text (llama-simple's
# way), and prints one line per run: "same" or where the texts part.
# Ends with "N same, N differ".
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
npu_run=${NPU_RUN:-$root/build/daemon/tools/npu-run}
simple=$1 n=$2
shift 2
prompts=("Once upon a time" "The capital of France is" "def fibonacci(n):" "1, 2, 3, 4," "你好，世界")
same=0 differ=0
for model in "$@"; do
	for p in "${prompts[@]}"; do
		want=$("$simple" -m "$model" -n "$n" "$p" 2>/dev/null)
		want=${want#"<|begin_of_text|>"}
		want=${want#"<s>"}
		want=${want# }
		got=$("$npu_run" -m "$model" -p "$p" -n "$n" --temp 0 --special 2>/dev/null)
		if [ "$got" = "$want" ]; then
			same=$((same + 1))
			echo "same    $(basename "$model") '$p' (${#got} bytes)"
		else
			differ=$((differ + 1))
			i=0
			while [ "${got:i:1}" = "${want:i:1}" ]; do i=$((i + 1)); done
			echo "DIFFER  $(basename "$model") '$p' from byte $i"
			echo "        llama.cpp: ${want:0:300}"
			echo "        npu-run:   ${got:0:300}"
		fi
	done
done
echo "$same same, $differ differ"
