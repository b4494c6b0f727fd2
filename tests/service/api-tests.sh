#!/bin/bash
# SPDX-License-Identifier: MIT
# The D-Bus API of issue 17, on npud on a private bus (lib.sh): the sampling
# options clients send (min_p, presence and frequency penalties, logprobs),
# Finished with the whole reply, change signals, model objects and the
# object manager, keep-alive and idle unload, load progress, npuctl ps, and
# the introspection XML against what npud serves.
#   tests/service/api-tests.sh BUILD_DIR SHARED_DIR
# Prints "ok NAME" or "FAIL NAME: why" per check and "N passed, N failed";
# exits 0 only when all pass (77, meson's skip, when the model or
# dbus-daemon is missing).
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
# shellcheck source=checks.sh
. "$here/checks.sh"
checks_start "$@"
npud_probe=$probe
probe=$build/tests/service/api-probe
npu_run=$build/daemon/tools/npu-run
name=aidreams260K-f32
need_built "$npud" "$npuctl" "$probe" "$npud_probe" "$npu_run"
need_file "$model"
# shellcheck source=lib.sh
. "$here/lib.sh"

ctl() { "$npuctl" --bus "$addr" "$@"; }
P() { "$probe" "$addr" "$@"; }
E=org.npud.Inference1.Error

# two requests run at once, the others queue: ActiveRequests and QueuedRequests differ
npud_conf_extra="max_active = 2"
service_start || exit 1
prompt="Once upon a time"
model_path=/org/npud/Inference1/model/aidreams260K_2df32
# wait_for FILE PATTERN SECONDS
wait_for() {
	local i
	for i in $(seq $(($3 * 20))); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# ---- Finished carries the whole reply: the Tokens' pieces joined, their ids
P generate "" "$prompt" max_tokens u 40 temperature d 0 >"$tmp/gen" 2>&1
pieces=$(sed -n 's/^tokens //p' "$tmp/gen" | grep -o ':"\([^"\\]\|\\.\)*"' | sed 's/^:"//; s/"$//' | tr -d '\n')
ids=$(sed -n 's/^tokens //p' "$tmp/gen" | grep -o '[0-9]*:"' | tr -d ':"' | paste -sd, -)
text=$(sed -n 's/^stat text="\(.*\)"$/\1/p' "$tmp/gen")
tokens=$(sed -n 's/^stat tokens=\[\(.*\)\]$/\1/p' "$tmp/gen")
want=$(ctl generate -q --temp 0 --max-tokens 40 "$prompt")
if [ -n "$ids" ] && [ "$text" = "$pieces" ] && [ "$tokens" = "$ids" ] && [ "$text" = "$want" ]; then
	ok "finished-has-text-and-tokens"
else
	bad "finished-has-text-and-tokens" "text '$text' pieces '$pieces' npuctl '$want'; tokens [$tokens] ids [$ids]"
fi
if grep -q '^logprobs\|^stat logprobs' "$tmp/gen"; then
	bad "no-logprobs-unless-asked" "$(grep -m1 logprobs "$tmp/gen")"
else
	ok "no-logprobs-unless-asked"
fi

# ---- logprobs: a Logprobs signal before each Tokens, the same tokens in order, N alternatives
# each, most likely first; greedy picks the first; Finished's logprobs are the signals' joined
P generate "" "$prompt" max_tokens u 20 temperature d 0 logprobs u 3 >"$tmp/lp" 2>&1
check=$(awk '
	function entries(s, out,   n, rest, m) {
		# (ID,<HEX>,LP,[(ID,<HEX>,LP)...]) at the top level of a list
		n = 0; rest = s
		while (match(rest, /\(([0-9]+),<[0-9a-f]*>,[-0-9.e+inf]+,\[[^]]*\]\)/)) {
			out[++n] = substr(rest, RSTART, RLENGTH)
			rest = substr(rest, RSTART + RLENGTH)
		}
		return n
	}
	/^logprobs / { pending = $0; sub(/^logprobs /, "", pending); signals = signals pending; next }
	/^tokens / {
		if (pending == "") { err = err " tokens without logprobs before;" ; next }
		n = entries(pending, e); t = 0; rest = $0
		while (match(rest, /[0-9]+:"([^"\\]|\\.)*"/)) {
			tok = substr(rest, RSTART, RLENGTH); sub(/:.*/, "", tok); tk[++t] = tok
			rest = substr(rest, RSTART + RLENGTH)
		}
		if (n != t) err = err " " n " logprobs for " t " tokens;"
		for (i = 1; i <= n; i++) {
			split(substr(e[i], 2), f, ",")
			if (f[1] != tk[i]) err = err " id " f[1] " vs token " tk[i] ";"
			lp = f[3] + 0
			if (lp > 0) err = err " logprob " lp " > 0;"
			top = e[i]; sub(/^[^[]*\[/, "", top)
			k = 0; prev = 1; first = ""
			while (match(top, /\(([0-9]+),<[0-9a-f]*>,[-0-9.e+inf]+\)/)) {
				split(substr(top, RSTART + 1, RLENGTH - 2), g, ",")
				if (k == 0) first = g[1]
				if (g[3] + 0 > prev + 1e-6) err = err " top not sorted;"
				prev = g[3] + 0; k++
				top = substr(top, RSTART + RLENGTH)
			}
			if (k != 3) err = err " " k " alternatives;"
			if (first != f[1]) err = err " greedy chose " f[1] ", the most likely is " first ";"
			count++
		}
		pending = ""
		next
	}
	/^stat logprobs=/ { fin = $0; sub(/^stat logprobs=\[/, "", fin); sub(/\]$/, "", fin) }
	END {
		gsub(/^\[|\]$/, "", signals); gsub(/\]\[/, ",", signals)
		if (fin != signals) err = err " Finished logprobs differ from the signals;"
		print count " " err
	}' "$tmp/lp")
if [ "${check%% *}" -ge 2 ] && [ -z "${check#* }" ]; then
	ok "logprobs-signals (${check%% *} tokens)"
else
	bad "logprobs-signals" "$check; $(head -c 400 "$tmp/lp")"
fi

# ---- min_p 1 keeps only the most likely token: sampling at any temperature is greedy then
greedy=$(P generate "" "$prompt" max_tokens u 30 temperature d 0 | sed -n 's/^stat text=//p')
hot=$(P generate "" "$prompt" max_tokens u 30 temperature d 1.5 seed t 3 | sed -n 's/^stat text=//p')
minp=$(P generate "" "$prompt" max_tokens u 30 temperature d 1.5 seed t 3 min_p d 1 | sed -n 's/^stat text=//p')
if [ -n "$greedy" ] && [ "$minp" = "$greedy" ] && [ "$hot" != "$greedy" ]; then
	ok "min-p-1-is-greedy"
else
	bad "min-p-1-is-greedy" "greedy $greedy; min_p 1: $minp; without min_p: $hot"
fi

# ---- the penalties shift the logits of the tokens seen (the prompt's, here): with logprobs of the
# first generated token, lp(a) - lp(b) moves by exactly the penalty difference of a and b
ids=$("$npu_run" -m "$model" --tokenize "Once upon a time there was a little girl. The little girl" | tr ' ' ',')
first_token() { # OPTIONS...: the first generated token's alternatives as "ID LP" lines
	P generate "" "ids:$ids" max_tokens u 1 temperature d 0 logprobs u 20 "$@" |
		sed -n 's/^logprobs //p' | grep -o '([0-9]*,<[0-9a-f]*>,[-0-9.e+inf]*)' | tr -d '()' |
		awk -F, '{ print $1, $3 }' | sort -u
}
first_token >"$tmp/lp0"
penalty_check() { # NAME PRESENCE FREQUENCY
	local name=$1 pres=$2 freq=$3 res
	first_token presence_penalty d "$pres" frequency_penalty d "$freq" >"$tmp/lp1"
	res=$(echo "$ids" | tr ',' '\n' | awk -v pres="$pres" -v freq="$freq" -v a="$tmp/lp0" -v b="$tmp/lp1" '
		{ count[$1]++ }
		END {
			while ((getline l < a) > 0) { split(l, f, " "); A[f[1]] = f[2] }
			while ((getline l < b) > 0) { split(l, f, " "); if (f[1] in A) B[f[1]] = f[2] }
			ref = ""
			for (t in B) if (!(t in count)) { ref = t; break }
			if (ref == "") { print "no alternative outside the prompt"; exit }
			seen = 0; worst = 0
			for (t in B) {
				pen = (t in count) ? pres + freq * count[t] : 0
				d = (B[t] - B[ref]) - (A[t] - A[ref]) + pen
				if (d < 0) d = -d
				if (d > worst) worst = d
				seen += (t in count)
			}
			if (seen == 0) print "no alternative from the prompt"
			else if (worst > 1e-3) print "off by " worst
			else print "ok " seen
		}')
	if [ "${res%% *}" = ok ]; then ok "$name (${res#ok } prompt tokens among the alternatives)"; else bad "$name" "$res"; fi
}
# (negative penalties: the prompt's tokens rise and stay among the 20 most likely)
penalty_check "presence-penalty-shifts-logits" -1.5 0
penalty_check "frequency-penalty-shifts-logits" 0 -0.75
penalty_check "both-penalties-shift-logits" 0.25 -0.5

# ---- bad values of the new options: InvalidArgument, named
opt_error() { # NAME KEY TYPE VALUE
	local out
	out=$(P generate "" "$prompt" max_tokens u 4 "$2" "$3" "$4" 2>&1)
	if echo "$out" | grep -q "^error $E.InvalidArgument: .*'$2'"; then ok "$1"; else bad "$1" "$out"; fi
}
opt_error "min-p-above-1" min_p d 1.5
opt_error "min-p-negative" min_p d -0.1
opt_error "presence-penalty-out-of-range" presence_penalty d 2.5
opt_error "frequency-penalty-out-of-range" frequency_penalty d -3
opt_error "frequency-penalty-wrong-type" frequency_penalty s x
opt_error "logprobs-above-20" logprobs u 21
opt_error "logprobs-negative" logprobs i -1
opt_error "logprobs-wrong-type" logprobs d 2

# ---- models as objects under the object manager, their path escaped (sd_bus_path_encode)
P objects >"$tmp/objects" 2>&1
now_us=$(($(date +%s) * 1000000))
loaded=$(sed -n '/^object .*Model$/,/^object/s/^  LoadedAt=//p' "$tmp/objects")
if grep -q "^object $model_path org.npud.Inference1.Model" "$tmp/objects" &&
	grep -q '^  Name="aidreams260K-f32"$' "$tmp/objects" && grep -q '^  Architecture="llama"$' "$tmp/objects" &&
	grep -q '^  Precision="float"$' "$tmp/objects" && grep -q '^  ContextLength=1024$' "$tmp/objects" &&
	grep -q '^  Parameters=[1-9]' "$tmp/objects" && grep -q '^  Backend="cpu"$' "$tmp/objects" &&
	[ -n "$loaded" ] && [ "$loaded" -le "$now_us" ] && [ "$loaded" -gt $((now_us - 600000000)) ] &&
	[ "$(sed -n 's/^  Size=//p' "$tmp/objects")" = $(($(sed -n 's/^  WeightBytes=//p' "$tmp/objects") +
		$(sed -n 's/^  KVCacheBytes=//p' "$tmp/objects"))) ] && grep -q '^  Size=[1-9]' "$tmp/objects" &&
	grep -q '^  LastUsed=[1-9]' "$tmp/objects"; then
	ok "object-manager-lists-models"
else
	bad "object-manager-lists-models" "$(tr '\n' ';' <"$tmp/objects" | head -c 600)"
fi
# ---- change signals: a connection that read only Version hears the broadcast ones (a model
# loaded: InterfacesAdded, KVCacheBlocksTotal; made the default: DefaultModel), and a reader of
# the per-caller counters hears those too, addressed to it
P watch 120 Version >"$tmp/w-version" 2>&1 &
w1=$!
P watch 120 >"$tmp/w-all" 2>&1 &
w2=$!
wait_for "$tmp/w-version" "^ready" 5
wait_for "$tmp/w-all" "^ready" 5
cp "$model" "$tmp/second.gguf"
ctl load "$tmp/second.gguf" --name second.model-x --default >"$tmp/load.out" 2>&1
second_path=/org/npud/Inference1/model/second_2emodel_2dx
sleep 0.3
# four long requests (on the new default): two run (max_active 2), two wait
"$npud_probe" "$addr" flood 4 1000 "$prompt" >"$tmp/flood" 2>&1 &
flood=$!
for i in $(seq 100); do
	queued=$(P get /org/npud/Inference1 org.npud.Inference1.Manager QueuedRequests)
	active=$(P get /org/npud/Inference1 org.npud.Inference1.Manager ActiveRequests)
	[ "$queued" = 2 ] && break
	sleep 0.02
done
wait $flood
sleep 0.2 # changes are gathered for 50 ms: idle shows before the model goes
ctl unload second.model-x >>"$tmp/load.out" 2>&1
sleep 0.3
kill $w1 $w2
wait $w1 $w2 2>/dev/null
if grep -q "^added $second_path org.npud.Inference1.Model" "$tmp/w-version" &&
	grep -q "^removed $second_path org.npud.Inference1.Model" "$tmp/w-version" &&
	grep -q '^changed /org/npud/Inference1 org.npud.Inference1.Manager .*DefaultModel="second.model-x"' "$tmp/w-version" &&
	grep -q '^changed /org/npud/Inference1 org.npud.Inference1.Manager .*KVCacheBlocksTotal=' "$tmp/w-version"; then
	ok "broadcast-changes (load, default, unload)"
else
	bad "broadcast-changes" "$(tr '\n' ';' <"$tmp/w-version") $(cat "$tmp/load.out")"
fi
if grep -q "ActiveRequests\|QueuedRequests\|KVCacheBlocksUsed" "$tmp/w-version"; then
	bad "per-caller-changes-only-to-readers" "$(grep -m1 'ActiveRequests\|QueuedRequests\|KVCacheBlocksUsed' "$tmp/w-version")"
else
	ok "per-caller-changes-only-to-readers"
fi
# The changes are gathered for 50 ms: the two queued requests show as
# QueuedRequests=2, or, where they were admitted within one gathering (the
# two running ones paused as their reader lagged), as more than max_active
# active (paused requests count as active)
mgr="^changed /org/npud/Inference1 org.npud.Inference1.Manager"
if grep -q "$mgr .*ActiveRequests=[1-9].* (unicast)" "$tmp/w-all" &&
	grep -q -e "$mgr .*QueuedRequests=2.* (unicast)" -e "$mgr .*ActiveRequests=[34].* (unicast)" "$tmp/w-all" &&
	grep -q "$mgr .*KVCacheBlocksUsed=[1-9].* (unicast)" "$tmp/w-all" &&
	grep -q "$mgr .*ActiveRequests=0" "$tmp/w-all"; then
	ok "per-caller-changes-to-the-reader"
else
	bad "per-caller-changes-to-the-reader" "$(grep Manager "$tmp/w-all" | tr '\n' ';')"
fi
if [ "$active" = 2 ] && [ "$queued" = 2 ]; then
	ok "active-requests-only-active (2 active, 2 queued)"
else
	bad "active-requests-only-active" "ActiveRequests $active, QueuedRequests $queued with max_active 2 and 4 requests"
fi
if grep -q "^changed $second_path org.npud.Inference1.Model State=\"busy\"" "$tmp/w-all" &&
	grep -q "^changed $second_path org.npud.Inference1.Model State=\"idle\"" "$tmp/w-all"; then
	ok "model-state-changes"
else
	bad "model-state-changes" "$(grep "$second_path" "$tmp/w-all" | tr '\n' ';')"
fi
if grep -q "/request/\|/session/" "$tmp/w-all" "$tmp/w-version"; then
	bad "no-request-changes-for-others" "$(grep -h -m1 '/request/\|/session/' "$tmp/w-all" "$tmp/w-version")"
else
	ok "no-request-changes-for-others"
fi
ctl load "$model" --default >/dev/null 2>&1 # the default again

# ---- a request's own changes go to its owner alone
P generate "" "$prompt" max_tokens u 12 temperature d 0 >"$tmp/own" 2>&1
if grep -q '^changed /org/npud/Inference1/request/[0-9]* org.npud.Inference1.Request .*State="finished".*GeneratedTokens=12.*StopReason="length" (unicast)' "$tmp/own"; then
	ok "request-changes-to-owner"
else
	bad "request-changes-to-owner" "$(grep -v '^stat' "$tmp/own" | tr '\n' ';')"
fi

# ---- keep-alive (Ollama's semantics): models_dir, idle_unload_sec and max_loaded_models, set by a reload
mkdir -p "$tmp/models"
cp "$model" "$tmp/models/tiny.gguf"
cp "$model" "$tmp/models/tiny2.gguf"
cp "$model" "$tmp/outside.gguf"
printf 'models_dir = %s\nidle_unload_sec = 2\nmax_loaded_models = 2\n' "$tmp/models" >>"$tmp/npud.conf"
kill -HUP "$npud_pid"
wait_for "$tmp/npud.log" "reloaded" 10
loaded() { ctl models --json | grep -o '"name": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/' | sort | tr '\n' ' '; }
gone_within() { # NAME SECONDS: the model leaves within SECONDS; prints the time it took (ms)
	local i
	for i in $(seq $(($2 * 20))); do
		if ! loaded | grep -qw -- "$1"; then echo $((i * 50)); return 0; fi
		sleep 0.05
	done
	return 1
}
out=$(ctl generate -q -m tiny --temp 0 --max-tokens 8 "$prompt" 2>&1)
if [ -n "$out" ] && loaded | grep -qw tiny &&
	[ "$(P get /org/npud/Inference1/model/tiny org.npud.Inference1.Model Pinned)" = false ]; then
	ok "load-on-demand"
else
	bad "load-on-demand" "$out; loaded: $(loaded)"
fi
expect_error() { # NAME ERROR CMD...
	local name=$1 want=$2 out
	shift 2
	out=$("$@" 2>&1)
	if echo "$out" | grep -q -- "$want"; then ok "$name"; else bad "$name" "$out"; fi
}
expect_error "on-demand-only-from-models-dir" "$E.NoSuchModel" ctl generate -m outside "$prompt"
expect_error "on-demand-no-path-escape" "$E.NoSuchModel" P generate "../outside" "$prompt"
expect_error "on-demand-unknown-name" "has no such model" ctl generate -m no-such "$prompt"
# idle_unload_sec (2 s here) unloads it once idle; the Model object said when
expires=$(P get /org/npud/Inference1/model/tiny org.npud.Inference1.Model ExpiresAt)
last=$(P get /org/npud/Inference1/model/tiny org.npud.Inference1.Model LastUsed)
if ms=$(gone_within tiny 6) && [ "${expires:-0}" -gt 0 ] && [ $((expires - last)) -ge 1900000 ] &&
	[ $((expires - last)) -le 2100000 ]; then
	ok "idle-unload-sec ($ms ms; ExpiresAt - LastUsed = $(((expires - last) / 1000)) ms)"
else
	bad "idle-unload-sec" "loaded: $(loaded); ExpiresAt $expires LastUsed $last"
fi
# an on-demand load runs off the event loop, one load for all the calls that wait for it: three
# Generate calls of a 256 MiB file (long enough to read), then on the same connection, so npud
# reads it after them, the Get of the Model's State: answered while the file is read ("loading"),
# and the three requests are served after one load (each to its 4 tokens, or to an end of text
# its sampling drew: CI once saw "finished 3 eos")
cp "$model" "$tmp/models/slow.gguf"
truncate -s $((256 << 20)) "$tmp/models/slow.gguf"
before=$(grep -c "loading 'slow' on demand" "$tmp/npud.log")
P demand slow 3 "$prompt" >"$tmp/demand" 2>&1
after=$(grep -c "loading 'slow' on demand" "$tmp/npud.log")
if grep -q '^state loading ' "$tmp/demand" && [ "$(grep -cE '^finished [1-3] (length|eos)$' "$tmp/demand")" = 3 ] &&
	[ $((after - before)) = 1 ]; then
	ok "on-demand-load-off-the-loop (State answered in $(sed -n 's/^state loading //p' "$tmp/demand") ms, 3 calls, 1 load)"
else
	bad "on-demand-load-off-the-loop" "$((after - before)) loads; $(tr '\n' ';' <"$tmp/demand")"
fi
ctl load slow --keep-alive 0 >/dev/null 2>&1
gone_within slow 5 >/dev/null || bad "on-demand-slow-unloaded" "loaded: $(loaded)"
rm -f "$tmp/models/slow.gguf"
# a name with '-' and '.': its object's path escaped by sd_bus_path_encode
cp "$model" "$tmp/models/tiny-2.1.gguf"
out=$(ctl load tiny-2.1 --keep-alive 30 2>&1)
got=$(P get /org/npud/Inference1/model/tiny_2d2_2e1 org.npud.Inference1.Model Name 2>&1)
if [ "$out" = tiny-2.1 ] && [ "$got" = '"tiny-2.1"' ] && P objects | grep -q '^object /org/npud/Inference1/model/tiny_2d2_2e1 '; then
	ok "model-path-escaped"
else
	bad "model-path-escaped" "$out; $got"
fi
ctl load tiny-2.1 --keep-alive 0 >/dev/null 2>&1
gone_within tiny-2.1 5 >/dev/null || bad "model-path-escaped-unloaded" "loaded: $(loaded)"
rm -f "$tmp/models/tiny-2.1.gguf"
# a file of models_dir that is loaded already under another name: that name is the answer
ln -s "$model" "$tmp/models/alias.gguf"
expect_error "on-demand-file-loaded-as-another-name" "is loaded as '$name'" ctl generate -m alias "$prompt"
rm -f "$tmp/models/alias.gguf"

# a request's keep_alive: 0 unloads it as soon as it is idle, -1 keeps it for ever (ExpiresAt 0)
ctl generate -q -m tiny --keep-alive 0 --max-tokens 4 "$prompt" >/dev/null 2>&1
if ms=$(gone_within tiny 3); then ok "keep-alive-0 ($ms ms)"; else bad "keep-alive-0" "loaded: $(loaded)"; fi
ctl generate -q -m tiny --keep-alive -1 --max-tokens 4 "$prompt" >/dev/null 2>&1
sleep 2.5
if loaded | grep -qw tiny && [ "$(P get /org/npud/Inference1/model/tiny org.npud.Inference1.Model ExpiresAt)" = 0 ]; then
	ok "keep-alive-forever"
else
	bad "keep-alive-forever" "loaded: $(loaded)"
fi
# npuctl ps: size, back end, idle time and when each goes
ps1=$(ctl ps 2>&1)
ctl load tiny --keep-alive 30 >/dev/null 2>&1
ps2=$(ctl ps 2>&1)
if echo "$ps1" | grep -q "^tiny  *65.0 MiB  cpu  *1024  idle  *[0-9]* s  *never (kept for ever)$" &&
	echo "$ps1" | grep -q "^$name  *65.0 MiB  cpu .* pinned (until unloaded)$" &&
	echo "$ps2" | grep -q "^tiny .* idle  *[0-9]* s  *in [23][0-9] s$"; then
	ok "ps-idle-and-until"
else
	bad "ps-idle-and-until" "$ps1 / $ps2"
fi
# the same uid's last word sets its claim (as in Ollama): 0 now lets it go
ctl load tiny --keep-alive 0 >/dev/null 2>&1
if ms=$(gone_within tiny 3); then ok "last-request-sets-the-claim ($ms ms)"; else bad "last-request-sets-the-claim" "loaded: $(loaded)"; fi
# a model in use stays past its keep-alive and goes when its request ends
# (held for 5 s after its first tokens, however fast the host generates)
API_PROBE_STALL_MS=5000 P generate tiny "$prompt" max_tokens u 1000 ignore_eos b true keep_alive d 0 >"$tmp/busy" 2>&1 &
busy=$!
wait_for "$tmp/busy" "^tokens" 10
ps_busy=$(ctl ps 2>&1)
if loaded | grep -qw tiny && ! grep -q "^finished" "$tmp/busy" &&
	echo "$ps_busy" | grep -q "^tiny .* busy  *-  *in use, then its keep-alive$"; then
	ok "busy-model-stays"
else
	bad "busy-model-stays" "loaded: $(loaded); $(grep -c '^tokens' "$tmp/busy") tokens signals, $(grep '^finished' "$tmp/busy")"
fi
wait $busy
if grep -q "^finished length" "$tmp/busy" && ms=$(gone_within tiny 3); then
	ok "busy-model-goes-after ($ms ms)"
else
	bad "busy-model-goes-after" "$(grep -v '^stat\|^tokens' "$tmp/busy" | head -3); loaded: $(loaded)"
fi
# pinned: the configured model stays, whatever the requests say
ctl generate -q --keep-alive 0 --max-tokens 4 "$prompt" >/dev/null 2>&1
sleep 2.5
if loaded | grep -qw "$name" && [ "$(P get "$model_path" org.npud.Inference1.Model Pinned)" = true ]; then
	ok "pinned-model-stays"
else
	bad "pinned-model-stays" "loaded: $(loaded)"
fi
# max_loaded_models (2): loading another unloads the least recently used idle one, or is Busy
ctl load tiny --keep-alive -1 >/dev/null 2>&1
P watch 120 Version >"$tmp/w-evict" 2>&1 &
watcher=$!
wait_for "$tmp/w-evict" "^ready" 5
out=$(ctl load tiny2 --keep-alive -1 2>&1)
sleep 0.3
kill $watcher
wait $watcher 2>/dev/null
if [ "$out" = tiny2 ] && [ "$(loaded)" = "$name tiny2 " ] &&
	grep -q "^removed /org/npud/Inference1/model/tiny org.npud.Inference1.Model" "$tmp/w-evict" &&
	grep -q "^added /org/npud/Inference1/model/tiny2 org.npud.Inference1.Model" "$tmp/w-evict"; then
	ok "max-loaded-models-evicts-idle"
else
	bad "max-loaded-models-evicts-idle" "$out; loaded: $(loaded); $(tr '\n' ';' <"$tmp/w-evict")"
fi
P generate tiny2 "$prompt" max_tokens u 1000 ignore_eos b true >"$tmp/busy2" 2>&1 &
busy=$!
wait_for "$tmp/busy2" "^tokens" 10
expect_error "max-loaded-models-busy" "$E.Busy" ctl generate -m tiny "$prompt"
wait $busy
expect_error "keep-alive-wrong-type" "$E.InvalidArgument: .*'keep_alive'" P generate "" "$prompt" keep_alive s 5m
expect_error "load-by-name-no-default-option" "$E.InvalidArgument" \
	"$npud_probe" "$addr" call /org/npud/Inference1 org.npud.Inference1.Manager LoadModel 'sa{sv}' tiny 1 default b true
ctl load tiny2 --keep-alive 0 >/dev/null 2>&1

# ---- LoadModel's progress: the Model object is there while the file is read (State "loading",
# BytesTotal), BytesLoaded grows to it; npuctl load draws a bar on a terminal only. A 256 MiB
# file (the small model and a sparse tail the loader reads too) takes long enough to be seen.
big_bytes=$((256 << 20))
cp "$model" "$tmp/models/big.gguf"
truncate -s $big_bytes "$tmp/models/big.gguf"
cp --sparse=always "$tmp/models/big.gguf" "$tmp/models/big2.gguf"
API_PROBE_WATCH_MS=1 P watch 120 Version >"$tmp/w-load" 2>&1 &
watcher=$!
wait_for "$tmp/w-load" "^ready" 5
t0=$(date +%s%N)
ctl load big --keep-alive 1 >"$tmp/load-big" 2>&1 &
loader=$!
# npuctl ps meanwhile shows it loading
: >"$tmp/ps-during"
while kill -0 $loader 2>/dev/null; do ctl ps >>"$tmp/ps-during" 2>&1; sleep 0.1; done
wait $loader
load_ms=$((($(date +%s%N) - t0) / 1000000))
out=$(cat "$tmp/load-big")
sleep 0.3
kill $watcher
wait $watcher 2>/dev/null
big_path=/org/npud/Inference1/model/big
seq_ok=$(awk -v path="$big_path" -v total=$big_bytes '
	function at() { return substr($NF, 2) + 0 }
	$1 == "added" && $2 == path { added = ($0 ~ /State="loading"/); t0 = at() }
	($1 == "changed" || $1 == "added") && $2 == path && match($0, /BytesLoaded=[0-9]+/) {
		v = substr($0, RSTART + 12, RLENGTH - 12) + 0
		if (v < last) down = 1
		if (v > 0 && v < total) mid++
		if (v == total && !t1) t1 = at()
		last = v
	}
	END { print (added ? "added" : "not-added"), mid + 0, last, (t1 && t0 ? t1 - t0 : -1), (down ? "decreasing" : "") }' "$tmp/w-load")
steps=$(echo "$seq_ok" | awk '{print $2}')
reading_ms=$(echo "$seq_ok" | awk '{print $4}')
# progress is told every 200 ms: reading that took under 400 ms (from the
# object's appearance to BytesLoaded reaching the total, as the watcher saw
# them) may end before a report, and then the steps between are not required
if [ "$out" = big ] && [ "${seq_ok%% *}" = added ] && ! echo "$seq_ok" | grep -q decreasing &&
	[ "$reading_ms" -ge 0 ] && { [ "$steps" -ge 1 ] || [ "$reading_ms" -lt 400 ]; } &&
	[ "$(echo "$seq_ok" | awk '{print $3}')" = $big_bytes ]; then
	ok "load-progress-signals ($steps steps between 0 and all in $reading_ms ms of reading, $load_ms ms in all)"
else
	bad "load-progress-signals" "$out; $seq_ok in $load_ms ms; $(grep "$big_path" "$tmp/w-load" | cut -c1-160 | tr '\n' ';')"
fi
if grep -q "^big  *256.0 MiB .* loading [0-9]*% " "$tmp/ps-during" || [ "$load_ms" -lt 400 ]; then
	ok "ps-shows-loading ($(grep -c '^big .* loading' "$tmp/ps-during") times)"
else
	bad "ps-shows-loading" "$(grep '^big' "$tmp/ps-during" | head -3 | tr '\n' ';') ($load_ms ms)"
fi
if command -v script >/dev/null; then
	script -qec "$npuctl --bus $addr load big2 --keep-alive 0" /dev/null >"$tmp/tty" 2>&1
	if grep -q "loading big2 \[#" "$tmp/tty" && grep -q "100%" "$tmp/tty" && tail -1 "$tmp/tty" | grep -q "^big2"; then
		ok "load-progress-bar-on-a-terminal"
	else
		bad "load-progress-bar-on-a-terminal" "$(tr '\r' '\n' <"$tmp/tty" | tail -3)"
	fi
	# a model that loads before npud's first change signal still ends with a full bar
	script -qec "$npuctl --bus $addr load tiny2 --keep-alive 0" /dev/null >"$tmp/tty-quick" 2>&1
	if grep -q "loading tiny2 \[#*\] .* 100%" "$tmp/tty-quick" && tail -1 "$tmp/tty-quick" | grep -q "^tiny2"; then
		ok "load-progress-bar-quick-load"
	else
		bad "load-progress-bar-quick-load" "$(tr '\r' '\n' <"$tmp/tty-quick" | tail -3)"
	fi
else
	echo "# skip load-progress-bar-on-a-terminal: no script(1)"
fi
out=$(ctl load big2 --keep-alive 0 2>&1)
if [ "$out" = big2 ]; then ok "no-progress-bar-off-a-terminal"; else bad "no-progress-bar-off-a-terminal" "$out"; fi
rm -f "$tmp/models/big.gguf" "$tmp/models/big2.gguf"

# ---- docs/api.md: every busctl example runs against npud as written (the system bus replaced by
# this one, /var/lib/npud/models by models_dir), except those that need the connection that made
# a request or session ("# same connection"), a device, or a terminal (monitor)
awk '/^```sh$/ { code = 1; next } /^```$/ { code = 0; next }
	code && /^busctl/ { line = $0; while (line ~ /\\$/ && (getline next_line) > 0) { sub(/\\$/, "", line); line = line next_line } print line }' \
	"$src/docs/api.md" >"$tmp/doc-commands"
doc_failed=""
doc_ran=0
while IFS= read -r cmd; do
	case "$cmd" in
	*"# same connection"* | *" monitor "* | *accel0*) continue ;;
	esac
	cmd=${cmd//--system/--address=$addr}
	cmd=${cmd//\/var\/lib\/npud\/models/$tmp/models}
	if ! eval "$cmd" >"$tmp/doc-out" 2>&1; then
		if [ "$(id -u)" -ne 0 ] && grep -q "AccessDenied\|needs an administrator" "$tmp/doc-out"; then
			continue
		fi
		doc_failed="$doc_failed [$cmd]: $(head -c 200 "$tmp/doc-out");"
	fi
	doc_ran=$((doc_ran + 1))
done <"$tmp/doc-commands"
if [ -z "$doc_failed" ] && [ "$doc_ran" -ge 12 ]; then
	ok "docs-api-examples-run ($doc_ran commands)"
else
	bad "docs-api-examples-run" "$doc_ran ran; $doc_failed"
fi
if grep -q "# same connection" "$tmp/doc-commands" && [ "$(grep -c '^busctl' "$tmp/doc-commands")" -ge 20 ]; then
	ok "docs-api-examples-found ($(grep -c '^busctl' "$tmp/doc-commands"))"
else
	bad "docs-api-examples-found" "$(wc -l <"$tmp/doc-commands") commands extracted"
fi
# every method of the XML has its example
missing=""
for method in $(grep -o '<method name="[A-Za-z]*"' "$src/daemon/npud/org.npud.Inference1.xml" | sed 's/.*"\(.*\)"/\1/'); do
	grep -q " $method\( \|$\)" "$tmp/doc-commands" || missing="$missing $method"
done
if [ -z "$missing" ]; then ok "docs-api-every-method"; else bad "docs-api-every-method" "no example for:$missing"; fi

# ---- another uid: loads models_dir's models by name without being an administrator, cannot
# shorten a model another uid keeps, and hears only its own counters
if [ "$(id -u)" -ne 0 ]; then
	echo "# skip the checks as another uid: not root"
elif ! command -v setpriv >/dev/null; then
	bad "other-uid-checks" "running as root without setpriv (util-linux): the checks as another uid cannot run"
else
	install -m 0755 "$npuctl" "$tmp/npuctl"
	install -m 0755 "$probe" "$tmp/api-probe"
	as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
	expect_error "nobody-loads-by-name" "^tiny$" as_nobody "$tmp/npuctl" --bus "$addr" load tiny --keep-alive 30
	expect_error "nobody-cannot-load-a-path" "AccessDenied" as_nobody "$tmp/npuctl" --bus "$addr" load "$tmp/models/tiny.gguf"
	ctl load tiny --keep-alive 60 >/dev/null 2>&1
	as_nobody "$tmp/npuctl" --bus "$addr" load tiny --keep-alive 0 >/dev/null 2>&1
	sleep 0.5
	if loaded | grep -qw tiny; then ok "keep-alive-claims-per-uid"; else bad "keep-alive-claims-per-uid" "nobody's keep_alive 0 unloaded root's model"; fi
	ctl load tiny --keep-alive 0 >/dev/null 2>&1
	if ms=$(gone_within tiny 3); then ok "last-claim-released ($ms ms)"; else bad "last-claim-released" "loaded: $(loaded)"; fi
	as_nobody "$tmp/api-probe" "$addr" watch 120 >"$tmp/w-nobody" 2>&1 &
	wn=$!
	wait_for "$tmp/w-nobody" "^ready" 5
	"$npud_probe" "$addr" flood 3 300 "$prompt" >/dev/null 2>&1
	sleep 0.3
	kill $wn
	wait $wn 2>/dev/null
	if grep -q "^ready" "$tmp/w-nobody" && ! grep -q "ActiveRequests\|QueuedRequests\|KVCacheBlocksUsed" "$tmp/w-nobody"; then
		ok "other-uids-counters-not-told"
	else
		bad "other-uids-counters-not-told" "$(tr '\n' ';' <"$tmp/w-nobody")"
	fi
fi

# ---- a session's changes go to its owner: Turns, ContextTokens, State, and Messages (invalidated)
P session "" chatml "Hello" "Once upon a time" >"$tmp/session" 2>&1
if grep -q '^changed /org/npud/Inference1/session/[0-9]* org.npud.Inference1.Session .*Turns=1 .*invalidated Messages (unicast)$' "$tmp/session" &&
	grep -q '^changed /org/npud/Inference1/session/[0-9]* org.npud.Inference1.Session .*Turns=2 .*invalidated Messages (unicast)$' "$tmp/session" &&
	[ "$(grep -c '^finished' "$tmp/session")" = 2 ]; then
	ok "session-changes-to-owner"
else
	bad "session-changes-to-owner" "$(tr '\n' ';' <"$tmp/session")"
fi

# ---- the introspection XML in the repository is what npud serves
# the members of IFACE in introspection XML (stdin): "IFACE KIND NAME in:TYPES out:TYPES" for
# methods and signals, "IFACE property NAME TYPE EMITS" (EmitsChangedSignal, default true)
members() {
	awk -v want="$1" '
		function attr(a,   v) { if (!match($0, a "=\"[^\"]*\"")) return ""; v = substr($0, RSTART + length(a) + 2, RLENGTH - length(a) - 3); return v }
		function flush() { if (member != "") print want, kind, member, "in:" ins, "out:" outs; member = "" }
		function flushp() { if (prop != "") print want, "property", prop, ptype, emits; prop = "" }
		/<interface / { cur = attr("name"); next }
		/<\/interface>/ { cur = ""; next }
		cur != want { next }
		/<(method|signal) / { flush(); kind = ($0 ~ /<method/) ? "method" : "signal"; member = attr("name"); ins = ""; outs = ""
			if ($0 ~ /\/>/) flush(); next }
		/<arg / { if (attr("direction") == "out") outs = outs attr("type"); else ins = ins attr("type"); next }
		/<\/(method|signal)>/ { flush(); next }
		/<property / { prop = attr("name"); ptype = attr("type"); emits = "true"; if ($0 ~ /\/>/) flushp(); next }
		/<annotation / && prop != "" && attr("name") == "org.freedesktop.DBus.Property.EmitsChangedSignal" { emits = attr("value"); next }
		/<\/property>/ { flushp(); next }
		END { flush(); flushp() }' | sort
}
"$npud_probe" "$addr" hold 4 "$prompt" >"$tmp/hold" 2>&1 &
holder=$!
"$npud_probe" "$addr" run "session s" "path s" "sleep 20000" >"$tmp/session-holder" 2>&1 &
session_holder=$!
wait_for "$tmp/hold" "^finished" 10
wait_for "$tmp/session-holder" "^path s " 10
interfaces_to_check=("/org/npud/Inference1 org.npud.Inference1.Manager" "$model_path org.npud.Inference1.Model"
	"$(head -1 "$tmp/hold") org.npud.Inference1.Request"
	"$(sed -n 's/^path s //p' "$tmp/session-holder") org.npud.Inference1.Session")
xml_diff=""
for pair in "${interfaces_to_check[@]}"; do
	read -r opath iface <<<"$pair"
	busctl --address="$addr" introspect --xml-interface org.npud.Inference1 "$opath" 2>/dev/null |
		members "$iface" >"$tmp/got"
	members "$iface" <"$src/daemon/npud/org.npud.Inference1.xml" >"$tmp/want"
	[ -s "$tmp/got" ] || xml_diff="$xml_diff nothing introspected for $iface;"
	diff "$tmp/got" "$tmp/want" >"$tmp/xmldiff" || xml_diff="$xml_diff $iface: $(tr '\n' ';' <"$tmp/xmldiff")"
done
kill $holder $session_holder 2>/dev/null
wait $holder $session_holder 2>/dev/null
if [ -z "$xml_diff" ]; then ok "introspection-matches-xml"; else bad "introspection-matches-xml" "$xml_diff"; fi

# ---- npud stops cleanly; nothing from the sanitizers
kill "$npud_pid"
wait "$npud_pid"
rc=$?
npud_pid=""
if [ $rc -ne 0 ]; then
	bad "npud-clean-exit" "SIGTERM: exit $rc"
elif grep -q "runtime error\|ERROR: AddressSanitizer\|ERROR: LeakSanitizer" "$tmp/npud.log"; then
	bad "npud-clean-exit" "the sanitizers reported errors: $(grep -m1 -A5 'runtime error\|ERROR:' "$tmp/npud.log")"
else
	ok "npud-clean-exit"
fi

if [ "$failed" -gt 0 ]; then
	echo "--- npud's log (last 30 lines)"
	tail -30 "$tmp/npud.log"
fi
checks_summary
[ "$failed" -eq 0 ]
