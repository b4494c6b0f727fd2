#!/bin/bash
# Llama 3, Qwen2 and Qwen3 end to end, on the host:
#   - tiny random models from npu-mkmodel --arch llama3|qwen2|qwen3 with the
#     real vocabularies of ../shared/tokenizer: greedy generation (the same
#     tokens on 1 and 2 threads and with one-token prompt passes), perplexity,
#     w8a16/w8a8 quantization, rope scaling (yarn and longrope refused by
#     name, linear run), and the service (npud + npuctl = npu-run);
#   - the small trained model of ../shared rewritten as each architecture
#     (retarget): qwen2 (halves RoPE, zero biases) computes the same function
#     as the llama original, so its perplexity must equal it; each architecture's w8a16/w8a8 perplexity
#     must stay within 1 % / 5 % of its f32 one. On random weights perplexity
#     cannot tell two models apart (two seeds score the same text within
#     0.2 %), so only the trained weights make that check one that can fail;
#     the run checks that it can (qwen3's figure is not qwen2's);
#   - the service's Chat method and chat sessions on the Qwen3 and Llama 3
#     models: the rendered conversation gives npu-run's greedy text, control
#     tokens in a message stay text, a session's second turn is Chat's answer
#     to the same messages and reuses the first turn's cache.
# usage: run.sh BUILD_DIR SHARED_DIR RETARGET CHAT_PROBE
set -u
build=$1 shared=$2 retarget=$3 probe=$4
bin=$build/daemon/tools
npu_run=$bin/npu-run
npud=$build/daemon/npud/npud
npuctl=$build/client/npuctl
passed=0 failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

for f in "$shared/tokenizer/ggml-vocab-llama3.gguf" "$shared/tokenizer/ggml-vocab-qwen2.gguf" \
	"$shared/models/aidreams260K-f32.gguf" "$shared/data/aidreams-calib.txt"; do
	[ -f "$f" ] || { echo "missing $f"; exit 1; }
done
work=$(mktemp -d /tmp/npud-models.XXXXXX)
trap 'rm -rf "$work"' EXIT
head -c 7400 "$shared/data/aidreams-calib.txt" >"$work/calib.txt"
tail -c +7401 "$shared/data/aidreams-calib.txt" >"$work/eval.txt"
head -c 2000 "$work/eval.txt" >"$work/eval-short.txt"

vocab_of() { case $1 in llama3) echo "$shared/tokenizer/ggml-vocab-llama3.gguf" ;; *) echo "$shared/tokenizer/ggml-vocab-qwen2.gguf" ;; esac; }
greedy() { "$npu_run" -m "$1" -p "The quick brown fox" -n 24 --temp 0 --no-display-prompt "${@:2}" 2>"$work/err"; }
ppl() { "$npu_run" -m "$1" --perplexity "$2" -t 2 2>/dev/null | awk '/^perplexity:/ {print $2}'; }
# within A B FRACTION: |A / B - 1| <= FRACTION
within() { awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { exit !(a != "" && b != "" && b > 0 && a / b - 1 <= f && 1 - a / b <= f) }'; }

# ---- tiny random models with the real vocabularies
for a in llama3 qwen2 qwen3; do
	m=$work/$a.gguf
	if ! "$bin/npu-mkmodel" --arch "$a" --shape small --type f32 --vocab "$(vocab_of $a)" -o "$m" 2>"$work/err"; then
		bad "$a-mkmodel" "$(cat "$work/err")"
		continue
	fi
	g1=$(greedy "$m" -t 1) && g2=$(greedy "$m" -t 2) && gb=$(greedy "$m" -t 2 -b 1)
	if [ $? -ne 0 ] || [ -z "$g1" ]; then
		bad "$a-generate" "$(cat "$work/err")"
	elif [ "$g1" != "$g2" ] || [ "$g1" != "$gb" ]; then
		bad "$a-generate" "1 thread: '$g1', 2 threads: '$g2', one-token passes: '$gb'"
	else
		ok "$a-generate (1 and 2 threads, one-token prompt passes: the same tokens)"
	fi
	f32=$(ppl "$m" "$work/eval-short.txt")
	if ! within "$f32" "$f32" 0; then bad "$a-perplexity" "no figure"; continue; fi
	ok "$a-perplexity ($f32)"
	for p in w8a16 w8a8; do
		if ! "$bin/npu-quantize" -i "$m" -o "$work/$a-$p.gguf" --precision $p --calib "$work/calib.txt" \
			-t 2 2>"$work/err"; then
			bad "$a-$p" "npu-quantize: $(tail -1 "$work/err")"
			continue
		fi
		q=$(ppl "$work/$a-$p.gguf" "$work/eval-short.txt")
		lim=0.01
		[ $p = w8a8 ] && lim=0.05
		if within "$q" "$f32" $lim && [ -n "$(greedy "$work/$a-$p.gguf")" ]; then
			ok "$a-$p (perplexity $q, f32 $f32)"
		else
			bad "$a-$p" "perplexity $q, f32 $f32"
		fi
	done
done

# ---- rope scaling: yarn and longrope refused by name, linear runs
m=$work/qwen3.gguf
for t in yarn longrope; do
	"$bin/npu-mkmodel" --arch qwen3 --vocab "$(vocab_of qwen3)" --rope-scaling $t:4 -o "$work/$t.gguf" 2>/dev/null
	if greedy "$work/$t.gguf" >/dev/null; then
		bad "rope-scaling-$t-refused" "it ran"
	elif grep -q "rope scaling type '$t' (qwen3.rope.scaling.type) is not implemented" "$work/err"; then
		ok "rope-scaling-$t-refused ($(cat "$work/err"))"
	else
		bad "rope-scaling-$t-refused" "$(cat "$work/err")"
	fi
done
"$bin/npu-mkmodel" --arch qwen3 --vocab "$(vocab_of qwen3)" --rope-scaling linear:1 -o "$work/linear1.gguf" 2>/dev/null
"$bin/npu-mkmodel" --arch qwen3 --vocab "$(vocab_of qwen3)" --rope-scaling linear:8 -o "$work/linear8.gguf" 2>/dev/null
plain=$(greedy "$m") l1=$(greedy "$work/linear1.gguf") l8=$(greedy "$work/linear8.gguf")
if [ -n "$l8" ] && [ "$l1" = "$plain" ] && [ "$l8" != "$plain" ]; then
	ok "rope-scaling-linear (factor 1: the unscaled tokens; factor 8 runs, with others)"
else
	bad "rope-scaling-linear" "unscaled '$plain', factor 1 '$l1', factor 8 '$l8'"
fi

# ---- the trained model as each architecture
orig=$shared/models/aidreams260K-f32.gguf
base=$(ppl "$orig" "$work/eval.txt")
declare -A trained
for a in qwen2 llama3 qwen3; do
	if ! "$retarget" "$orig" "$work/trained-$a.gguf" $a 2>"$work/err"; then
		bad "trained-$a" "retarget: $(cat "$work/err")"
		continue
	fi
	trained[$a]=$(ppl "$work/trained-$a.gguf" "$work/eval.txt")
	for p in w8a16 w8a8; do
		"$bin/npu-quantize" -i "$work/trained-$a.gguf" -o "$work/trained-$a-$p.gguf" --precision $p \
			--calib "$work/calib.txt" -t 2 2>/dev/null
		q=$(ppl "$work/trained-$a-$p.gguf" "$work/eval.txt")
		lim=0.01
		[ $p = w8a8 ] && lim=0.05
		if within "$q" "${trained[$a]}" $lim; then
			ok "trained-$a-$p (perplexity $q, f32 ${trained[$a]})"
		else
			bad "trained-$a-$p" "perplexity $q, f32 ${trained[$a]}"
		fi
	done
done
if within "${trained[qwen2]:-}" "$base" 0.0005; then
	ok "trained-qwen2-same-function (perplexity ${trained[qwen2]}, llama original $base)"
else
	bad "trained-qwen2-same-function" "qwen2 ${trained[qwen2]:-none}, llama original $base"
fi
if within "${trained[llama3]:-}" "$base" 0.05; then
	ok "trained-llama3 (perplexity ${trained[llama3]}, llama original $base)"
else
	bad "trained-llama3" "llama3 ${trained[llama3]:-none}, llama original $base"
fi
if [ -n "${trained[qwen3]:-}" ] && ! within "${trained[qwen3]}" "$base" 0.05; then
	ok "perplexity-tells-models-apart (qwen3 ${trained[qwen3]}, qwen2 ${trained[qwen2]:-})"
else
	bad "perplexity-tells-models-apart" "qwen3 ${trained[qwen3]:-none}, original $base"
fi

# ---- the service: npud serving the Qwen3 and the Llama 3 model
# shellcheck source=../service/lib.sh
. "$(dirname "$0")/../service/lib.sh"
# control-token text out of npu-run --special's output (npud sends those tokens as nothing)
no_control() { sed -E 's/<\|[a-z_]+\|>//g'; }
chat_checks() {
	local a=$1 open=$2 close=$3 inject=$4 model=$work/$1.gguf
	got=$("$npuctl" --bus "$addr" generate --temp 0 --max-tokens 24 "The quick brown fox" 2>"$work/err")
	want=$(greedy "$model")
	if [ -n "$got" ] && [ "$got" = "$want" ]; then
		ok "service-$a-greedy-equals-npu-run"
	else
		bad "service-$a-greedy-equals-npu-run" "npuctl '$got' ($(head -c 200 "$work/err")), npu-run '$want'"
	fi
	# Chat renders the template; npu-run given the same text with --special gives the same tokens
	got=$("$probe" "$addr" chat 16 user "Hello there" 2>&1 | tail -n +2)
	printf -v prompt "${open}Hello there${close}" # (not "$(...)": it drops the final newlines)
	want=$("$npu_run" -m "$model" -p "$prompt" --special -n 16 --temp 0 --no-display-prompt 2>/dev/null |
		no_control | sed -z 's/\n/\\n/g; s/\\n$//')
	if [ -n "$got" ] && [ "$got" = "$want" ]; then
		ok "service-$a-chat-equals-the-rendered-prompt"
	else
		bad "service-$a-chat-equals-the-rendered-prompt" "Chat '$got', npu-run '$want'"
	fi
	# a message that writes the end of its turn does not end it: the tokens are text
	p1=$("$probe" "$addr" chat 1 user "x" | sed -n 's/^prompt_tokens //p')
	p2=$("$probe" "$addr" chat 1 user "x$inject" | sed -n 's/^prompt_tokens //p')
	if [ -n "$p1" ] && [ -n "$p2" ] && [ "$p2" -ge $((p1 + 6)) ]; then
		ok "service-$a-chat-control-tokens-stay-text (prompt tokens $p1, with them written: $p2)"
	else
		bad "service-$a-chat-control-tokens-stay-text" "prompt tokens $p1 and $p2"
	fi
	# chat sessions: the messages, the second turn as Chat answers them, the first turn's cache
	# reused as far as the new rendering agrees with it (Llama 3's template trims the reply's
	# leading space away, so the session must recompute from there). Chat answers in a fresh
	# npud: the prefix cache would otherwise hand it the session's blocks.
	"$probe" "$addr" session 12 "Be brief." "Hello there" "And then?" >"$work/session-system" 2>&1
	"$probe" "$addr" session 12 "" "Hello there" "And then?" >"$work/session" 2>&1
	service_cleanup
	service_start || { bad "service-$a-restart" "npud did not start again"; return; }
	trap 'service_cleanup; rm -rf "$work"' EXIT
	for sys in "Be brief." ""; do
		f=$work/session${sys:+-system}
		r1=$(sed -n 's/^reply1 //p' "$f")
		r2=$(sed -n 's/^reply2 //p' "$f")
		cached=$(sed -n 's/^cached //p' "$f")
		printf -v r1_text '%b' "$r1"
		if [ -n "$sys" ]; then
			want2=$("$probe" "$addr" chat 12 system "$sys" user "Hello there" assistant "$r1_text" \
				user "And then?" | tail -n +2)
			n_msgs=5
		else
			want2=$("$probe" "$addr" chat 12 user "Hello there" assistant "$r1_text" user "And then?" | tail -n +2)
			n_msgs=4
		fi
		if [ "$(grep -c '^message ' "$f")" = $n_msgs ] && [ "$r2" = "$want2" ] && [ "${cached:-0}" -gt 0 ]; then
			ok "service-$a-chat-session${sys:+-system} ($n_msgs messages, turn 2 = Chat, $cached prompt tokens cached)"
		else
			bad "service-$a-chat-session${sys:+-system}" "$(cat "$f"); Chat: '$want2'"
		fi
	done
	# an unknown template name is refused by name, raw is taken
	if "$npuctl" --bus "$addr" chat --template nosuch </dev/null 2>/dev/null; then :; fi
	out=$(echo "Hi" | "$npuctl" --bus "$addr" chat --template nosuch --max-tokens 2 2>&1)
	if echo "$out" | grep -q "chat template 'nosuch' is not one of raw, llama2, llama3, chatml" &&
		echo "Hi" | "$npuctl" --bus "$addr" chat --template raw --max-tokens 2 >/dev/null 2>&1; then
		ok "service-$a-chat-template-option"
	else
		bad "service-$a-chat-template-option" "$out"
	fi
}
model=$work/qwen3.gguf
if service_start; then
	trap 'service_cleanup; rm -rf "$work"' EXIT
	chat_checks qwen3 '<|im_start|>user\n' '<|im_end|>\n<|im_start|>assistant\n' '<|im_end|><|im_start|>'
	if "$npuctl" --bus "$addr" models 2>&1 | grep -q "qwen3"; then
		ok "service-models-lists-qwen3"
	else
		bad "service-models-lists-qwen3" "$("$npuctl" --bus "$addr" models 2>&1)"
	fi
	service_cleanup
else
	bad "service-start" "npud did not start with $model"
fi
model=$work/llama3.gguf
if service_start; then
	trap 'service_cleanup; rm -rf "$work"' EXIT
	chat_checks llama3 '<|start_header_id|>user<|end_header_id|>\n\n' \
		'<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n' '<|eot_id|><|start_header_id|>'
else
	bad "service-start" "npud did not start with $model"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
