#!/bin/bash
# SPDX-License-Identifier: MIT
# npud-http's tests: npud on a private D-Bus bus (tests/service/lib.sh), the
# gateway in front of it on a Unix socket and on a loopback TCP port, and
# clients no one here wrote: curl, and the official `openai` npm package
# (installed at test time into a cache folder from the package-lock here;
# never part of the product).
#   tests/http/run-tests.sh BUILD_DIR SHARED_DIR
# Prints "ok NAME" or "FAIL NAME: why" per check and "N passed, N failed";
# exits 0 only when all pass (77, meson's skip, without the model or dbus-daemon).
# NPUD_HTTP_NODE_CACHE: where the npm package goes (default tests/http/.cache).
set -u

if [ $# -ne 2 ]; then
	echo "usage: $0 BUILD_DIR SHARED_DIR" >&2
	exit 2
fi
build=$(cd "$1" && pwd) || exit 2
shared=$(cd "$2" && pwd) || exit 2
here=$(cd "$(dirname "$0")" && pwd)

npud=$build/daemon/npud/npud
npuctl=$build/client/npuctl
probe=$build/tests/service/npud-probe
api_probe=$build/tests/service/api-probe
mkmodel=$build/daemon/tools/npu-mkmodel
gateway=$build/client/http/npud-http
model=$shared/models/aidreams260K-f32.gguf
model_name=aidreams260K-f32
prompt="Once upon a time"

for f in "$npud" "$npuctl" "$probe" "$api_probe" "$mkmodel" "$gateway"; do
	[ -x "$f" ] || { echo "FAIL setup: $f is not built"; exit 1; }
done
[ -f "$model" ] || { echo "SKIP: no $model"; exit 77; }
command -v dbus-daemon >/dev/null || { echo "SKIP: no dbus-daemon"; exit 77; }

passed=0
failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
for c in curl node npm; do
	command -v $c >/dev/null || bad "setup" "no $c (scripts/install-deps.sh installs it)"
done

# shellcheck source=../service/lib.sh
. "$here/../service/lib.sh"
gw_pids=()
cleanup() {
	local p
	for p in "${gw_pids[@]}"; do kill "$p" 2>/dev/null; done
	service_cleanup
}

# ---- the openai package, from the lock file, into the cache
node_deps=${NPUD_HTTP_NODE_CACHE:-$here/.cache}
install_openai() {
	mkdir -p "$node_deps" || return 1
	if [ -f "$node_deps/node_modules/openai/package.json" ] &&
		cmp -s "$here/package-lock.json" "$node_deps/package-lock.json"; then
		return 0
	fi
	cp "$here/package.json" "$here/package-lock.json" "$node_deps/" &&
		(cd "$node_deps" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >npm.log 2>&1) ||
		{ cat "$node_deps/npm.log" 2>/dev/null | tail -5; return 1; }
}
if install_openai; then
	ok "npm-ci-openai ($(node -p "require('$node_deps/node_modules/openai/package.json').version"))"
else
	bad "npm-ci-openai" "npm ci failed"
fi

NPUD_MAX_REQUESTS_PER_CLIENT=4
service_start || exit 1
trap cleanup EXIT

# gw_start NAME [ARGS...]: a gateway on $tmp/NAME.sock and a free loopback port, key $tmp/NAME.key;
# sets gw_sock, gw_port, gw_key, gw_pid.
gw_start() {
	local name=$1 i
	shift
	rm -f "$tmp/$name.log"
	"$gateway" --bus "$addr" --listen "unix:$tmp/$name.sock" --listen 127.0.0.1:0 --api-key-file "$tmp/$name.key" \
		"$@" >"$tmp/$name.log" 2>&1 &
	gw_pid=$!
	gw_pids+=("$gw_pid")
	for i in $(seq 100); do
		grep -q "listening on 127" "$tmp/$name.log" && break
		sleep 0.05
	done
	gw_sock=$tmp/$name.sock
	gw_port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/$name.log")
	gw_key=$(cat "$tmp/$name.key" 2>/dev/null)
	[ -n "$gw_port" ] && [ -S "$gw_sock" ]
}

if ! gw_start gw --request-timeout 2 --max-body 65536; then
	bad "gateway-start" "$(cat "$tmp/gw.log")"
	echo "$passed passed, $failed failed"
	exit 1
fi
ok "gateway-start"
sock=$gw_sock port=$gw_port key=$gw_key
U() { curl -sS --max-time 30 --unix-socket "$sock" "$@"; }
T() { curl -sS --max-time 30 -H "Authorization: Bearer $key" "$@"; }
url=http://localhost
json() { node -e "let s=require('fs').readFileSync(0,'utf8'); let o=JSON.parse(s); console.log($1)"; }

# ---- the Unix socket: the user's alone, no key needed
mode=$(stat -c '%a' "$sock")
if [ "$mode" = 600 ]; then ok "unix-socket-mode-0600"; else bad "unix-socket-mode-0600" "mode $mode"; fi
kmode=$(stat -c '%a' "$tmp/gw.key")
if [ "$kmode" = 600 ] && [ "${#key}" -ge 32 ]; then ok "key-created-0600"; else bad "key-created-0600" "mode $kmode, ${#key} chars"; fi
out=$(U $url/v1/models)
if echo "$out" | grep -q "\"id\":\"$model_name\""; then ok "unix-models"; else bad "unix-models" "$out"; fi
# a kept-alive connection is closed 2 s (--request-timeout) after its last response: every
# response says so, and a client (undici) retires the socket before, not racing the close
hdr=$(U -D - -o /dev/null $url/v1/models | tr -d '\r')
hdr404=$(U -D - -o /dev/null $url/v1/models/no-such | tr -d '\r')
if echo "$hdr" | grep -qi '^keep-alive: timeout=2$' && echo "$hdr404" | grep -qi '^keep-alive: timeout=2$'; then
	ok "keep-alive-timeout-told"
else
	bad "keep-alive-timeout-told" "$(echo "$hdr" "$hdr404" | tr '\n' ';')"
fi

# ---- TCP: the key or 401
code=$(curl -sS -o "$tmp/out" -w '%{http_code}' http://127.0.0.1:$port/v1/models)
if [ "$code" = 401 ] && grep -q '"type":"invalid_request_error"' "$tmp/out"; then ok "tcp-no-key-401"; else bad "tcp-no-key-401" "$code $(cat "$tmp/out")"; fi
code=$(curl -sS -o "$tmp/out" -w '%{http_code}' -H "Authorization: Bearer ${key%?}x" http://127.0.0.1:$port/v1/models)
if [ "$code" = 401 ] && grep -q '"code":"invalid_api_key"' "$tmp/out"; then ok "tcp-wrong-key-401"; else bad "tcp-wrong-key-401" "$code $(cat "$tmp/out")"; fi
code=$(T -o "$tmp/out" -w '%{http_code}' http://127.0.0.1:$port/v1/models)
if [ "$code" = 200 ] && grep -q "$model_name" "$tmp/out"; then ok "tcp-key-200"; else bad "tcp-key-200" "$code $(cat "$tmp/out")"; fi

# ---- a completion at temperature 0 equals npuctl generate; the stream's SSE framing
expected=$("$npuctl" --bus "$addr" generate -q --temp 0 --max-tokens 60 "$prompt")
printf '%s\n' "$expected" >"$tmp/expected"
body='{"model":"'$model_name'","prompt":"'$prompt'","max_tokens":60,"temperature":0}'
got=$(U $url/v1/completions -d "$body" | json 'o.choices[0].text')
if [ "$got" = "$expected" ]; then ok "curl-completion-equals-npuctl"; else bad "curl-completion-equals-npuctl" "'$got' vs '$expected'"; fi

sbody='{"model":"'$model_name'","prompt":"'$prompt'","max_tokens":60,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}'
U -N -D "$tmp/headers" $url/v1/completions -d "$sbody" >"$tmp/sse"
# framing: every event is one "data: " line followed by an empty line; the last one is [DONE]
framing=$(awk 'BEGIN { want = "data"; bad = "" }
	{ sub(/\r$/, "") }
	want == "data" { if ($0 !~ /^data: /) bad = bad " line " NR ": not data"; last = $0; want = "blank"; next }
	want == "blank" { if ($0 != "") bad = bad " line " NR ": no blank line"; want = "data"; n++ }
	END { if (last != "data: [DONE]") bad = bad " last: " last; if (want != "data") bad = bad " unterminated"; print n " " bad }' "$tmp/sse")
events=${framing%% *}
if [ "${framing#* }" = "" ] && [ "$events" -ge 4 ] && grep -qi '^content-type: text/event-stream' "$tmp/headers"; then
	ok "curl-sse-framing ($events events)"
else
	bad "curl-sse-framing" "$framing; $(head -c 300 "$tmp/sse")"
fi
stream_text=$(grep '^data: {' "$tmp/sse" | sed 's/^data: //' |
	node -e "let t=''; for (const l of require('fs').readFileSync(0,'utf8').split('\n')) if (l) for (const c of JSON.parse(l).choices) t += c.text; process.stdout.write(t)")
if [ "$stream_text" = "$expected" ]; then ok "curl-stream-equals-whole"; else bad "curl-stream-equals-whole" "'$stream_text'"; fi
usage=$(grep '^data: {' "$tmp/sse" | tail -1 | sed 's/^data: //' | json 'o.choices.length + " " + o.usage.completion_tokens')
if [ "$usage" = "0 $(U $url/v1/completions -d "$body" | json 'o.usage.completion_tokens')" ]; then ok "curl-stream-usage-last"; else bad "curl-stream-usage-last" "$usage"; fi

# ---- errors: OpenAI's object, the right status, and the gateway keeps serving
E() { # NAME STATUS PATTERN CURL-ARGS...
	local name=$1 want=$2 pat=$3 code
	shift 3
	code=$(U -o "$tmp/out" -w '%{http_code}' "$@")
	if [ "$code" = "$want" ] && grep -q -- "$pat" "$tmp/out" &&
		json 'typeof o.error.message + typeof o.error.type + ("param" in o.error) + ("code" in o.error)' <"$tmp/out" |
		grep -q '^stringstringtruetrue$'; then
		ok "$name"
	else
		bad "$name" "status $code: $(head -c 300 "$tmp/out")"
	fi
}
E "error-malformed-json" 400 "parse the JSON" $url/v1/completions -d '{"model": "x", prompt}'
E "error-not-an-object" 400 "JSON object" $url/v1/completions -d '[1,2]'
E "error-empty-body" 400 "empty" $url/v1/completions -X POST
E "error-wrong-type" 400 '"param":"max_tokens"' $url/v1/completions -d '{"model":"'$model_name'","prompt":"x","max_tokens":"5"}'
E "error-out-of-range" 400 '"param":"top_p"' $url/v1/completions -d '{"model":"'$model_name'","prompt":"x","top_p":7}'
E "error-unknown-field" 400 "Unrecognized request argument supplied: bogus" $url/v1/completions -d '{"model":"'$model_name'","prompt":"x","bogus":1}'
E "error-missing-model" 400 '"param":"model"' $url/v1/completions -d '{"prompt":"x"}'
E "error-unknown-model" 404 '"code":"model_not_found"' $url/v1/completions -d '{"model":"no-such","prompt":"x"}'
E "error-unknown-model-get" 404 '"code":"model_not_found"' $url/v1/models/no-such
E "error-nul-in-prompt" 400 '"param":"prompt"' $url/v1/completions -d '{"model":"'$model_name'","prompt":"a\u0000b"}'
E "error-invalid-utf8" 400 "parse the JSON" $url/v1/completions --data-binary "$(printf '{"model":"x","prompt":"\377"}')"
E "error-deep-nesting" 400 "parse the JSON" $url/v1/completions -d "$(printf '%0.s[' $(seq 200))"
E "error-bad-messages" 400 '"param":"messages"' $url/v1/chat/completions -d '{"model":"'$model_name'","messages":[{"role":"wizard","content":"x"}]}'
E "error-no-route" 404 "Invalid URL" $url/v1/engines
E "error-wrong-method" 405 "use POST" $url/v1/completions
head -c 100000 /dev/zero | tr '\0' a >"$tmp/big"
E "error-body-too-large" 413 '"code":"request_too_large"' $url/v1/completions --data-binary @"$tmp/big"
E "error-body-too-large-chunked" 413 '"code":"request_too_large"' $url/v1/completions -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/big"
E "error-body-too-large-expect-100" 413 '"code":"request_too_large"' $url/v1/completions -H 'Expect: 100-continue' --data-binary @"$tmp/big"
out=$(U $url/api/generate -d '{"model":"no-such","prompt":"x","raw":true}')
if [ "$(echo "$out" | json 'typeof o.error')" = string ]; then ok "ollama-error-shape"; else bad "ollama-error-shape" "$out"; fi

# ---- Ollama's endpoints
out=$(U $url/api/tags)
if [ "$(echo "$out" | json 'o.models[0].name')" = "$model_name" ]; then ok "ollama-tags"; else bad "ollama-tags" "$out"; fi
obody='{"model":"'$model_name'","prompt":"'$prompt'","raw":true,"options":{"temperature":0,"num_predict":60}}'
U -N $url/api/generate -d "$obody" >"$tmp/ndjson"
otext=$(node -e "let t='',last; for (const l of require('fs').readFileSync(0,'utf8').split('\n')) if (l) { last=JSON.parse(l); t += last.response; } if (!last.done || !last.eval_count) t='(no final object)'; process.stdout.write(t)" <"$tmp/ndjson")
if [ "$otext" = "$expected" ]; then ok "ollama-generate-stream"; else bad "ollama-generate-stream" "'$otext' $(tail -c 200 "$tmp/ndjson")"; fi
otext=$(U $url/api/generate -d "${obody%\}},\"stream\":false}" | json 'o.done + " " + o.response')
if [ "$otext" = "true $expected" ]; then ok "ollama-generate-whole"; else bad "ollama-generate-whole" "'$otext'"; fi
otext=$(U $url/api/generate -d "$(echo "${obody%\}},\"stream\":false}" | sed "s/\"model\":\"$model_name\"/\"model\":\"$model_name:latest\"/")" | json 'o.model + " " + o.response')
if [ "$otext" = "$model_name $expected" ]; then ok "ollama-model-latest-tag"; else bad "ollama-model-latest-tag" "'$otext'"; fi

# ---- logprobs in Ollama's shape; echo with logprobs is refused (no prompt log-probabilities)
out=$(U $url/api/generate -d "${obody%\}},\"stream\":false,\"logprobs\":true,\"top_logprobs\":2}")
lp=$(echo "$out" | json 'o.logprobs.length + " " + o.eval_count + " " + (o.logprobs.map(t => t.token).join("") === o.response) +
	" " + o.logprobs.every(t => t.top_logprobs.length === 2 && t.top_logprobs[0].token === t.token && t.logprob <= 0)')
if [ "$lp" = "$(echo "$out" | json 'o.eval_count + " " + o.eval_count') true true" ]; then ok "ollama-logprobs"; else bad "ollama-logprobs" "$lp: $(echo "$out" | head -c 300)"; fi
E "error-echo-with-logprobs" 400 '"param":"echo"' $url/v1/completions -d '{"model":"'$model_name'","prompt":"x","echo":true,"logprobs":1}'
E "error-logprobs-above-5" 400 '"param":"logprobs"' $url/v1/completions -d '{"model":"'$model_name'","prompt":"x","logprobs":6}'

# ---- models: /v1/models' created is when npud loaded the model; Ollama's load, unload, keep_alive
# and /api/ps against npud's models_dir (set by a reload)
loaded_at=$(busctl --address="$addr" get-property org.npud.Inference1 /org/npud/Inference1/model/aidreams260K_2df32 \
	org.npud.Inference1.Model LoadedAt | awk '{print $2}')
created=$(U $url/v1/models | json "o.data.find(m => m.id === '$model_name').created")
if [ -n "$loaded_at" ] && [ "$created" = "$((loaded_at / 1000000))" ]; then ok "models-created-is-loaded-at"; else bad "models-created-is-loaded-at" "created $created, LoadedAt $loaded_at"; fi
mkdir -p "$tmp/models"
cp "$model" "$tmp/models/tiny.gguf"
printf 'models_dir = %s\n' "$tmp/models" >>"$tmp/npud.conf"
kill -HUP "$npud_pid"
for i in $(seq 100); do grep -q reloaded "$tmp/npud.log" && break; sleep 0.05; done
running() { U $url/api/ps | json "o.models.map(m => m.name + '@' + m.expires_at.slice(0, 4)).sort().join(' ')"; }
out=$(U $url/api/generate -d '{"model":"tiny","keep_alive":"1h"}' | json 'o.done + " " + o.done_reason')
ps=$(running)
year=$(date -u +%Y)
if [ "$out" = "true load" ] && echo "$ps" | grep -q "tiny@$year" && echo "$ps" | grep -q "$model_name@9999"; then
	ok "ollama-load-and-ps"
else
	bad "ollama-load-and-ps" "$out; ps: $ps"
fi
out=$(U $url/api/chat -d '{"model":"tiny","messages":[],"keep_alive":0}' | json 'o.done + " " + o.done_reason + " " + o.message.role')
if [ "$out" = "true unload assistant" ] && ! running | grep -q tiny; then ok "ollama-unload-keep-alive-0"; else bad "ollama-unload-keep-alive-0" "$out; ps: $(running)"; fi
out=$(U $url/api/generate -d '{"model":"tiny","prompt":"'"$prompt"'","raw":true,"stream":false,"keep_alive":"2s","options":{"num_predict":4,"temperature":0}}' | json 'o.done_reason')
t0=$(date +%s%N)
has_tiny() { U $url/api/ps | grep -q '"name":"tiny"'; }
during=no
has_tiny && during=yes
gone=""
for i in $(seq 200); do has_tiny || { gone=$((($(date +%s%N) - t0) / 1000000)); break; }; sleep 0.05; done
if [ "$out" = length ] && [ "$during" = yes ] && [ -n "$gone" ] && [ "$gone" -ge 1500 ]; then
	ok "ollama-keep-alive-passes-through (gone after $gone ms)"
else
	bad "ollama-keep-alive-passes-through" "$out; loaded after: $during; gone after ${gone:-never} ms"
fi
code=$(U -o "$tmp/out" -w '%{http_code}' $url/api/generate -d '{"model":"tiny","keep_alive":"5x"}')
if [ "$code" = 400 ] && grep -q "keep_alive" "$tmp/out"; then ok "error-keep-alive-malformed"; else bad "error-keep-alive-malformed" "$code $(cat "$tmp/out")"; fi
out=$(U $url/api/generate -d '{"model":"no-such-model"}')
if [ "$(echo "$out" | json 'typeof o.error')" = string ]; then ok "ollama-load-unknown-model"; else bad "ollama-load-unknown-model" "$out"; fi

# ---- the openai npm client (TCP, bearer key)
stat_of() { "$probe" "$addr" stats | sed -n "s/^$1=//p"; }
# the chats go to a model with a chat template (ChatML: Qwen2's vocabulary; the small model has
# none, so roles would not matter), and what npud's Chat gives, called directly, for the messages
# the client's chat sends
chat_model=qwen2chat
if "$mkmodel" --arch qwen2 --shape small --type f32 --vocab "$shared/tokenizer/ggml-vocab-qwen2.gguf" \
	-o "$tmp/$chat_model.gguf" >"$tmp/mkmodel.log" 2>&1 && "$npuctl" --bus "$addr" load -q "$tmp/$chat_model.gguf" >/dev/null 2>&1; then
	"$api_probe" "$addr" chat "$chat_model" "system:You are terse." "user:$prompt" -- max_tokens u 40 temperature d 0 \
		>"$tmp/chat-expected" 2>&1 || bad "dbus-chat" "$(head -3 "$tmp/chat-expected")"
else
	bad "chat-model" "$(tail -3 "$tmp/mkmodel.log")"
fi
# a session that holds KV blocks throughout: an aborted request's KV goes back to this earlier use
"$api_probe" "$addr" session "$model_name" "" "$prompt" -- 300 >"$tmp/held.out" 2>&1 &
held=$!
for i in $(seq 100); do grep -q '^held' "$tmp/held.out" && break; sleep 0.1; done
if [ -f "$node_deps/node_modules/openai/package.json" ]; then
	KV_HELD=1 NODE_DEPS=$node_deps HTTP_URL=http://127.0.0.1:$port/v1 HTTP_KEY=$key MODEL=$model_name EXPECTED=$tmp/expected \
		PROMPT=$prompt PROBE=$probe BUS=$addr CHAT_MODEL=$chat_model CHAT_EXPECTED=$tmp/chat-expected timeout 300 node "$here/openai-client.cjs" >"$tmp/node.out" 2>&1
	cat "$tmp/node.out"
	passed=$((passed + $(grep -c '^ok ' "$tmp/node.out")))
	failed=$((failed + $(grep -c '^FAIL ' "$tmp/node.out")))
	grep -q '^ok openai-abort-cancels' "$tmp/node.out" || grep -q '^FAIL' "$tmp/node.out" ||
		bad "openai-client" "it ended early: $(tail -3 "$tmp/node.out")"
else
	bad "openai-client" "the openai package is not installed"
fi
kill $held
wait $held 2>/dev/null

# ---- curl disconnecting mid-stream over the Unix socket, and while waiting for a whole response (the
#      connection is suspended then: only the gateway's own watch on the socket sees the hang-up):
#      npud cancels within a second and its KV cache goes back to where it was
disconnect() { # NAME STREAM(true|false)
	local name=$1 stream=$2 before gen_before during freed generated victim i
	before=$(stat_of kv_blocks_used) gen_before=$(stat_of generated_tokens)
	curl -sS -N --unix-socket "$sock" $url/v1/completions \
		-d '{"model":"'$model_name'","prompt":"'"$prompt"'","max_tokens":1000,"temperature":0,"ignore_eos":true,"stream":'$stream'}' \
		>"$tmp/cut" 2>&1 &
	victim=$!
	for i in $(seq 400); do
		if [ "$stream" = true ]; then grep -q '"text"' "$tmp/cut" && break
		else [ "$(stat_of generated_tokens)" -gt "$gen_before" ] && break; fi
		sleep 0.005
	done
	during=$(stat_of active_requests)
	kill -9 $victim 2>/dev/null
	wait $victim 2>/dev/null
	freed=""
	for i in $(seq 20); do
		if [ "$(stat_of active_requests)" = 0 ] && [ "$(stat_of kv_blocks_used)" = "$before" ]; then freed=$((i * 50)); break; fi
		sleep 0.05
	done
	generated=$(($(stat_of generated_tokens) - gen_before))
	if [ "${during:-0}" -ge 1 ] && [ -n "$freed" ] && [ "$generated" -lt 1000 ]; then
		ok "$name (within ${freed} ms, $generated of 1000 tokens)"
	else
		bad "$name" "active during: $during; freed: ${freed:-no}; generated $generated; $(head -c 300 "$tmp/cut")"
	fi
}
disconnect curl-disconnect-stream-cancels true
disconnect curl-disconnect-waiting-cancels false

# ---- slow clients are cut off at the request deadline (2 s here); everyone else is served meanwhile
node "$here/slow-client.cjs" "$sock" headers 8 >"$tmp/slow1" &
s1=$!
node "$here/slow-client.cjs" "$sock" body 8 >"$tmp/slow2" &
s2=$!
sleep 0.5
out=$(U $url/v1/completions -d "$body" | json 'o.choices[0].text')
if [ "$out" = "$expected" ]; then ok "served-during-slowloris"; else bad "served-during-slowloris" "'$out'"; fi
wait $s1 $s2
for f in slow1 slow2; do
	ms=$(sed -n 's/^closed after \([0-9]*\) ms/\1/p' "$tmp/$f")
	if [ -n "$ms" ] && [ "$ms" -ge 1500 ] && [ "$ms" -le 4500 ]; then ok "slowloris-cut-$f ($ms ms)"; else bad "slowloris-cut-$f" "$(cat "$tmp/$f")"; fi
done

# ---- two users' gateways against one npud: neither reaches the other's socket, key or requests
if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
	echo "# skip two-users: needs root and setpriv"
else
	as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
	install -m 0755 "$gateway" "$tmp/npud-http"
	mkdir -m 0700 "$tmp/nobody" && chown 65534:65534 "$tmp/nobody"
	setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/npud-http" --bus "$addr" --listen "unix:$tmp/nobody/http.sock" --listen 127.0.0.1:0 \
		--api-key-file "$tmp/nobody/key" >"$tmp/nobody.log" 2>&1 &
	gw_pids+=($!)
	for i in $(seq 100); do grep -q "listening on 127" "$tmp/nobody.log" && break; sleep 0.05; done
	nport=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/nobody.log")
	if as_nobody curl -sS --max-time 5 --unix-socket "$sock" $url/v1/models >"$tmp/out" 2>&1; then
		bad "other-user-cannot-use-socket" "nobody got: $(head -c 200 "$tmp/out")"
	else
		ok "other-user-cannot-use-socket"
	fi
	if as_nobody cat "$tmp/gw.key" >/dev/null 2>&1; then bad "other-user-cannot-read-key" "readable"; else ok "other-user-cannot-read-key"; fi
	code=$(as_nobody curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" http://127.0.0.1:$nport/v1/models)
	if [ "$code" = 401 ]; then ok "keys-differ-per-user"; else bad "keys-differ-per-user" "root's key on nobody's gateway: $code"; fi
	# at the same time, different prompts: each stream is its own, as when alone
	p2="The little dog"
	alone2=$(as_nobody curl -sS --unix-socket "$tmp/nobody/http.sock" $url/v1/completions \
		-d '{"model":"'$model_name'","prompt":"'"$p2"'","max_tokens":60,"temperature":0}' | json 'o.choices[0].text')
	streams=()
	for i in 1 2 3; do
		U -N $url/v1/completions -d "$sbody" >"$tmp/u1.$i" &
		streams+=($!)
		as_nobody curl -sS -N --unix-socket "$tmp/nobody/http.sock" $url/v1/completions \
			-d '{"model":"'$model_name'","prompt":"'"$p2"'","max_tokens":60,"temperature":0,"stream":true}' >"$tmp/u2.$i" &
		streams+=($!)
	done
	wait "${streams[@]}"
	mixed=""
	for i in 1 2 3; do
		t1=$(grep '^data: {' "$tmp/u1.$i" | sed 's/^data: //' | node -e "let t=''; for (const l of require('fs').readFileSync(0,'utf8').split('\n')) if (l) for (const c of JSON.parse(l).choices) t += c.text; process.stdout.write(t)")
		t2=$(grep '^data: {' "$tmp/u2.$i" | sed 's/^data: //' | node -e "let t=''; for (const l of require('fs').readFileSync(0,'utf8').split('\n')) if (l) for (const c of JSON.parse(l).choices) t += c.text; process.stdout.write(t)")
		[ "$t1" = "$expected" ] || mixed="$mixed root $i: '$t1';"
		[ "$t2" = "$alone2" ] || mixed="$mixed nobody $i: '$t2';"
	done
	if [ -z "$mixed" ] && [ -n "$alone2" ]; then ok "two-users-streams-apart"; else bad "two-users-streams-apart" "$mixed (alone: '$alone2')"; fi
fi

# ---- idle exit: a gateway without connections leaves after --idle-timeout
"$gateway" --bus "$addr" --listen "unix:$tmp/idle.sock" --idle-timeout 1 >"$tmp/idle.log" 2>&1 &
idle=$!
for i in $(seq 60); do kill -0 $idle 2>/dev/null || break; sleep 0.1; done
if ! kill -0 $idle 2>/dev/null && wait $idle && [ ! -e "$tmp/idle.sock" ]; then
	ok "idle-exit"
else
	kill $idle 2>/dev/null
	bad "idle-exit" "still running after 6 s, or exited non-zero: $(cat "$tmp/idle.log")"
fi

# ---- npud gone: 503, and the gateway itself stays up
kill "$npud_pid"
wait "$npud_pid" 2>/dev/null
npud_pid=""
E "npud-down-503" 503 '"type":"server_error"' $url/v1/completions -d "$body"
E "npud-down-503-models" 503 "npud" $url/v1/models
if kill -0 "$gw_pid" 2>/dev/null; then ok "gateway-survived"; else bad "gateway-survived" "$(tail -5 "$tmp/gw.log")"; fi

# ---- the bus itself gone: 503; a new bus and npud at the same address: served again, same gateway
kill "$bus_pid"
wait "$bus_pid" 2>/dev/null
bus_pid=""
E "bus-down-503" 503 '"type":"server_error"' $url/v1/completions -d "$body"
rm -f "$tmp/bus"
dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile >>"$tmp/bus.log" 2>&1 &
bus_pid=$!
for i in $(seq 100); do [ -S "$tmp/bus" ] && break; sleep 0.05; done
chmod 0777 "$tmp/bus"
"$npud" --bus "$addr" --model "$model" --config "$tmp/npud.conf" >>"$tmp/npud.log" 2>&1 &
npud_pid=$!
for i in $(seq 300); do "$npuctl" --bus "$addr" status >/dev/null 2>&1 && break; sleep 0.1; done
got=$(U $url/v1/completions -d "$body" | json 'o.choices[0].text')
if [ "$got" = "$expected" ]; then ok "reconnects-to-new-bus"; else bad "reconnects-to-new-bus" "'$got' $(tail -3 "$tmp/gw.log")"; fi

# ---- it stops cleanly; nothing from the sanitizers
kill "$gw_pid"
wait "$gw_pid"
rc=$?
if [ $rc -ne 0 ]; then
	bad "gateway-clean-exit" "SIGTERM: exit $rc; $(tail -5 "$tmp/gw.log")"
elif grep -q "runtime error\|ERROR: AddressSanitizer\|ERROR: LeakSanitizer" "$tmp/gw.log" "$tmp"/nobody.log 2>/dev/null; then
	bad "gateway-clean-exit" "the sanitizers reported errors: $(grep -A5 -m1 'runtime error\|ERROR:' "$tmp/gw.log" "$tmp"/nobody.log)"
else
	ok "gateway-clean-exit"
fi
if [ -e "$sock" ]; then bad "socket-removed-at-exit" "$sock is still there"; else ok "socket-removed-at-exit"; fi

if [ "$failed" -gt 0 ]; then
	echo "--- npud-http's log (last 30 lines)"
	tail -30 "$tmp/gw.log"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
