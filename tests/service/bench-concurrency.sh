#!/bin/bash
# SPDX-License-Identifier: MIT
# The concurrency benchmark: npud with MODEL on a private D-Bus bus, then
# npuctl bench --clients 1,2,4,8 (aggregate tokens/s, per-client ms/token,
# time to first token of a new client while 7 decode), then, with npud
# stopped, the engine's own decode step for batches of 1, 2, 4 and 8 beside
# its roofline (weights read at the measured bandwidth, or the batch's int8
# work at the measured peak). Prints figures only.
#   tests/service/bench-concurrency.sh MODEL [BUILD_DIR] [-- extra npuctl bench options]
# BUILD_DIR defaults to build/ beside this checkout. NPUD_THREADS,
# NPUD_KV_BUDGET_MB and NPUD_N_CTX set npud's configuration.
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
bench_args "$@"
set -- "${bench_opts[@]}"
for f in "$npud" "$npuctl"; do
	[ -x "$f" ] || { echo "$f is not built (ninja -C $build)" >&2; exit 1; }
done

: "${NPUD_THREADS:=$(nproc)}"
: "${NPUD_KV_BUDGET_MB:=1024}"
: "${NPUD_N_CTX:=0}"                      # 0: the model's context, at most 4096
NPUD_MAX_REQUESTS_PER_CLIENT=16
NPUD_MAX_QUEUED_TOKENS=1000000
NPUD_MAX_QUEUE=256
service_start || exit 1
echo "npud: $model, $NPUD_THREADS threads, KV budget $NPUD_KV_BUDGET_MB MB"
"$npuctl" --bus "$addr" bench --clients 1,2,4,8 "$@" || exit
service_cleanup
trap - EXIT
echo
echo "the engine alone (npu-bench --task batch-decode), against the machine's roofline:"
"$build/daemon/tools/npu-bench" -m "$model" --task batch-decode --batch-sizes 1,2,4,8 --pp 32 --tg 16 \
	--threads "$NPUD_THREADS"
