#!/bin/bash
# The main job: a prompt in, text out, through the service. Installs what the
# build needs, builds, starts a private D-Bus bus with npud on it serving MODEL
# (any Llama GGUF), and asks it with `npuctl generate`; both stop at the end.
# Without MODEL it uses the small model in ../shared when present, and
# otherwise writes a small model with random weights (its text is gibberish,
# and it says so). OFFLINE=1 runs npu-run instead, without the daemon.
#   MODEL=path PROMPT="..." N=60 TEMP=0 scripts/run.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/install-deps.sh" >/dev/null
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

model=${MODEL:-}
if [ -z "$model" ]; then
	if [ -f "$root/../shared/models/aidreams260K-f32.gguf" ]; then
		model=$root/../shared/models/aidreams260K-f32.gguf
	else
		model=$root/build/random-small.gguf
		echo "note: no MODEL given and no ../shared model: using a small model with random weights ($model)" >&2
		[ -f "$model" ] || build/daemon/tools/npu-mkmodel --shape small --type f32 -o "$model"
	fi
fi
model=$(realpath "$model")
prompt=${PROMPT:-Once upon a time}
if [ "${OFFLINE:-0}" = 1 ]; then
	exec build/daemon/tools/npu-run -m "$model" -p "$prompt" -n "${N:-60}" --temp "${TEMP:-0}"
fi

# shellcheck source=tests/service/lib.sh
. "$root/tests/service/lib.sh"
npud=$root/build/daemon/npud/npud
npuctl=$root/build/client/npuctl
set +e # the cleanup on exit kills what may have gone already
service_start >&2 || exit 1
"$npuctl" --bus "$addr" generate --temp "${TEMP:-0}" --max-tokens "${N:-60}" "$prompt"
rc=$?
exit $rc
