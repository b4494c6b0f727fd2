#!/bin/bash
# SPDX-License-Identifier: MIT
# The event loop never waits on long work: a model load (here one that
# cannot finish: its file is a FIFO nobody writes to) runs off the loop
# while requests are served; Manager.Reload answers when the reload is done
# (what ExecReload waits for); while the default model loads at start, npud
# extends the service manager's start timeout (EXTEND_TIMEOUT_USEC) and is
# READY only after.
#   tests/service/event-loop.sh BUILD_DIR SHARED_DIR
# Prints "ok NAME" or "FAIL NAME: why"; ends with "N passed, N failed".
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=checks.sh
. "$here/checks.sh"
checks_start "$@"
need_file "$model"
# shellcheck source=lib.sh
. "$here/lib.sh"

ctl() { "$npuctl" --bus "$addr" "$@"; }
mgr() { "$probe" "$addr" call /org/npud/Inference1 org.npud.Inference1.Manager "$@"; }
E=org.npud.Inference1.Error
prompt="Once upon a time"

# ---- 1. a load that never ends keeps nothing else waiting
service_start || exit 1
mkfifo "$tmp/slow.gguf"
ctl load "$tmp/slow.gguf" --name slow >"$tmp/load.out" 2>&1 &
loader=$!
sleep 0.5
out=$(timeout 10 "$npuctl" --bus "$addr" generate -q --temp 0 --max-tokens 8 "$prompt" 2>&1)
rc=$?
stats=$(timeout 10 "$probe" "$addr" stats 2>&1)
if [ $rc -eq 0 ] && [ -n "$out" ] && echo "$stats" | grep -q "^kv_blocks_total=" && kill -0 $loader 2>/dev/null; then
	ok "served-while-a-model-loads"
else
	bad "served-while-a-model-loads" "generate exit $rc: '$out'; stats: $(echo "$stats" | head -2 | tr '\n' ' ')"
fi
# the load goes on: now it gets an empty file, and fails with a named error
exec 3>"$tmp/slow.gguf"
exec 3>&-
wait $loader
rc=$?
if [ $rc -ne 0 ] && grep -q "$E.\(BadModel\|InvalidArgument\)" "$tmp/load.out"; then
	ok "failed-load-named-error"
else
	bad "failed-load-named-error" "exit $rc: $(cat "$tmp/load.out")"
fi

# ---- 2. a connection that does not read its Tokens: past
#         max_unread_tokens_per_client (256) its request waits, keeping its KV
#         (npud learns what it read from its answers to Peer.Ping), and goes on
#         when it reads; others are served meanwhile
stat_of() { "$probe" "$addr" stats | sed -n "s/^$1=//p"; }
"$probe" "$addr" noread 900 10 "$prompt" >"$tmp/noread" 2>&1 &
noread=$!
for i in $(seq 100); do grep -q sleeping "$tmp/noread" && break; sleep 0.02; done
# up to the limit at the machine's pace (a loaded host under ASan takes seconds), then held;
# the client reads nothing for 10 s, which outlasts these checks on a slow host
for i in $(seq 300); do [ "$(stat_of generated_tokens)" -ge 256 ] && break; sleep 0.1; done
sleep 0.5
g1=$(stat_of generated_tokens)
a1=$(stat_of active_requests)
sleep 0.5
g2=$(stat_of generated_tokens)
out=$(timeout 10 "$npuctl" --bus "$addr" generate -q --temp 0 --max-tokens 8 "$prompt" 2>&1)
rc=$?
wait $noread
if [ "$g1" = "$g2" ] && [ "$g1" -le 300 ] && [ "$a1" -ge 1 ] && [ $rc -eq 0 ] &&
	grep -q "^finished length tokens 900$" "$tmp/noread"; then
	ok "unread-tokens-hold-the-request (held at $g1 generated tokens)"
else
	bad "unread-tokens-hold-the-request" "generated $g1 then $g2, active $a1; other client: exit $rc; $(tr '\n' ';' <"$tmp/noread")"
fi

# ---- 3. Manager.Reload answers once the configured model is loaded
cp "$model" "$tmp/other.gguf"
cp "$tmp/npud.conf" "$tmp/npud.conf.orig"
sed -i "s|^model = .*|model = $tmp/other.gguf|" "$tmp/npud.conf"
out=$(mgr Reload 2>&1)
models=$("$npuctl" --bus "$addr" models --json 2>&1)
if [ "$out" = ok ] && echo "$models" | grep -q '"other"' &&
	[ "$(busctl --address="$addr" get-property org.npud.Inference1 /org/npud/Inference1 \
		org.npud.Inference1.Manager DefaultModel 2>&1)" = 's "other"' ]; then
	ok "reload-waits-for-the-model"
else
	bad "reload-waits-for-the-model" "Reload: $out; models: $(echo "$models" | tr -d '\n' | head -c 300)"
fi
echo "no_such_key = 1" >>"$tmp/npud.conf"
out=$(mgr Reload 2>&1)
if echo "$out" | grep -q "$E.Failed.*keeping the old configuration.*no_such_key"; then
	ok "reload-bad-config-refused"
else
	bad "reload-bad-config-refused" "$out"
fi
cp "$tmp/npud.conf.orig" "$tmp/npud.conf"
sed -i "s|^model = .*|model = /nonexistent/model.gguf|" "$tmp/npud.conf"
out=$(mgr Reload 2>&1)
if echo "$out" | grep -q "$E.BadModel.*nonexistent"; then
	ok "reload-missing-model-refused"
else
	bad "reload-missing-model-refused" "$out"
fi
cp "$tmp/npud.conf.orig" "$tmp/npud.conf"
if [ "$(id -u)" -ne 0 ]; then
	echo "# skip reload-needs-authorization: not root (it calls as another uid)"
elif ! command -v setpriv >/dev/null; then
	bad "reload-needs-authorization" "running as root without setpriv (util-linux): the check as another uid cannot run"
else
	install -m 0755 "$probe" "$tmp/npud-probe" # the build tree may be closed to nobody
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/npud-probe" "$addr" call /org/npud/Inference1 \
		org.npud.Inference1.Manager Reload 2>&1)
	if echo "$out" | grep -q "AccessDenied"; then ok "reload-needs-authorization"; else bad "reload-needs-authorization" "$out"; fi
fi
service_stop

# ---- 4. start: EXTEND_TIMEOUT_USEC while the default model loads, READY=1 only after
start_notified() { # MODEL: npud on a fresh bus, its notifications in $tmp/notify.out
	bus_start || exit 1
	npud_conf
	"$probe" notify-listen "$tmp/notify" 30 >"$tmp/notify.out" 2>&1 &
	listener=$!
	for i in $(seq 100); do grep -q listening "$tmp/notify.out" 2>/dev/null && break; sleep 0.02; done
	NOTIFY_SOCKET=$tmp/notify "$npud" --bus "$addr" --model "$1" --config "$tmp/npud.conf" >"$tmp/npud.log" 2>&1 &
	npud_pid=$!
}
start_notified "$model"
wait $listener
if grep -q "^notify EXTEND_TIMEOUT_USEC=" "$tmp/notify.out" && grep -q "^notify READY=1" "$tmp/notify.out" &&
	[ "$(grep -n "EXTEND_TIMEOUT_USEC" "$tmp/notify.out" | head -1 | cut -d: -f1)" -lt \
	  "$(grep -n "READY=1" "$tmp/notify.out" | cut -d: -f1)" ]; then
	ok "extend-timeout-then-ready"
else
	bad "extend-timeout-then-ready" "$(tr '\n' ';' <"$tmp/notify.out")"
fi
service_stop
bus_start || exit 1
npud_conf
mkfifo "$tmp/slow.gguf"
"$probe" notify-listen "$tmp/notify" 30 >"$tmp/notify.out" 2>&1 &
listener=$!
for i in $(seq 100); do grep -q listening "$tmp/notify.out" 2>/dev/null && break; sleep 0.02; done
NOTIFY_SOCKET=$tmp/notify "$npud" --bus "$addr" --model "$tmp/slow.gguf" --config "$tmp/npud.conf" \
	>"$tmp/npud.log" 2>&1 &
npud_pid=$!
sleep 1
alive=no
kill -0 $npud_pid 2>/dev/null && alive=yes
exec 3>"$tmp/slow.gguf"
exec 3>&-
wait $npud_pid
rc=$?
npud_pid=""
# the listener may print npud's last notification after npud has gone
for i in $(seq 100); do grep -q "^notify STATUS=cannot start" "$tmp/notify.out" && break; sleep 0.02; done
kill $listener 2>/dev/null
wait $listener 2>/dev/null
if [ $alive = yes ] && [ $rc -eq 1 ] && grep -q "^notify EXTEND_TIMEOUT_USEC=" "$tmp/notify.out" &&
	! grep -q "^notify READY=1" "$tmp/notify.out" && grep -q "^notify STATUS=cannot start" "$tmp/notify.out"; then
	ok "slow-default-model-extends-start"
else
	bad "slow-default-model-extends-start" "alive while loading: $alive; exit $rc; $(tr '\n' ';' <"$tmp/notify.out")"
fi

service_stop
checks_summary
[ "$failed" -eq 0 ]
