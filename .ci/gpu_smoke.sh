#!/usr/bin/env bash
# Superseded by `bash .ci/gpu_check.sh run` (docs/gpu_check.md), which runs what this script ran and more, time-boxed,
# with one summary. Kept only while README.md and docs/reliability.md still name this path: delete it with them.
echo "gpu_smoke.sh is superseded by: bash .ci/gpu_check.sh run (docs/gpu_check.md)" >&2
exec bash "$(dirname "$0")/gpu_check.sh" run "$@"
