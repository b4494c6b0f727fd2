#!/bin/bash
# SPDX-License-Identifier: MIT
# Service integration tests: npud on a private D-Bus bus, driven by npuctl,
# busctl and npud-probe (what one connection must do that busctl cannot).
#   tests/service/run-tests.sh BUILD_DIR SHARED_DIR
# Prints "ok NAME" or "FAIL NAME: why" per check; exits 0 only when all pass
# (77, meson's skip, when the model or dbus-daemon is missing).
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=checks.sh
. "$here/checks.sh"
checks_start "$@"
npu_run=$build/daemon/tools/npu-run
need_built "$npud" "$npuctl" "$probe" "$npu_run"
need_file "$model"
# shellcheck source=lib.sh
. "$here/lib.sh"

ctl() { "$npuctl" --bus "$addr" "$@"; }
run() { timeout 60 "$probe" "$addr" run "$@" 2>&1; }
stat_of() { "$probe" "$addr" stats | sed -n "s/^$1=//p"; }
# a raw call, arguments as busctl takes them; the error's name goes to stderr
call() { "$probe" "$addr" call "$@"; }
gen_call() { call /org/npud/Inference1 org.npud.Inference1.Manager Generate "$@"; }

# expect NAME EXIT ERROR CMD...: CMD exits with EXIT and its stderr names ERROR
expect() {
	local name=$1 want_rc=$2 want_err=$3 rc
	shift 3
	"$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ -n "$want_rc" ] && [ "$rc" != "$want_rc" ]; then
		bad "$name" "exit $rc, expected $want_rc; stderr: $(head -c 300 "$tmp/err")"
	elif [ -n "$want_err" ] && ! grep -q -- "$want_err" "$tmp/err"; then
		bad "$name" "expected $want_err; stderr: $(head -c 300 "$tmp/err")"
	else
		ok "$name"
	fi
}

# the daemon still serves: a normal generate works
still_serving() {
	local out
	if ! kill -0 "$npud_pid" 2>/dev/null; then
		bad "$1" "npud is gone: $(tail -5 "$tmp/npud.log")"
		return
	fi
	out=$(ctl generate -q --temp 0 --max-tokens 8 "Once upon a time" 2>"$tmp/err")
	if [ $? -ne 0 ] || [ -z "$out" ]; then
		bad "$1" "a normal generate failed: $(head -c 300 "$tmp/err")"
	else
		ok "$1"
	fi
}

# wait_for FILE PATTERN SECONDS
wait_for() {
	local i
	for i in $(seq $(($3 * 20))); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# Text of about N tokens (between N and N+20), counted by the model's own tokenizer.
text_of_tokens() {
	local unit="the cat sat on the mat and looked at the big red ball " n per text=""
	per=$("$npu_run" -m "$model" --tokenize "$unit$unit" | wc -w)
	per=$(((per - 1) / 2))
	for n in $(seq $(($1 / per))); do text="$text$unit"; done
	echo "$text"
}

NPUD_N_CTX=1024
NPUD_MAX_QUEUED_TOKENS=768
NPUD_MAX_REQUESTS_PER_CLIENT=4
service_start || exit 1
prompt="Once upon a time"

# ---- the client itself
expect "exit-usage" 2 "" ctl generate --max-tokens 1x "$prompt"
expect "exit-usage-empty-prompt" 2 "empty" ctl generate ""
expect "exit-no-bus" 3 "" "$npuctl" --bus "unix:path=$tmp/nonexistent" status

if out=$(ctl status 2>&1) && echo "$out" | grep -q "KV cache"; then ok "status"; else bad "status" "$out"; fi
if out=$(ctl models 2>&1) && echo "$out" | grep -q "aidreams260K-f32"; then ok "models"; else bad "models" "$out"; fi
if out=$(ctl devices 2>&1) && echo "$out" | grep -q "cpu"; then ok "devices"; else bad "devices" "$out"; fi
if out=$(ctl status --json 2>&1) && echo "$out" | grep -q '"kv_blocks_total"'; then
	ok "status-json"
else
	bad "status-json" "$out"
fi

# ---- 1. greedy through the service equals the offline runner
expected=$("$npu_run" -m "$model" -p "$prompt" -n 60 --temp 0 --no-display-prompt 2>/dev/null)
got=$(ctl generate --temp 0 --max-tokens 60 "$prompt" 2>"$tmp/err")
rc=$?
if [ $rc -ne 0 ]; then
	bad "greedy-equals-npu-run" "exit $rc: $(head -c 300 "$tmp/err")"
elif [ "$got" != "$expected" ]; then
	bad "greedy-equals-npu-run" "npuctl: '$got' npu-run: '$expected'"
else
	ok "greedy-equals-npu-run"
fi
if grep -q "^generation: .* stop: " "$tmp/err"; then ok "timings-on-stderr"; else bad "timings-on-stderr" "$(cat "$tmp/err")"; fi
json=$(ctl generate --temp 0 --max-tokens 60 --json "$prompt" 2>&1)
if echo "$json" | grep -q '"tokens":\[[0-9]' && echo "$json" | grep -q '"stop_reason":"\(eos\|length\)"'; then
	ok "generate-json"
else
	bad "generate-json" "$json"
fi
got=$(echo "$prompt" | ctl generate -q --temp 0 --max-tokens 60 -)
if [ "$got" = "$expected" ]; then ok "prompt-from-stdin"; else bad "prompt-from-stdin" "'$got'"; fi

# ---- 2. eight clients at once, each as when alone (greedy, then seeded sampling)
prompts=("Once upon a time" "The little dog" "Lily and Ben" "One day, a girl" "The sun was" "Tom had a big"
	"In the park" "A bird flew")
concurrent() {
	local name=$1 i pids=() diff=""
	shift
	for i in "${!prompts[@]}"; do
		ctl generate -q --max-tokens 60 "$@" --seed $((42 + i)) "${prompts[$i]}" >"$tmp/alone.$i" 2>&1 ||
			diff="$diff alone $i failed: $(head -c 200 "$tmp/alone.$i");"
	done
	for i in "${!prompts[@]}"; do
		ctl generate -q --max-tokens 60 "$@" --seed $((42 + i)) "${prompts[$i]}" >"$tmp/conc.$i" 2>&1 &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || diff="$diff client $i exit $?: $(head -c 200 "$tmp/conc.$i");"
	done
	for i in "${!prompts[@]}"; do
		cmp -s "$tmp/alone.$i" "$tmp/conc.$i" ||
			diff="$diff client $i: '$(head -c 120 "$tmp/conc.$i")' alone: '$(head -c 120 "$tmp/alone.$i")';"
	done
	if [ -z "$diff" ]; then ok "$name"; else bad "$name" "$diff"; fi
}
concurrent "concurrent-8-greedy" --temp 0
concurrent "concurrent-8-seeded" --temp 0.8

# ---- 3. a client killed mid-generation: its KV blocks and its request go at once
# The victim reads nothing once its request streams, so the request is held
# (streaming backpressure) and still running when it is killed, however fast
# or slow the host.
"$probe" "$addr" run "gen kv 12 8" "wait kv 30" >/dev/null 2>&1 # the prompt's prefix is cached from here on
used_before=$(stat_of kv_blocks_used)
"$probe" "$addr" run "gen victim 12 1000 kv" "first victim 30" "stall 60000" >"$tmp/killed" 2>&1 &
victim=$!
for i in $(seq 600); do
	grep -q "first victim" "$tmp/killed" && break
	sleep 0.05
done
active=$(stat_of active_requests)
used_during=$(stat_of kv_blocks_used)
kill -9 $victim 2>/dev/null
wait $victim 2>/dev/null
if [ "${active:-0}" -lt 1 ]; then
	bad "kill-9-frees-kv" "the request was not running when killed (active_requests $active; too fast?)"
else
	freed=""
	for i in $(seq 40); do
		used=$(stat_of kv_blocks_used)
		act=$(stat_of active_requests)
		if [ "$used" = "$used_before" ] && [ "$act" = 0 ]; then
			freed=$i
			break
		fi
		sleep 0.05
	done
	if [ -n "$freed" ]; then
		ok "kill-9-frees-kv"
	else
		bad "kill-9-frees-kv" "after 2 s kv_blocks_used $used (before $used_before, during $used_during), active_requests $act"
	fi
fi

# ---- 4. bad input: each its named error, and the daemon keeps serving
E=org.npud.Inference1.Error
expect "empty-prompt" "" "$E.InvalidArgument" gen_call 'sva{sv}' '' s '' 0
long=$(yes "the cat sat on the mat and looked at the big red ball" | head -c 20000 | tr '\n' ' ')
expect "prompt-over-context" 1 "$E.PromptTooLong" ctl generate "$long"
# a 16 MB prompt is refused by its length in bytes before any work: at once,
# and without the memory tokenizing it took (npud's peak RSS grows by about
# the message itself)
hwm_before=$(awk '/VmHWM/ {print $2}' /proc/"$npud_pid"/status)
out=$("$probe" "$addr" big-prompt 16777216 2>&1)
hwm_after=$(awk '/VmHWM/ {print $2}' /proc/"$npud_pid"/status)
if echo "$out" | grep -q "^$E.PromptTooLong .*bytes" && [ $((hwm_after - hwm_before)) -lt 98304 ]; then
	ok "huge-prompt-refused-by-bytes (peak RSS +$(((hwm_after - hwm_before) / 1024)) MB)"
else
	bad "huge-prompt-refused-by-bytes" "$out; peak RSS $((hwm_before / 1024)) -> $((hwm_after / 1024)) MB"
fi
still_serving "serving-after-huge-prompt"
expect "invalid-utf8-bytes" "" "$E.InvalidUTF8" gen_call 'sva{sv}' '' ay 3 255 254 65 0
expect "invalid-utf8-from-stdin" 1 "$E.InvalidUTF8" sh -c "printf 'ab\\377\\376' | '$npuctl' --bus '$addr' generate -"
# fits the context (1024) but not the per-client queued prompt tokens (768): LimitExceeded, exit 5
mid=$(text_of_tokens 900)
expect "queued-tokens-limit" 5 "$E.LimitExceeded" ctl generate --max-tokens 4 "$mid"
expect "unknown-model" 1 "$E.NoSuchModel" ctl generate --model no-such-model "$prompt"
expect "max-tokens-negative" "" "$E.InvalidArgument" gen_call 'sva{sv}' '' s "$prompt" 1 max_tokens i -1
expect "max-tokens-absurd" 1 "$E.InvalidArgument" ctl generate --max-tokens 1000000000 "$prompt"
expect "temperature-negative" "" "$E.InvalidArgument" gen_call 'sva{sv}' '' s "$prompt" 1 temperature d -1
expect "top-p-2" "" "$E.InvalidArgument" gen_call 'sva{sv}' '' s "$prompt" 1 top_p d 2
expect "option-wrong-type" "" "$E.InvalidArgument" gen_call 'sva{sv}' '' s "$prompt" 1 max_tokens s x
expect "option-unknown" "" "$E.InvalidArgument" gen_call 'sva{sv}' '' s "$prompt" 1 no_such_option b true
expect "prompt-wrong-type" "" "$E.InvalidArgument" gen_call 'sva{sv}' '' u 5 0
expect "token-id-out-of-range" "" "$E.InvalidArgument" gen_call 'sva{sv}' '' ai 2 1 100000000 0
# devices: only accel nodes of npu.ko are taken, by name, and nothing is lost on a bad one
mgr_call() { call /org/npud/Inference1 org.npud.Inference1.Manager "$@"; }
expect "attach-not-a-char-device" "" "$E.InvalidArgument" mgr_call AttachDevice 'sha{sv}' accel0 "$tmp" 0
expect "attach-wrong-node" "" "$E.InvalidArgument" mgr_call AttachDevice 'sha{sv}' accel0 /dev/null 0
expect "attach-bad-name" "" "$E.InvalidArgument" mgr_call AttachDevice 'sha{sv}' ../accel0 /dev/null 0
expect "attach-unknown-option" "" "$E.InvalidArgument" mgr_call AttachDevice 'sha{sv}' accel0 /dev/null 1 x s y
expect "detach-unknown-device" "" "$E.NoSuchDevice" mgr_call DetachDevice 'sa{sv}' accel7 0
out=$(ctl devices --json 2>&1)
if echo "$out" | grep -q '"state": *"ready"' && ! echo "$out" | grep -q accel; then
	ok "devices-cpu-only"
else
	bad "devices-cpu-only" "$out"
fi
still_serving "serving-after-bad-input"

# another client's request: Cancel and property reads are AccessDenied (with
# max_finished_kept = 0 the finished request is gone at once: UnknownObject)
other_denied="$E.AccessDenied"
gone=""
if [ "${NPUD_MAX_FINISHED_KEPT:-64}" = 0 ]; then
	other_denied="org.freedesktop.DBus.Error.UnknownObject"
	gone=$other_denied
fi
"$probe" "$addr" hold 4 "$prompt" >"$tmp/hold" 2>&1 &
holder=$!
if wait_for "$tmp/hold" "^finished" 10; then
	path=$(head -1 "$tmp/hold")
	expect "cancel-other-clients-request" "" "$other_denied" call "$path" org.npud.Inference1.Request Cancel
	expect "property-of-other-clients-request" "" "$other_denied" \
		call "$path" org.freedesktop.DBus.Properties Get ss org.npud.Inference1.Request State
else
	bad "cancel-other-clients-request" "the holder did not get a request: $(cat "$tmp/hold")"
	path=""
fi

# Cancel twice: the second is Cancelled (or Finished, if it ended in between)
"$probe" "$addr" cancel-twice 900 "$prompt" >"$tmp/cancel" 2>&1
# (with max_finished_kept = 0 the request may be gone by the second: UnknownObject)
if grep -q "^cancel1 ok" "$tmp/cancel" &&
	grep -q "^cancel2 \($E\.Cancelled\|$E\.Finished\|${gone:-$E.Finished}\)" "$tmp/cancel" &&
	grep -q "^reason cancelled" "$tmp/cancel"; then
	ok "cancel-twice"
else
	bad "cancel-twice" "$(tr '\n' ' ' <"$tmp/cancel")"
fi

# a flood beyond the limits is refused while another client is served: one
# connection sends 30 requests at once (4 are taken, the rest refused), and
# seven more keep the model busy; a short request is served meanwhile, while
# the flood is still running (checked after it was served). The flooders
# read nothing for 15 s once answered, so their requests are held that long
# (streaming backpressure) however fast the host generates.
"$probe" "$addr" flood 30 900 "$prompt" 15000 >"$tmp/flood" 2>&1 &
flooders=$!
for i in 1 2 3 4 5 6 7; do
	"$probe" "$addr" flood 4 900 "$prompt" 15000 >"$tmp/flood.$i" 2>&1 &
	flooders="$flooders $!"
done
if ! wait_for "$tmp/flood" "^replied" 20; then
	bad "flood-refused" "no replies: $(tr '\n' ' ' <"$tmp/flood")"
else
	if grep -q "^error $E\.\(LimitExceeded\|Busy\)" "$tmp/flood"; then
		ok "flood-refused"
	else
		bad "flood-refused" "$(sort "$tmp/flood" | uniq -c | tr '\n' ' ')"
	fi
	if grep -v "^error $E\.\(LimitExceeded\|Busy\)" "$tmp/flood" | grep -q "^error"; then
		bad "flood-errors-named" "$(grep '^error' "$tmp/flood" | sort | uniq -c | tr '\n' ' ')"
	fi
	# within 12 s: while the flooders still read nothing
	out=$(timeout 12 "$npuctl" --bus "$addr" generate -q --temp 0 --max-tokens 20 "$prompt" 2>&1)
	rc=$?
	running=$(stat_of active_requests)
	if [ $rc -eq 124 ]; then
		bad "served-during-flood" "not served within 12 s, while the flood's requests were held"
	elif [ $rc -ne 0 ] || [ -z "$out" ]; then
		bad "served-during-flood" "exit $rc: $out"
	elif [ "${running:-0}" -lt 1 ]; then
		bad "served-during-flood" "the flood was over before the request was served (active after: $running)"
	else
		ok "served-during-flood"
	fi
fi
# shellcheck disable=SC2086
kill $flooders 2>/dev/null
# shellcheck disable=SC2086
wait $flooders 2>/dev/null
still_serving "serving-after-flood"

# ---- SIGINT cancels and waits for Finished; exit 130
"$npuctl" --bus "$addr" generate --temp 0 --ignore-eos --max-tokens 1000 "$prompt" >"$tmp/sigint" \
	2>"$tmp/sigint.err" &
victim=$!
for i in $(seq 200); do
	[ -s "$tmp/sigint" ] && break
	sleep 0.01
done
kill -INT $victim
wait $victim
rc=$?
if [ $rc -eq 130 ] && grep -q "stop: cancelled" "$tmp/sigint.err"; then
	ok "sigint-cancels"
else
	bad "sigint-cancels" "exit $rc: $(head -c 300 "$tmp/sigint.err")"
fi

# ---- chat: a session, /reset, end of input. After /reset a reply is that of
# the prompt alone; without it, the second turn continues the history.
gen1=$(ctl generate -q --temp 0 --max-tokens 10 "Once upon a time")
gen2=$(ctl generate -q --temp 0 --max-tokens 10 "The little dog")
out=$(printf 'Once upon a time\n/reset\nThe little dog\n' | ctl chat --temp 0 --max-tokens 10 2>"$tmp/err")
rc=$?
if [ $rc -eq 0 ] && [ -n "$gen1" ] && [ "$out" = "$gen1
$gen2" ]; then
	ok "chat-reset"
else
	bad "chat-reset" "exit $rc: '$out', alone: '$gen1' '$gen2'; $(head -c 200 "$tmp/err")"
fi
out=$(printf 'Once upon a time\nThe little dog\n' | ctl chat --temp 0 --max-tokens 10 2>"$tmp/err")
rc=$?
if [ $rc -eq 0 ] && [ "$(echo "$out" | head -1)" = "$gen1" ] && [ "$(echo "$out" | sed -n 2p)" != "$gen2" ]; then
	ok "chat-history"
else
	bad "chat-history" "exit $rc: '$out' (the second reply should differ from '$gen2')"
fi

# ---- sessions: Reset forgets the history; another connection cannot use a session
out=$(run "session s" "send s 20 8 p1" "wait s 10" "prop s ContextTokens" "prop s Turns" "print s" "reset s" \
	"prop s ContextTokens" "prop s Turns" "send s 20 8 p1" "wait s 10" "print s" "gen g 20 8 p1" "wait g 10" "print g")
first=$(echo "$out" | sed -n 's/^text s //p' | head -1)
again=$(echo "$out" | sed -n 's/^text s //p' | sed -n 2p)
alone=$(echo "$out" | sed -n 's/^text g //p')
if echo "$out" | grep -q "^prop s ContextTokens 28" && echo "$out" | grep -q "^prop s ContextTokens 0" &&
	echo "$out" | grep -q "^prop s Turns 0" && [ -n "$first" ] && [ "$first" = "$again" ] && [ "$again" = "$alone" ]; then
	ok "session-reset"
else
	bad "session-reset" "$(echo "$out" | tr '\n' ';')"
fi
"$probe" "$addr" run "session s" "send s 10 4" "wait s 10" "path s" "sleep 10000" >"$tmp/owner" 2>&1 &
owner=$!
if wait_for "$tmp/owner" "^path s " 10; then
	spath=$(sed -n 's/^path s //p' "$tmp/owner")
	S=org.npud.Inference1.Session
	expect "session-send-other-client" "" "$E.AccessDenied" call "$spath" $S Send 'va{sv}' s hello 0
	expect "session-reset-other-client" "" "$E.AccessDenied" call "$spath" $S Reset
	expect "session-close-other-client" "" "$E.AccessDenied" call "$spath" $S Close
	expect "session-property-other-client" "" "$E.AccessDenied" \
		call "$spath" org.freedesktop.DBus.Properties Get ss $S Turns
else
	bad "session-other-client" "no session: $(cat "$tmp/owner")"
fi
kill $owner 2>/dev/null
wait $owner 2>/dev/null

# ---- stop strings: the text ends before the first occurrence, reason "stop"
full=$(ctl generate -q --temp 0 --ignore-eos --max-tokens 40 "$prompt")
stop=$(printf %s "$full" | head -c 16 | tail -c 4)
want=${full%%"$stop"*}
got=$(ctl generate --temp 0 --ignore-eos --max-tokens 40 --stop "$stop" "$prompt" 2>"$tmp/err")
if [ ${#stop} -eq 4 ] && [ "$got" = "$want" ] && grep -q "stop: stop" "$tmp/err"; then
	ok "stop-string"
else
	bad "stop-string" "stop '$stop': got '$got', want '$want'; $(tail -1 "$tmp/err")"
fi

# ---- a connection receives only its own requests' signals
"$probe" "$addr" run "sleep 3000" >"$tmp/listener" 2>&1 &
listener=$!
sleep 0.3
ctl generate -q --temp 0 --max-tokens 20 "$prompt" >/dev/null 2>&1
wait $listener
if grep -q "^stray" "$tmp/listener"; then
	bad "no-signals-for-others" "$(head -3 "$tmp/listener" | tr '\n' ';')"
else
	ok "no-signals-for-others"
fi

# ---- two models at once; UnloadModel needs force while one is in use
cp "$model" "$tmp/second.gguf"
if out=$(ctl load "$tmp/second.gguf" --name second 2>&1) && ctl models | grep -q second; then
	ok "load-second-model"
else
	bad "load-second-model" "$out"
fi
a_alone=$(ctl generate -q --temp 0 --max-tokens 30 "$prompt")
b_alone=$(ctl generate -q --temp 0 --max-tokens 30 -m second "The little dog")
ctl generate -q --temp 0 --max-tokens 30 "$prompt" >"$tmp/a" 2>&1 &
a_pid=$!
b=$(ctl generate -q --temp 0 --max-tokens 30 -m second "The little dog" 2>&1)
wait $a_pid
if [ -n "$a_alone" ] && [ "$(cat "$tmp/a")" = "$a_alone" ] && [ "$b" = "$b_alone" ]; then
	ok "two-models-at-once"
else
	bad "two-models-at-once" "a '$(cat "$tmp/a")' alone '$a_alone'; b '$b' alone '$b_alone'"
fi
# (the connection then reads nothing for 3 s: its requests are held, so they
# surely still run when the model goes)
"$probe" "$addr" run "model second" "session keep" "gen u1 10 900" "gen u2 10 900" "gen u3 10 900" \
	"path keep" "stall 3000" "wait u1 20" "wait u2 20" "wait u3 20" >"$tmp/unload" 2>&1 &
unloader=$!
wait_for "$tmp/unload" "^path keep" 10
expect "unload-in-use-busy" 5 "$E.Busy" ctl unload second
expect "unload-force" 0 "" ctl unload second --force
wait $unloader
if [ "$(grep -c "^finished u[0-9] unloaded" "$tmp/unload")" = 3 ] && ! ctl models | grep -q second; then
	ok "unload-force-finishes-requests"
else
	bad "unload-force-finishes-requests" "$(tr '\n' ';' <"$tmp/unload")"
fi
still_serving "serving-after-unload"

# ---- SIGHUP reloads npud.conf in the same process; a bad file changes nothing
cp "$tmp/npud.conf" "$tmp/npud.conf.orig"
sed -i 's/^max_requests_per_client = .*/max_requests_per_client = 1/' "$tmp/npud.conf"
kill -HUP "$npud_pid"
wait_for "$tmp/npud.log" "reloaded" 10
# long requests: the first must still be running when the others arrive
"$probe" "$addr" flood 3 500 "$prompt" >"$tmp/hup" 2>&1
if grep -q "^accepted 1$" "$tmp/hup" && kill -0 "$npud_pid"; then
	ok "sighup-reload"
else
	bad "sighup-reload" "$(tr '\n' ';' <"$tmp/hup")"
fi
echo "no_such_key = 1" >>"$tmp/npud.conf"
kill -HUP "$npud_pid"
wait_for "$tmp/npud.log" "keeping the old configuration" 10
# long requests: the first must still be running when the others arrive
"$probe" "$addr" flood 3 500 "$prompt" >"$tmp/hup" 2>&1
if grep -q "^accepted 1$" "$tmp/hup" && grep -q "unknown key 'no_such_key'" "$tmp/npud.log"; then
	ok "sighup-bad-config-kept"
else
	bad "sighup-bad-config-kept" "$(tr '\n' ';' <"$tmp/hup")"
fi
cp "$tmp/npud.conf.orig" "$tmp/npud.conf"
kill -HUP "$npud_pid"
sleep 0.3

# ---- bench: exact prompt lengths through "ai", and the concurrency run
out=$(ctl bench --task benchmark --prompt-lengths 4,8,16 --new-tokens 8 2>&1)
rc=$?
rows=$(echo "$out" | awk -F'|' '$2 ~ /^ +[0-9]+ +$/ {gsub(/ /, "", $3); printf "%s,", $3}')
if [ $rc -eq 0 ] && [ "$rows" = "4,8,16," ]; then ok "bench-table"; else bad "bench-table" "exit $rc, lengths '$rows': $out"; fi
out=$(ctl bench --clients 1,2 --new-tokens 8 --prompt-lengths 8 2>&1)
rc=$?
if [ $rc -eq 0 ] && echo "$out" | grep -q "time to first token"; then ok "bench-clients"; else bad "bench-clients" "exit $rc: $out"; fi

# ---- 5. another uid: its own work yes, root's request and administration no
if [ "$(id -u)" -ne 0 ]; then
	echo "skip access checks: not root"
elif ! command -v setpriv >/dev/null; then
	bad "access-checks" "running as root without setpriv (util-linux): the checks as another uid cannot run"
else
	install -m 0755 "$npuctl" "$tmp/npuctl"
	install -m 0755 "$probe" "$tmp/npud-probe"
	as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
	expect "nobody-generates" 0 "" as_nobody "$tmp/npuctl" --bus "$addr" generate -q --max-tokens 4 "$prompt"
	if [ -n "$path" ]; then
		expect "nobody-cannot-cancel-roots-request" "" "$other_denied" \
			as_nobody "$tmp/npud-probe" "$addr" call "$path" org.npud.Inference1.Request Cancel
		expect "nobody-cannot-read-roots-request" "" "$other_denied" \
			as_nobody "$tmp/npud-probe" "$addr" call "$path" org.freedesktop.DBus.Properties Get ss \
			org.npud.Inference1.Request State
	fi
	# the prefix cache shares only within a uid: root's prompt gives nobody no
	# cache hit (a right guess of root's secret is no faster than a wrong one),
	# and nobody's GetStats counts only nobody's own work
	cached_of() { grep -o '"cached_prompt_tokens":[0-9]*' | cut -d: -f2; }
	secret="The admin password for the payroll server is hunter2 and the backup key is in the blue binder"
	ctl generate -q --max-tokens 1 "$secret" >/dev/null 2>&1
	root_again=$(ctl generate --json --max-tokens 1 "$secret" 2>/dev/null | cached_of)
	right=$(as_nobody "$tmp/npuctl" --bus "$addr" generate --json --max-tokens 1 "$secret" 2>/dev/null | cached_of)
	wrong=$(as_nobody "$tmp/npuctl" --bus "$addr" generate --json --max-tokens 1 "${secret/hunter2/letmein}" \
		2>/dev/null | cached_of)
	if [ "${root_again:-0}" -ge 48 ] && [ "$right" = 0 ] && [ -n "$wrong" ] && [ "$wrong" -lt 48 ]; then
		ok "prefix-cache-per-uid"
	else
		bad "prefix-cache-per-uid" "root again: $root_again; nobody, right guess: $right, then wrong: $wrong"
	fi
	as_nobody "$tmp/npud-probe" "$addr" stats >"$tmp/nobody-stats" 2>&1
	if grep -q "^scope=uid" "$tmp/nobody-stats" && grep -q "^cached_prompt_tokens=$wrong$" "$tmp/nobody-stats" &&
		grep -q "^clients=0$" "$tmp/nobody-stats" && grep -q "^kv_blocks_used=0$" "$tmp/nobody-stats" &&
		! grep -q "^steps=\|^tokens_per_s=" "$tmp/nobody-stats"; then
		ok "stats-own-uid-only"
	else
		bad "stats-own-uid-only" "$(tr '\n' ' ' <"$tmp/nobody-stats")"
	fi
	if stat_of scope | grep -qx server && [ "$(stat_of cached_prompt_tokens)" -ge "$((root_again + wrong))" ]; then
		ok "stats-root-whole-server"
	else
		bad "stats-root-whole-server" "$("$probe" "$addr" stats | tr '\n' ' ')"
	fi
	expect "nobody-cannot-load" 4 "AccessDenied" as_nobody "$tmp/npuctl" --bus "$addr" load "$model" --name other
	expect "nobody-cannot-unload" 4 "AccessDenied" as_nobody "$tmp/npuctl" --bus "$addr" unload aidreams260K-f32
	expect "nobody-cannot-attach" "" "$E.AccessDenied" \
		as_nobody "$tmp/npud-probe" "$addr" call /org/npud/Inference1 org.npud.Inference1.Manager \
		AttachDevice 'sha{sv}' accel0 /dev/null 0

	# one uid floods with 40 connections of 8 requests (320 requests, most
	# refused): root's request is served while the flood still runs. The
	# flooders read nothing for 15 s once answered, so the requests they got
	# are held that long (streaming backpressure) however fast the host
	# generates. (The admission rules themselves, per-uid limits over
	# connections and a full queue that takes a new uid, are checked exactly
	# in fairness.sh.)
	flooders=""
	for i in $(seq 40); do
		as_nobody "$tmp/npud-probe" "$addr" flood 8 900 "$prompt" 15000 >"$tmp/uidflood.$i" 2>&1 &
		flooders="$flooders $!"
	done
	for i in $(seq 200); do
		[ "$(grep -l "^replied" "$tmp"/uidflood.* 2>/dev/null | wc -l)" -ge 40 ] && break
		sleep 0.05
	done
	# within 10 s: while the flooders still read nothing
	out=$(timeout 10 "$npuctl" --bus "$addr" generate --json --temp 0 --max-tokens 20 "$prompt" 2>&1)
	rc=$?
	running=$(stat_of active_requests)
	if [ $rc -eq 124 ]; then
		bad "served-during-uid-flood" "not served within 10 s, while the flood's requests were held"
	elif [ $rc -ne 0 ] || ! echo "$out" | grep -q '"stop_reason"'; then
		bad "served-during-uid-flood" "exit $rc: $(echo "$out" | head -c 300)"
	elif [ "${running:-0}" -lt 1 ]; then
		bad "served-during-uid-flood" "the flood was over before the request was served (active after: $running)"
	else
		ok "served-during-uid-flood"
	fi
	# shellcheck disable=SC2086
	kill $flooders 2>/dev/null
	# shellcheck disable=SC2086
	wait $flooders 2>/dev/null
fi
kill $holder 2>/dev/null
wait $holder 2>/dev/null

# ---- the daemon gone: exit 3; it stopped cleanly, nothing reported by the sanitizers
kill "$npud_pid"
wait "$npud_pid"
rc=$?
npud_pid=""
expect "exit-no-daemon" 3 "" ctl status
if [ $rc -ne 0 ]; then
	bad "npud-clean-exit" "SIGTERM: exit $rc"
elif grep -q "runtime error\|ERROR: AddressSanitizer\|ERROR: LeakSanitizer" "$tmp/npud.log"; then
	bad "npud-clean-exit" "the sanitizers reported errors (the log follows)"
else
	ok "npud-clean-exit"
fi

if [ "$failed" -gt 0 ]; then
	echo "--- npud's log (last 40 lines)"
	tail -40 "$tmp/npud.log"
fi
checks_summary
[ "$failed" -eq 0 ]
