#!/usr/bin/env bash
# The GPU check (manual; CI has no GPU). How to run it and what it prints: docs/gpu_check.md.
#
#   bash .ci/gpu_check.sh prepare      # here, with PyPI: the wheels of .ci/gpu_wheels.txt into .whl/, checked against
#                                      # the device image (fails naming what is missing), packed into
#                                      # .gpu_carry/wheels.tar.xz (both git-ignored; the device call carries .gpu_carry)
#   bash .ci/gpu_check.sh run [...]    # there (offline, one GPU): install the archive into a private folder, then
#                                      # every part, time-boxed; OUT/summary.md + OUT/logs.tar.gz; exit = failed parts
#
# `run` tests this checkout (it comes first on PYTHONPATH, the carried packages after it), never an installed trl-ext.
# Options of `run`: python3 .ci/gpu_check.py run --help.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
ARCHIVE=.gpu_carry/wheels.tar.xz
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
DEVICE=(--python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}")

prepare() {
    local wheel_pins build_pins
    wheel_pins=$(python3 .ci/gpu_check.py pins wheel) || return 1
    build_pins=$(python3 .ci/gpu_check.py pins build) || return 1
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    echo "downloading: $(echo $wheel_pins)"
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: "${DEVICE[@]}" -d "$WHEELS" $wheel_pins || return 1
    local pin
    for pin in $build_pins; do  # sdist-only packages (deepspeed): a pure-python wheel, its ops compile at run time
        echo "building: $pin"
        DS_BUILD_OPS=0 python3 -m pip wheel -q --no-deps --no-build-isolation --no-binary=:all: -w "$WHEELS" "$pin" \
            || return 1
    done
    # 1. the wheels are exactly the pinned ones, and every requirement of trl-ext and of each carried
    #    wheel is met on the device (carried set + image lines)
    python3 .ci/gpu_check.py check-wheels "$WHEELS" || return 1
    # 2. one archive (wheels stored uncompressed inside one xz stream), under the size a device call can carry
    nice -n 10 python3 .ci/gpu_check.py pack "$WHEELS" "$ARCHIVE" || return 1
    # 3. the archive installs offline into a clean --target for the device's Python and platform (run's own code)
    local target; target=$(mktemp -d)
    python3 .ci/gpu_check.py install "$ARCHIVE" "$target/site" --only-binary=:all: "${DEVICE[@]}" \
        || { rm -rf "$target"; echo "FAIL: the offline --target install"; return 1; }
    echo "offline install into a clean --target: OK ($(du -sh "$target/site" | cut -f1) installed)"
    rm -rf "$target"
    ls -s --block-size=K "$WHEELS"
    echo "prepare: PASS"
}

case "${1:-}" in
    prepare) prepare ;;
    run) shift; exec python3 .ci/gpu_check.py run "$@" ;;
    *) echo "usage: bash .ci/gpu_check.sh prepare | run [--out DIR] [--only PART,...]"; exit 2 ;;
esac
