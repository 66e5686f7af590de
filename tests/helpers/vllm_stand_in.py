"""A stand-in for TRL's colocated vLLM engine: runs TRL's own ``VLLMGeneration.sync_weights`` against a trainer's
model and records the (name, shape) of every tensor pushed, without vLLM or a GPU. Shared by
tests/trainers/test_ppo.py and the 2-process PPO worker (tests/dist/ppo_worker.py)."""

from types import SimpleNamespace


def pushed_weights(trainer, vllm_generation_hook=None) -> list[tuple[str, tuple]]:
    """Build a ``VLLMGeneration`` around ``trainer.model`` whose engine only records ``load_weights`` calls, apply
    ``vllm_generation_hook`` to it (what the trainer does at init with a real engine), then sync."""
    from trl.distributed import DistributedBackend
    from trl.generation.vllm_generation import VLLMGeneration

    pushed = []

    class RecordingModel:
        def load_weights(self, weights):
            pushed.extend((name, tuple(tensor.shape)) for name, tensor in weights)

    runner = SimpleNamespace(model=RecordingModel())
    engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner)))
    generation = VLLMGeneration.__new__(VLLMGeneration)  # no engine start: everything sync_weights reads is set below
    generation.model = trainer.model
    generation.accelerator = trainer.accelerator
    generation._dist = DistributedBackend(trainer.accelerator)
    generation.mode = "colocate"
    generation.enable_sleep_mode = False
    generation.llm = SimpleNamespace(llm_engine=engine, reset_prefix_cache=lambda: None)
    if vllm_generation_hook is not None:
        vllm_generation_hook(generation)
    generation.sync_weights()
    return pushed


def expected_weights(model_path) -> list[tuple[str, tuple]]:
    """What a vLLM engine of the policy's architecture holds: the names and shapes in the policy's checkpoint (read
    from the safetensors headers, so no model is built, which under ZeRO-3 would come out partitioned)."""
    from pathlib import Path

    from safetensors import safe_open

    weights = []
    for file in sorted(Path(model_path).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            weights += [(name, tuple(f.get_slice(name).get_shape())) for name in f.keys()]
    return weights
