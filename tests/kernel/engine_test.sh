#!/bin/sh
# Engine on the device, inside the test VM (busybox sh), with npu.ko loaded
# (job_timeout_ms=5000): the npu back end against the cpu one on the small
# model quantized to w8a8 and w8a16. Prints "PASS name" / "FAIL name: why".
#
# usage: engine_test.sh DIR     DIR holds npu-run, npu-bench, the models
# (f32.gguf, w8a8.gguf, w8a16.gguf, and the Qwen2 and Qwen3 tiny models
# qwen2-w8a8.gguf, qwen3-w8a8.gguf) and the host's greedy text of each
# quantized model (w8a8.host.txt, ...).
# engine_test.sh --list: the names of the results it prints.
if [ "${1:-}" = --list ]; then
	for p in w8a8 w8a16 qwen2-w8a8 qwen3-w8a8; do echo "engine-greedy-$p"; done
	echo engine-greedy-kv-q8
	echo engine-float-stays-on-cpu
	echo engine-hang-retry
	echo engine-hang-cpu-fallback
	echo engine-detach-keeps-kv
	echo engine-bench-npu-1t
	echo engine-bench-cpu-1t
	for p in w8a8 w8a16; do
		echo "engine-batches-$p"
		echo "engine-attach-detach-$p"
		echo "engine-perplexity-$p"
	done
	echo engine-no-leaks
	exit 0
fi
d=$1
dbg=/sys/kernel/debug/accel/npu.0
tmp=/tmp/engine
mkdir -p "$tmp"
N=40
# one cpu thread: under TCG two spinning workers mostly wait for each other
run="$d/npu-run -p 'Once upon a time' -n $N --temp 0 --ignore-eos -t 1"

. "${0%/*}/guest_lib.sh"
fail() {
	echo "FAIL $1: $2 [$(since)]"
	date +%s >"$tmp/t0"
	sed 's/^/  | /' "$tmp/err" 2>/dev/null | tail -8
}

# greedy TARGET MODEL OUT [extra args]: stdout to OUT, stderr to $tmp/err
greedy() {
	t=$1 m=$2 out=$3
	shift 3
	s0=$(date +%s)
	eval "$run -m $d/$m.gguf --target $t $*" >"$out" 2>"$tmp/err"
	r=$?
	echo "  $t $m: $(($(date +%s) - s0))s; $(grep -h '^prompt\|^generation' "$tmp/err" | tr '\n' ' ')"
	return $r
}

field() {
	# the number before WORD in the "npu: ..." counters line of $tmp/err
	sed -n "s/.* \([0-9][0-9]*\) $1.*/\1/p" "$tmp/err" | head -1
}

for p in w8a8 w8a16 qwen2-w8a8 qwen3-w8a8; do
	name=engine-greedy-$p
	if ! greedy cpu $p "$tmp/$p.cpu"; then
		fail "$name" "cpu run failed"
		continue
	fi
	if ! greedy npu $p "$tmp/$p.npu"; then
		fail "$name" "npu run failed"
		continue
	fi
	if ! grep -q '^back end: npu (/dev/accel/accel' "$tmp/err"; then
		fail "$name" "the npu back end did not run"
	elif [ "$(field passes)" -lt $N ] || [ "$(field faults)" != 0 ]; then
		fail "$name" "passes $(field passes), faults $(field faults)"
	elif ! cmp -s "$tmp/$p.cpu" "$tmp/$p.npu"; then
		fail "$name" "npu and cpu tokens differ"
		cat "$tmp/$p.cpu" "$tmp/$p.npu"
	elif ! cmp -s "$tmp/$p.cpu" "$d/$p.host.txt"; then
		fail "$name" "the VM's tokens differ from the host's"
	else
		pass "$name ($(field passes) passes, $(field submissions) submissions, identical tokens)"
		cp "$tmp/err" "$tmp/$p.npu.err"
	fi
done
# The int8 KV cache: the device stores K/V with QUANT_I8 over each head, as the cpu does.
name=engine-greedy-kv-q8
if ! greedy cpu w8a8 "$tmp/q8.cpu" --kv-type q8 || ! greedy npu w8a8 "$tmp/q8.npu" --kv-type q8; then
	fail "$name" "a run failed"
elif [ "$(field faults)" != 0 ] || ! cmp -s "$tmp/q8.cpu" "$tmp/q8.npu"; then
	fail "$name" "faults $(field faults), or npu and cpu tokens differ"
else
	pass "$name ($(field passes) passes, identical tokens)"
fi
echo "  greedy text: $(cat "$tmp/w8a8.npu")"
grep -h '^generation' "$tmp/w8a8.npu.err" 2>/dev/null | sed 's/^/  w8a8 npu /'

# A float model asked onto the npu stays on the cpu and says so.
if greedy npu f32 "$tmp/f32.out" && grep -q 'not w8a8 or w8a16: it runs on the cpu' "$tmp/err"; then
	pass engine-float-stays-on-cpu
else
	fail engine-float-stays-on-cpu "no note, or the run failed"
fi

# hang NAME RETRIES: a job hangs mid-generation; the tokens must not change.
hang() {
	name=$1
	lines=$(dmesg | wc -l)
	echo 400 >"$dbg/engine_delay_us"
	eval "$run -m $d/w8a8.gguf --target npu --npu-retries $2" >"$tmp/hang.out" 2>"$tmp/err" &
	pid=$!
	i=0
	# once a few tokens are out, the next job hangs until the 5 s timeout
	while [ "$(wc -c <"$tmp/hang.out")" -lt 40 ] && [ $i -lt 600 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	arm_hang
	wait $pid
	rc=$?
	echo 0 >"$dbg/engine_delay_us"
	disarm_hang
	dmesg | tail -n +$((lines + 1)) >"$tmp/dmesg"
	if [ $rc -ne 0 ]; then
		fail "$name" "npu-run exit $rc"
	elif ! cmp -s "$tmp/hang.out" "$tmp/w8a8.cpu"; then
		fail "$name" "tokens changed"
		cat "$tmp/hang.out"
	elif [ "$(field faults)" -lt 1 ] || [ "$(field netlink)" -lt 1 ]; then
		fail "$name" "faults $(field faults), netlink events $(field netlink)"
	elif [ "$3" = retry ] && [ "$(field retried)" -lt 1 ]; then
		fail "$name" "no pass retried on a fresh context"
	elif [ "$3" = cpu ] && [ "$(field run)" -lt 1 ]; then
		fail "$name" "no pass run on the cpu"
	elif ! grep -q 'timed out, engine reset' "$tmp/dmesg"; then
		fail "$name" "no timeout in dmesg"
	elif grep -qE 'WARNING|BUG|Oops|Call Trace' "$tmp/dmesg"; then
		fail "$name" "dmesg has a warning"
		head -20 "$tmp/dmesg"
	else
		pass "$name ($(field faults) fault, $(field retried) retried, $(field run) on the cpu, $(field netlink) netlink events)"
		grep -h 'last fault' "$tmp/err" | sed 's/^/  /'
		grep -h 'timed out' "$tmp/dmesg" | sed 's/^/  dmesg: /'
	fi
}
hang engine-hang-retry 1 retry
hang engine-hang-cpu-fallback 0 cpu

# Detach mid-generation: the rest runs on the cpu over the same KV cache.
if greedy npu w8a16 "$tmp/detach.out" --detach-after 15 && grep -q 'device detached after 15' "$tmp/err" &&
	cmp -s "$tmp/detach.out" "$tmp/w8a16.cpu"; then
	pass engine-detach-keeps-kv
else
	fail engine-detach-keeps-kv "tokens changed or no detach"
fi

# Benchmark tables, npu and cpu, small model, one cpu thread (steadier
# under TCG; the device works in its own kernel thread).
for t in npu cpu; do
	if "$d/npu-bench" -m "$d/w8a8.gguf" --target $t --task benchmark --prompt-lengths 4,16,64 \
		--new-tokens 24 --no-peaks -t 1 >"$tmp/bench" 2>"$tmp/err" &&
		grep -q '^| *3 |' "$tmp/bench"; then
		pass "engine-bench-$t-1t"
		grep -v '^$' "$tmp/bench" | sed 's/^/  /'
	else
		fail "engine-bench-$t-1t" "npu-bench failed"
	fi
done

# Mixed batches of several sequences (what npud's scheduler sends), attach
# and detach between steps, perplexity windows: npu logits == cpu logits.
for p in w8a8 w8a16; do
	"$d/engine_check" "$d/$p.gguf" $p >"$tmp/check.$p" 2>&1
	rc=$?
	n=0
	while read -r line; do
		case "$line" in
		PASS*) pass "${line#PASS }"; n=$((n + 1)) ;;
		FAIL*) echo "$line [$(since)]"; date +%s >"$tmp/t0"; n=$((n + 1)) ;;
		*) echo "  $line" ;;
		esac
	done <"$tmp/check.$p"
	# a crash prints fewer results; a failure without a FAIL line is one too
	if [ $n -ne 3 ] || { [ $rc -ne 0 ] && ! grep -q '^FAIL' "$tmp/check.$p"; }; then
		echo "FAIL engine-check-$p: exit $rc, $n of 3 results"
	fi
done

# Nothing left behind on the device, once every job is retired.
if [ "$(cat $dbg/idle)" = 1 ] && [ "$(cat $dbg/bo_count)" = 0 ] &&
	[ "$(cat $dbg/ctx_count)" = 0 ]; then
	pass engine-no-leaks
else
	fail engine-no-leaks "bo_count $(cat $dbg/bo_count) ctx_count $(cat $dbg/ctx_count)"
fi
