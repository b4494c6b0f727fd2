#!/bin/bash
# The main job: a prompt in, text out. Installs what the build needs, builds,
# and runs npu-run on MODEL (any Llama GGUF). Without MODEL it uses the small
# model in ../shared when present, and otherwise writes a small model with
# random weights (its text is gibberish, and it says so).
#   MODEL=path PROMPT="..." N=60 scripts/run.sh
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
exec build/daemon/tools/npu-run -m "$model" -p "${PROMPT:-Once upon a time}" -n "${N:-60}" --temp "${TEMP:-0}"
