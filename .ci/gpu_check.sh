#!/usr/bin/env bash
# The one GPU check: install trl-ext from wheels carried with the repo, run .ci/gpu_smoke.sh (every recipe in bf16
# on one GPU, ZeRO-3 over NCCL, a resume) and benchmarks/bench_scale.py (the trainers at Qwen2.5-0.5B's geometry),
# and write every log and table to one folder. For an offline CUDA machine whose image has torch (and accelerate,
# peft, tokenizers, safetensors, ...) but not trl, datasets or deepspeed, and an older transformers than the pin.
#
#   bash .ci/gpu_check.sh prepare          # here, with PyPI: wheels into .whl/ (git-ignored; about 20 MiB)
#   bash .ci/gpu_check.sh run [OUT_DIR]    # there, offline: install from .whl/, run both, results in OUT_DIR
#                                          # (default: $OUT, else /tmp/trl_ext_gpu_check); about 8 minutes (estimated)
# Status: prepared 2026-11-30 without a GPU. `prepare` (20 MiB of wheels) and the offline install into a Python 3.12
# venv with torch and transformers 5.17 (then shadowed by the carried 5.24) were tried on CPU; `run` has not
# been run on a GPU yet.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
# What the GPU image lacks (or has too old): the versions this machine's passing CPU suite uses, without their
# dependencies (the image has the rest).
CARRIED="trl transformers datasets dill multiprocess hjson pydantic pydantic_core annotated-types typing-inspection"

prepare() {
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    local pins
    pins=$(python3 -c "import sys; from importlib.metadata import version; print(' '.join(f'{n}=={version(n)}' for n in sys.argv[1:]))" $CARRIED) || return 1
    local deepspeed_pin
    deepspeed_pin=$(python3 -c "from importlib.metadata import version; print(version('deepspeed'))") || return 1
    echo "carrying: $pins deepspeed==$deepspeed_pin trl-ext"
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" $pins || return 1
    # deepspeed publishes an sdist only: build a pure-python wheel (its ops compile at run time, as on CPU)
    DS_BUILD_OPS=0 python3 -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELS" "deepspeed==$deepspeed_pin" || return 1
    rm -rf build  # a stale build/ folder (with deleted modules) would end up in the wheel
    python3 -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELS" . || return 1
    du -sh "$WHEELS"; ls "$WHEELS"
    local bytes; bytes=$(du -sb "$WHEELS" | cut -f1)
    [ "$bytes" -lt $((64 * 1024 * 1024)) ] || { echo "wheels take $bytes bytes: over the 64 MiB a device call carries"; return 1; }
}

install() {  # into a private folder put first on PYTHONPATH: newer transformers shadows the image's
    local site=/tmp/trl_ext_site
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$WHEELS"/*.whl || return 1
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH"
    python3 -c "import trl, transformers, datasets, deepspeed, trl_ext; print('trl', trl.__version__, 'transformers', transformers.__version__, 'deepspeed', deepspeed.__version__)"
}

run() {
    local out=${1:-${OUT:-/tmp/trl_ext_gpu_check}}
    mkdir -p "$out"
    { nvidia-smi || true; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
        > "$out/machine.txt" 2>&1
    install > "$out/install.log" 2>&1 || { echo "install failed:"; tail -20 "$out/install.log"; return 1; }
    cat "$out/install.log"
    local failed=0
    CHECK_TIMEOUT=${CHECK_TIMEOUT:-150} bash .ci/gpu_smoke.sh "$out/smoke" 2>&1 | tee "$out/smoke.log" || failed=$((failed + 1))
    timeout 300 python3 benchmarks/bench_scale.py --steps 4 --warmup 4 --completion_length 64 \
        --output "$out/bench_scale_gpu.md" > "$out/bench_scale.log" 2>&1 || failed=$((failed + 1))
    tail -12 "$out/bench_scale.log"
    echo "=== GPU check: $failed part(s) failed; logs and tables in $out ==="
    return "$failed"
}

case "${1:-}" in
    prepare) prepare ;;
    install) install ;;
    run) shift; run "$@" ;;
    *) echo "usage: bash .ci/gpu_check.sh prepare | run [OUT_DIR]"; exit 2 ;;
esac
