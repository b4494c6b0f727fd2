#!/bin/bash
# SPDX-License-Identifier: MIT
# Memory per connection: N requests (NPUD_MEMORY_REQUESTS, default 200; the
# issue's figure is for 1000) finish one after another on one
# connection, which stays (npud keeps its last max_finished_kept finished
# requests for their properties). With a 128k-token vocabulary (a synthetic
# model, npu-mkmodel --arch llama3 with Llama 3's vocabulary) a request's
# sampler alone is 1.5 MB: a finished request must not keep it. Prints
# npud's RSS before and after; fails past a bound of 32 MB of growth.
#   tests/service/memory.sh BUILD_DIR SHARED_DIR
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=checks.sh
. "$here/checks.sh"
checks_start "$@"
vocab=$shared/tokenizer/ggml-vocab-llama3.gguf
need_file "$vocab"
# shellcheck source=lib.sh
. "$here/lib.sh"

NPUD_KV_BUDGET_MB=16 NPUD_N_CTX=256 service_start || exit 1
if ! "$build/daemon/tools/npu-mkmodel" --arch llama3 --shape small --type f32 --vocab "$vocab" -o "$tmp/m.gguf" \
	>"$tmp/mkmodel.log" 2>&1; then
	bad "make-model" "$(tail -3 "$tmp/mkmodel.log")"
	service_stop
	checks_summary
	exit 1
fi
rss() { awk '/VmRSS/ {print $2}' /proc/"$npud_pid"/status; }
"$npuctl" --bus "$addr" load "$tmp/m.gguf" --name big --default >/dev/null 2>&1 ||
	{ bad "load" "cannot load the 128k-vocabulary model"; service_stop; checks_summary; exit 1; }
# one request first, so the model's own buffers are in the figure before
"$npuctl" --bus "$addr" generate -q --max-tokens 2 "Hello" >/dev/null 2>&1
before=$(rss)
n=${NPUD_MEMORY_REQUESTS:-200}
"$probe" "$addr" many "$n" 2 "Hello there" >"$tmp/many" 2>&1 &
many=$!
for i in $(seq $((n * 10))); do
	grep -q "^done\|^error" "$tmp/many" && break
	sleep 0.1
done
after=$(rss)
kill $many 2>/dev/null
wait $many 2>/dev/null
growth=$(((after - before) / 1024))
echo "# npud RSS: $((before / 1024)) MB before, $((after / 1024)) MB after $n finished requests on one connection (128256-token vocabulary)"
if grep -q "^done $n" "$tmp/many" && [ "$growth" -lt 32 ]; then
	ok "rss-after-$n-finished (+$growth MB)"
else
	bad "rss-after-$n-finished" "+$growth MB; $(tail -2 "$tmp/many" | tr '\n' ' ')"
fi
service_stop
checks_summary
[ "$failed" -eq 0 ]
