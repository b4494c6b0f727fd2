#!/bin/sh
# npud on the npu, inside the test VM (busybox sh), with npu.ko loaded
# (job_timeout_ms=5000): npud --target npu and npuctl on a private D-Bus bus,
# on the small model quantized to w8a8 and w8a16, against npud --target cpu.
# Prints "PASS name" / "FAIL name: why".
#
# usage: service_test.sh SVC MODELS   SVC holds npud and npuctl, MODELS the
# models (w8a8.gguf, w8a16.gguf) and npu-bench; dbus-daemon and busctl are
# in /usr/bin.
#
# - greedy tokens through npud on the npu equal npud's on the cpu (both
#   precisions);
# - a job hangs mid-generation: the request completes with the same tokens
#   (retried or on the cpu), npud counted a fault and a netlink event, dmesg
#   has the timeout and no warning;
# - Detach() mid-generation: the rest runs on the cpu, the same tokens, none
#   lost or repeated; Attach() brings the device back;
# - npud stops cleanly and leaves nothing on the device.
# service_test.sh --list: the names of the results it prints.
if [ "${1:-}" = --list ]; then
	for p in w8a8 w8a16; do echo "service-greedy-$p"; done
	for n in device-object bench-npu hang detach reattach stop-clean; do
		echo "service-$n"
	done
	exit 0
fi
svc=$1
models=$2
export PATH=/bin:/usr/bin
export SYSTEMD_PAGER=cat SYSTEMD_COLORS=0
dbg=/sys/kernel/debug/accel/npu.0
device=/dev/accel/accel0
devobj=/org/npud/Inference1/device/accel0
tmp=/tmp/service
rm -rf "$tmp"
mkdir -p "$tmp"
addr=unix:path=$tmp/bus
N=32
PROMPT='Once upon a time'

. "${0%/*}/guest_lib.sh"
# fail NAME WHY [FILE...]: the files' tails as details
fail() {
	echo "FAIL $1: $2 [$(since)]"
	date +%s >"$tmp/t0"
	shift 2
	for f in "$@"; do
		[ -s "$f" ] && tail -8 "$f" | sed "s|^|  $(basename "$f"): |"
	done
}

ctl() {
	timeout 120 "$svc/npuctl" --bus "$addr" "$@"
}
# prop NAME: a property of the device object through busctl, the value alone
prop() {
	timeout 20 busctl --address="$addr" get-property org.npud.Inference1 "$devobj" \
		org.npud.Inference1.Device "$1" 2>>"$tmp/busctl.err" | sed 's/^[a-z]* //; s/"//g'
}
# dev: accel0's entry of npuctl devices --json into $tmp/dev (one npuctl
# call, cheaper than busctl under TCG); dfield KEY: a field of it
dev() {
	ctl devices --json | tr '}' '\n' | grep '"name":"accel0"' >"$tmp/dev"
}
dfield() {
	jfield "$tmp/dev" "$1"
}
# device METHOD: Attach or Detach through busctl
device() {
	timeout 60 busctl --address="$addr" call org.npud.Inference1 "$devobj" \
		org.npud.Inference1.Device "$1" >"$tmp/busctl.out" 2>&1
}
# jfield FILE KEY: a number or a string without quotes or commas of the
# JSON in FILE (the first one)
jfield() {
	sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" "$1" | head -1
}
text() {
	sed -n 's/.*"text":"\(.*\)","tokens":.*/\1/p' "$1"
}
tokens() {
	sed -n 's/.*"tokens":\[\([0-9,]*\)\].*/\1/p' "$1"
}
num() {
	case "$1" in '' | *[!0-9]*) echo 0 ;; *) echo "$1" ;; esac
}

# The private bus, like tests/service/lib.sh's.
cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>$addr</listen>
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
i=0
while [ ! -S "$tmp/bus" ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
if [ ! -S "$tmp/bus" ]; then
	fail service-bus "dbus-daemon did not start" "$tmp/bus.log"
	exit 0
fi

npud_pid=""
# start_npud TARGET MODEL: npud serving MODEL on TARGET, ready when it
# answers npuctl status
start_npud() {
	cat >"$tmp/npud.conf" <<EOF
[npud]
threads = 1
kv_budget_mb = 16
n_ctx = 128
flash_attention = no
EOF
	dev=""
	[ "$1" = npu ] && dev="--device $device"
	# shellcheck disable=SC2086
	"$svc/npud" --bus "$addr" --config "$tmp/npud.conf" --model "$models/$2.gguf" \
		--target "$1" $dev >"$tmp/npud.log" 2>&1 &
	npud_pid=$!
	i=0
	while [ $i -lt 300 ]; do
		"$svc/npuctl" --bus "$addr" status >/dev/null 2>&1 && return 0
		kill -0 "$npud_pid" 2>/dev/null || break
		sleep 0.1
		i=$((i + 1))
	done
	echo "npud --target $1 $2 did not start" >>"$tmp/npud.log"
	stop_npud
	return 1
}
# stop_npud: SIGTERM, then its exit status (137 after SIGKILL at 20 s)
stop_npud() {
	[ -n "$npud_pid" ] || return 0
	kill "$npud_pid" 2>/dev/null
	i=0
	while kill -0 "$npud_pid" 2>/dev/null && [ $i -lt 200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -9 "$npud_pid" 2>/dev/null
	wait "$npud_pid"
	r=$?
	npud_pid=""
	return $r
}

# gen OUT MODEL [MAX_TOKENS]: greedy, the JSON result in OUT
gen() {
	ctl generate -m "$2" --temp 0 --max-tokens "${3:-$N}" --ignore-eos --json "$PROMPT" \
		>"$1" 2>"$tmp/err"
}
# gen_both TARGET: npud on TARGET serving w8a8 (at start) and w8a16 (loaded
# after), greedy on each into $tmp/PRECISION.TARGET
gen_both() {
	: >"$tmp/w8a8.$1"
	: >"$tmp/w8a16.$1"
	if ! start_npud "$1" w8a8; then
		echo "npud --target $1 did not start" >"$tmp/why"
		return 1
	fi
	if ! ctl load "$models/w8a16.gguf" >"$tmp/load" 2>&1; then
		echo "npuctl load w8a16.gguf failed on $1: $(cat "$tmp/load")" >"$tmp/why"
	fi
	for p in w8a8 w8a16; do
		s0=$(date +%s)
		gen "$tmp/$p.$1" $p || echo "npuctl on $1: $(head -c 300 "$tmp/err")" >"$tmp/why.$p"
		echo "  $1 $p: $(($(date +%s) - s0))s; backend $(jfield "$tmp/$p.$1" backend), $(jfield "$tmp/$p.$1" ms_per_token) ms/token"
	done
}

# 1. The cpu reference of each precision, then the same on the npu, whose
# daemon stays up for the hang and detach checks.
rm -f "$tmp"/why*
gen_both cpu
stop_npud
for p in w8a8 w8a16; do
	[ -n "$(tokens "$tmp/$p.cpu")" ] || echo "no cpu reference: $(cat "$tmp/why.$p" "$tmp/why" 2>/dev/null)" >"$tmp/why.$p"
done
gen_both npu
for p in w8a8 w8a16; do
	name=service-greedy-$p
	if [ -s "$tmp/why.$p" ] || [ -z "$(tokens "$tmp/$p.npu")" ]; then
		fail "$name" "$(cat "$tmp/why.$p" "$tmp/why" 2>/dev/null)" "$tmp/npud.log"
	elif [ "$(jfield "$tmp/$p.cpu" generated_tokens)" != $N ]; then
		fail "$name" "the cpu generated $(jfield "$tmp/$p.cpu" generated_tokens) tokens" "$tmp/$p.cpu"
	elif [ "$(jfield "$tmp/$p.npu" backend)" != npu ]; then
		fail "$name" "backend '$(jfield "$tmp/$p.npu" backend)', not npu" "$tmp/$p.npu" "$tmp/npud.log"
	elif [ "$(num "$(jfield "$tmp/$p.npu" device_faults)")" != 0 ]; then
		fail "$name" "device_faults $(jfield "$tmp/$p.npu" device_faults)" "$tmp/$p.npu" "$tmp/npud.log"
	elif [ "$(tokens "$tmp/$p.npu")" != "$(tokens "$tmp/$p.cpu")" ]; then
		fail "$name" "npu and cpu tokens differ" "$tmp/$p.cpu" "$tmp/$p.npu"
	else
		pass "$name ($N tokens identical)"
	fi
done
if [ -n "$npud_pid" ]; then
	name=service-device-object
	dev
	if [ "$(prop State)" != attached ] || [ "$(prop Name)" != accel0 ]; then
		fail $name "State '$(prop State)', Name '$(prop Name)'" "$tmp/busctl.err"
	elif [ "$(dfield state)" != attached ] || [ "$(num "$(dfield passes)")" -lt $((2 * N)) ]; then
		fail $name "npuctl devices: $(cat "$tmp/dev")"
	else
		pass "$name (attached, $(dfield passes) passes, $(dfield models) models)"
	fi
fi
echo "  greedy text: $(text "$tmp/w8a8.npu")"

# npuctl bench --target npu: the reference's table through the service, every
# request checked to have run on the device
if [ -n "$npud_pid" ]; then
	name=service-bench-npu
	ctl bench --target npu -m w8a8 --task benchmark --prompt-lengths 4,16 --new-tokens 8 \
		>"$tmp/bench" 2>&1
	r=$?
	rows=$(grep -c '^| *[0-9]' "$tmp/bench")
	if [ $r != 0 ] || [ "$rows" != 2 ] || ! grep -q 'Prompt Length (tokens)' "$tmp/bench"; then
		fail $name "exit $r, $rows rows" "$tmp/bench" "$tmp/npud.log"
	else
		pass "$name (2 rows from the device)"
	fi
	sed 's/^/    /' "$tmp/bench"
fi

# wait_passes N: until the device has done N more passes than now (the
# generation in the background is under way), for 60 s at most
wait_passes() {
	dev
	want=$(($(num "$(dfield passes)") + $1))
	i=0
	while dev && [ "$(num "$(dfield passes)")" -lt $want ] && [ $i -lt 200 ]; do
		i=$((i + 1))
	done
}

# 2. A job hangs mid-generation (the 5 s timeout resets the engine).
name=service-hang
if [ -z "$npud_pid" ]; then
	fail $name "no npud on the npu"
else
	lines=$(dmesg | wc -l)
	dev
	ev0=$(num "$(dfield netlink_events)")
	# slow until the hang is armed: the generation must still be running
	echo 400 >"$dbg/engine_delay_us"
	gen "$tmp/hang.json" w8a8 &
	gpid=$!
	wait_passes 4
	arm_hang
	echo 0 >"$dbg/engine_delay_us"
	wait $gpid
	r=$?
	disarm_hang
	dev
	ev=$(($(num "$(dfield netlink_events)") - ev0))
	dmesg | tail -n +$((lines + 1)) >"$tmp/dmesg"
	faults=$(num "$(jfield "$tmp/hang.json" device_faults)")
	retries=$(num "$(jfield "$tmp/hang.json" device_retries)")
	oncpu=$(num "$(jfield "$tmp/hang.json" cpu_fallbacks)")
	if [ $r -ne 0 ]; then
		fail $name "npuctl exit $r" "$tmp/err" "$tmp/npud.log"
	elif [ "$(tokens "$tmp/hang.json")" != "$(tokens "$tmp/w8a8.cpu")" ]; then
		fail $name "tokens changed" "$tmp/hang.json" "$tmp/w8a8.cpu"
	elif [ "$faults" -lt 1 ] || [ $((retries + oncpu)) -lt 1 ]; then
		fail $name "device_faults $faults, device_retries $retries, cpu_fallbacks $oncpu" "$tmp/hang.json"
	elif [ $ev -lt 1 ]; then
		fail $name "npud counted no netlink event" "$tmp/npud.log"
	elif ! grep -q 'timed out, engine reset' "$tmp/dmesg"; then
		fail $name "no timeout in dmesg" "$tmp/dmesg"
	elif grep -qE 'WARNING|BUG|Oops|Call Trace' "$tmp/dmesg"; then
		fail $name "dmesg has a warning"
		head -20 "$tmp/dmesg"
	else
		pass "$name ($faults fault, $retries retried, $oncpu on the cpu, $ev netlink events, backend $(jfield "$tmp/hang.json" backend), same tokens)"
		grep -h 'timed out' "$tmp/dmesg" | sed 's/^/  dmesg: /'
	fi
fi

# 3. Detach() mid-generation, then Attach().
name=service-detach
if [ -z "$npud_pid" ]; then
	fail $name "no npud on the npu"
else
	dev
	state=$(dfield state)
	if [ "$state" != attached ]; then
		echo "  device state after the hang: $state; Attach()"
		device Attach || echo "  Attach: $(cat "$tmp/busctl.out")"
	fi
	echo 400 >"$dbg/engine_delay_us"
	gen "$tmp/detach.json" w8a8 &
	gpid=$!
	wait_passes 4
	p0=$(dfield passes)
	device Detach
	dr=$?
	echo 0 >"$dbg/engine_delay_us"
	wait $gpid
	r=$?
	dev
	state=$(dfield state)
	if [ $dr -ne 0 ]; then
		fail $name "Detach failed" "$tmp/busctl.out" "$tmp/npud.log"
	elif [ $r -ne 0 ]; then
		fail $name "npuctl exit $r" "$tmp/err" "$tmp/npud.log"
	elif [ "$(tokens "$tmp/detach.json")" != "$(tokens "$tmp/w8a8.cpu")" ]; then
		fail $name "tokens lost, repeated or changed" "$tmp/detach.json" "$tmp/w8a8.cpu"
	elif [ "$(jfield "$tmp/detach.json" backend)" != npu+cpu ]; then
		fail $name "backend '$(jfield "$tmp/detach.json" backend)', not npu+cpu" "$tmp/detach.json"
	elif [ "$state" != detached ]; then
		fail $name "state '$state' after Detach"
	else
		pass "$name (Detach() at device pass $p0, backend npu+cpu, same tokens)"
	fi
	name=service-reattach
	p0=$(num "$(dfield passes)")
	if ! device Attach; then
		fail $name "Attach failed" "$tmp/busctl.out" "$tmp/npud.log"
	elif ! gen "$tmp/reattach.json" w8a8 8; then
		fail $name "npuctl failed" "$tmp/err"
	elif ! dev || [ "$(dfield state)" != attached ]; then
		fail $name "state '$(dfield state)' after Attach"
	elif [ "$(jfield "$tmp/reattach.json" backend)" != npu ] || [ "$(num "$(dfield passes)")" -le "$p0" ]; then
		fail $name "backend '$(jfield "$tmp/reattach.json" backend)', passes $p0 -> $(dfield passes)"
	elif [ "$(tokens "$tmp/reattach.json")," != "$(tokens "$tmp/w8a8.cpu" | cut -d, -f1-8)," ]; then
		fail $name "tokens differ from the cpu's" "$tmp/reattach.json"
	else
		pass "$name (8 tokens on the npu again)"
	fi
	ctl devices | sed 's/^/  devices: /'
fi

# 4. npud stops on SIGTERM and leaves nothing on the device.
name=service-stop-clean
if [ -n "$npud_pid" ]; then
	stop_npud
	r=$?
	# once every job is retired (the file was closed with npud)
	idle=$(cat $dbg/idle)
	if [ $r -ne 0 ]; then
		fail $name "npud exit $r" "$tmp/npud.log"
	elif [ "$idle" != 1 ] || [ "$(cat $dbg/bo_count)" != 0 ] || [ "$(cat $dbg/ctx_count)" != 0 ]; then
		fail $name "idle $idle, bo_count $(cat $dbg/bo_count) ctx_count $(cat $dbg/ctx_count)"
	else
		pass $name
	fi
fi
kill "$bus_pid" 2>/dev/null
wait "$bus_pid" 2>/dev/null

# 5. For the record (no verdict): the benchmark table, small w8a8 model, one
# cpu thread and no peak measurements (those take 90 s each under TCG).
for t in npu cpu; do
	echo "  npu-bench --target $t:"
	timeout 120 "$models/npu-bench" -m "$models/w8a8.gguf" --target $t --task benchmark \
		--prompt-lengths 4,16,64 --new-tokens 16 --no-peaks -t 1 2>&1 | grep -v '^$' | sed 's/^/    /'
done
