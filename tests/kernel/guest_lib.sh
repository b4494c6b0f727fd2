# Shared by engine_test.sh and service_test.sh inside the test VM (busybox sh);
# sourced once they have set dbg (the device's debugfs folder) and tmp.

# arm_hang / disarm_hang: the next job hangs until the timeout resets the
# engine: the kernel's fault injection (fail_hang/) where it has it, else
# the driver's own switch.
arm_hang() {
	if [ -d "$dbg/fail_hang" ]; then
		for kv in verbose=0 interval=1 space=0 probability=100 times=1; do
			echo "${kv#*=}" >"$dbg/fail_hang/${kv%%=*}"
		done
	else
		echo 1 >"$dbg/inject_hang"
	fi
}
disarm_hang() {
	if [ -d "$dbg/fail_hang" ]; then
		echo 0 >"$dbg/fail_hang/probability"
	else
		echo 0 >"$dbg/inject_hang"
	fi
}

# seconds since the last PASS/FAIL line
date +%s >"$tmp/t0"
since() {
	echo "$(($(date +%s) - $(cat "$tmp/t0")))s"
}
pass() {
	echo "PASS $1 [$(since)]"
	date +%s >"$tmp/t0"
}
