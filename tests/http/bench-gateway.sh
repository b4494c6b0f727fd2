#!/bin/bash
# SPDX-License-Identifier: MIT
# npud-http's added latency against direct D-Bus: npud on a private bus
# (tests/service/lib.sh) with MODEL, npud-http in front of it on a Unix
# socket, and npud-http-bench with 1 and 8 clients at once.
#   tests/http/bench-gateway.sh [MODEL.gguf] [BUILD_DIR] [-- BENCH OPTIONS]
# The timing runs under flock /work/bench.lock when that file's folder exists.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
model=${1:-$root/../shared/models/aidreams260K-f32.gguf}
build=$(cd "${2:-$root/build}" && pwd) || exit 2
shift $(($# < 2 ? $# : 2))
[ "${1:-}" = -- ] && shift
npud=$build/daemon/npud/npud
npuctl=$build/client/npuctl
bench=$build/tests/http/npud-http-bench
gateway=$build/client/http/npud-http
for f in "$npud" "$npuctl" "$bench" "$gateway" "$model"; do
	[ -e "$f" ] || { echo "missing $f" >&2; exit 1; }
done
. "$root/tests/service/lib.sh"
NPUD_MAX_REQUESTS_PER_CLIENT=64 NPUD_MAX_QUEUE=256 NPUD_MAX_QUEUED_TOKENS=1000000 service_start || exit 1
"$gateway" --bus "$addr" --listen "unix:$tmp/http.sock" >"$tmp/gw.log" 2>&1 &
gw=$!
for i in $(seq 100); do [ -S "$tmp/http.sock" ] && break; sleep 0.05; done
name=$(basename "$model" .gguf)
lock=()
[ -d /work ] && [ -w /work ] && lock=(flock /work/bench.lock)
echo "# $(nproc) cpus; $(uptime | sed 's/.*load/load/')"
"${lock[@]}" "$bench" "$addr" "$tmp/http.sock" "$name" "$gw" "$@"
rc=$?
kill $gw
exit $rc
