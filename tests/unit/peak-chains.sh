#!/bin/sh
# SPDX-License-Identifier: MIT
# npu-bench's int8 peak counts CHAINS instructions per loop step: the
# compiled workers must execute that many (a compiler that merges two chains
# with equal operands and values runs half and the peak reads too high).
# usage: peak-chains.sh NPU_BENCH
set -eu
bench=$1
command -v objdump >/dev/null || { echo "objdump not found: skipped"; exit 77; }
nm "$bench" 2>/dev/null | grep -q ' peak_worker_vnni512$' || { echo "no symbols in $bench: skipped"; exit 77; }

count() { # function, instruction
        objdump -d --no-show-raw-insn "$bench" | awk -v f="<$1>:" '$2 == f { on = 1; next } on && /^$/ { exit } on' |
                grep -c "$2" || true
}
fail=0
for w in "peak_worker_vnni512 vpdpbusd 12" "peak_worker_vnni256 vpdpbusd 12" "peak_worker_avx2 vpmaddubsw 6" \
	"peak_worker_amx tdpbssd 4"; do
        set -- $w
        n=$(count "$1" "$2")
        echo "$1: $n x $2 in the function (the peak counts $3 per loop)"
        [ "$n" -ge "$3" ] && [ $((n % $3)) -eq 0 ] || { echo "FAIL: $1 runs $n $2, the peak counts $3"; fail=1; }
done
exit $fail
