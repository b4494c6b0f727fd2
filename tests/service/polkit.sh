#!/bin/bash
# SPDX-License-Identifier: MIT
# polkit is asked: model and device management from a uid other than root
# and npud's own goes to org.freedesktop.PolicyKit1.Authority.
# CheckAuthorization over the bus (here a stand-in, npud-probe fake-polkit,
# answering yes, no or with a challenge), asynchronously, with the caller's
# allow-interactive-authorization flag; root is not asked about.
#   tests/service/polkit.sh BUILD_DIR SHARED_DIR
# Needs root and setpriv (util-linux) to call as nobody: skipped (77) when
# not root; a failure when root lacks setpriv.
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=checks.sh
. "$here/checks.sh"
checks_start "$@"
need_file "$model"
need_second_uid
# shellcheck source=lib.sh
. "$here/lib.sh"

E=org.npud.Inference1.Error
M=org.npud.Inference1.Manager

service_start || exit 1
install -m 0755 "$probe" "$tmp/npud-probe"
install -m 0755 "$npuctl" "$tmp/npuctl"
cp "$model" "$tmp/other.gguf"
chmod 0644 "$tmp/other.gguf"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
nobody_call() { as_nobody "$tmp/npud-probe" "$addr" call /org/npud/Inference1 $M "$@" 2>&1; }
load_other() { nobody_call LoadModel 'sa{sv}' "$tmp/other.gguf" 1 name s other; }
fake=""
fake_start() { # MODE DELAY_MS
	[ -n "$fake" ] && { kill $fake; wait $fake 2>/dev/null; }
	"$probe" "$addr" fake-polkit "$1" "$2" >"$tmp/polkit.$1" 2>&1 &
	fake=$!
	for i in $(seq 100); do grep -q ready "$tmp/polkit.$1" && return; sleep 0.02; done
}

# no authority on the bus at all: refused, and said why
out=$(load_other)
if echo "$out" | grep -q "$E.AccessDenied.*polkit could not be asked"; then ok "no-polkit-denied"; else bad "no-polkit-denied" "$out"; fi

fake_start no 0
out=$(load_other)
if echo "$out" | grep -q "$E.AccessDenied" &&
	grep -q "^check org.npud.Inference1.manage-models system-bus-name :[0-9.]* flags=0" "$tmp/polkit.no"; then
	ok "polkit-says-no"
else
	bad "polkit-says-no" "$out; polkit was asked: $(cat "$tmp/polkit.no")"
fi
out=$(as_nobody "$tmp/npud-probe" "$addr" call /org/npud/Inference1 $M AttachDevice 'sha{sv}' accel0 /dev/null 0 2>&1)
if echo "$out" | grep -q "$E.AccessDenied" && grep -q "^check org.npud.Inference1.manage-devices" "$tmp/polkit.no"; then
	ok "devices-ask-manage-devices"
else
	bad "devices-ask-manage-devices" "$out; $(cat "$tmp/polkit.no")"
fi
before=$(grep -c "^check" "$tmp/polkit.no")
out=$("$probe" "$addr" call /org/npud/Inference1 $M UnloadModel 'sa{sv}' no-such-model 0 2>&1)
if [ "$(grep -c "^check" "$tmp/polkit.no")" = "$before" ] && echo "$out" | grep -q "$E.NoSuchModel"; then
	ok "root-not-asked-about"
else
	bad "root-not-asked-about" "$out; $(cat "$tmp/polkit.no")"
fi

fake_start challenge 0
out=$(load_other)
if echo "$out" | grep -q "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"; then
	ok "challenge-needs-interactive"
else
	bad "challenge-needs-interactive" "$out"
fi
out=$(as_nobody "$tmp/npud-probe" "$addr" call-interactive /org/npud/Inference1 $M LoadModel 'sa{sv}' \
	"$tmp/other.gguf" 1 name s other 2>&1)
if [ "$out" = ok ] && grep -q "^check org.npud.Inference1.manage-models .* flags=1" "$tmp/polkit.challenge"; then
	ok "interactive-flag-passed"
else
	bad "interactive-flag-passed" "$out; $(cat "$tmp/polkit.challenge")"
fi

# a slow answer (2 s) keeps nobody else waiting
fake_start yes 2000
nobody_call UnloadModel 'sa{sv}' other 0 >"$tmp/unload.out" 2>&1 &
unloader=$!
sleep 0.3
out=$(timeout 10 "$npuctl" --bus "$addr" generate -q --temp 0 --max-tokens 8 "Once upon a time" 2>&1)
rc=$?
still_asking=no
kill -0 $unloader 2>/dev/null && still_asking=yes
wait $unloader
if [ $rc -eq 0 ] && [ -n "$out" ] && [ $still_asking = yes ] && [ "$(cat "$tmp/unload.out")" = ok ] &&
	! "$npuctl" --bus "$addr" models | grep -q other; then
	ok "polkit-asked-asynchronously"
else
	bad "polkit-asked-asynchronously" "generate exit $rc ($out); unload still waiting: $still_asking; unload: $(cat "$tmp/unload.out")"
fi
fake_start yes 0
out=$(nobody_call Reload)
if [ "$out" = ok ]; then ok "reload-polkit-yes"; else bad "reload-polkit-yes" "$out"; fi

kill $fake 2>/dev/null
wait $fake 2>/dev/null
service_stop
checks_summary
[ "$failed" -eq 0 ]
