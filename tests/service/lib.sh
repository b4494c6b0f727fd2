# SPDX-License-Identifier: MIT
# Sourced by the service tests and benchmarks: a private D-Bus bus in a
# temporary directory, npud on it, and cleanup on exit.
#
# After service_start: $tmp, $addr (the bus address), $npud_pid, $bus_pid
# (bus_start alone: $tmp, $addr, $bus_pid).
# Needs: $npud, $npuctl (paths), $model; optional $npud_conf_extra (lines
# appended to the [npud] section).

# Under ASan, freed memory waits in a quarantine (256 MB by default) before
# reuse: it would count as npud's own growth in the RSS checks.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"

# bench_args MODEL [BUILD_DIR] [-- npuctl bench options]: the benchmark
# scripts' arguments. Sets $model (absolute), $build (default: build/ beside
# this checkout), $npud, $npuctl and the array $bench_opts (what follows);
# exits 2 on wrong usage.
bench_args() {
	if [ $# -lt 1 ] || [ ! -f "$1" ]; then
		echo "usage: $0 MODEL.gguf [BUILD_DIR] [-- npuctl bench options]" >&2
		exit 2
	fi
	model=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
	shift
	build=$here/../../build
	if [ $# -gt 0 ] && [ "$1" != "--" ]; then
		build=$1
		shift
	fi
	[ $# -gt 0 ] && [ "$1" = "--" ] && shift
	build=$(cd "$build" && pwd) || exit 2
	npud=$build/daemon/npud/npud
	npuctl=$build/client/npuctl
	bench_opts=("$@")
}

# Stops npud and the bus and removes the directory (service_start may follow).
service_stop() {
	local pid
	for pid in ${npud_pid:-} ${bus_pid:-}; do
		kill "$pid" 2>/dev/null
	done
	for pid in ${npud_pid:-} ${bus_pid:-}; do
		wait "$pid" 2>/dev/null
	done
	npud_pid=""
	bus_pid=""
	[ -n "${tmp:-}" ] && rm -rf "$tmp"
	tmp=""
}

service_cleanup() {
	local pid
	for pid in $(jobs -p) ${npud_pid:-} ${bus_pid:-}; do
		kill "$pid" 2>/dev/null
	done
	# give npud a moment to leave cleanly, then make sure
	sleep 0.2
	for pid in $(jobs -p) ${npud_pid:-} ${bus_pid:-}; do
		kill -9 "$pid" 2>/dev/null
	done
	wait 2>/dev/null
	[ -n "${tmp:-}" ] && rm -rf "$tmp"
}

# The bus socket must be reachable by other users (the access checks run
# npuctl as nobody): a directory under /tmp with mode 0755.
bus_start() {
	tmp=$(mktemp -d /tmp/npud-service.XXXXXX) || return 1
	chmod 0755 "$tmp"
	trap service_cleanup EXIT
	trap 'exit 130' INT TERM
	addr="unix:path=$tmp/bus"

	cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$tmp/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
	dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile >"$tmp/bus.log" 2>&1 &
	bus_pid=$!
	local i
	for i in $(seq 100); do
		[ -S "$tmp/bus" ] && break
		sleep 0.05
	done
	if [ ! -S "$tmp/bus" ]; then
		echo "dbus-daemon did not start:"
		cat "$tmp/bus.log"
		return 1
	fi
	chmod 0777 "$tmp/bus"
}

# npud.conf in $tmp from the NPUD_* variables.
npud_conf() {
	cat >"$tmp/npud.conf" <<EOF
[npud]
model = $model
threads = ${NPUD_THREADS:-2}
kv_budget_mb = ${NPUD_KV_BUDGET_MB:-64}
max_requests_per_client = ${NPUD_MAX_REQUESTS_PER_CLIENT:-4}
max_queued_tokens_per_client = ${NPUD_MAX_QUEUED_TOKENS:-8192}
max_queue = ${NPUD_MAX_QUEUE:-32}
max_finished_kept = ${NPUD_MAX_FINISHED_KEPT:-64}
n_ctx = ${NPUD_N_CTX:-1024}
flash_attention = no
${npud_conf_extra:-}
EOF
}

service_start() {
	bus_start || return 1
	npud_conf
	"$npud" --bus "$addr" --model "$model" --config "$tmp/npud.conf" >"$tmp/npud.log" 2>&1 &
	npud_pid=$!

	# ready when the name is owned: npuctl status answers
	for i in $(seq 300); do
		if "$npuctl" --bus "$addr" status >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$npud_pid" 2>/dev/null; then
			echo "npud exited before it owned org.npud.Inference1:"
			cat "$tmp/npud.log"
			return 1
		fi
		sleep 0.1
	done
	echo "npud did not own org.npud.Inference1 within 30 s:"
	cat "$tmp/npud.log"
	return 1
}
