"""Multi-process pieces of a recipe run: loading a model on one rank under ZeRO-3, making ``save_model`` write a full
model under ZeRO-3, one value agreed by all ranks, the per-rank ``RECIPE_RESULT`` line, and tearing the process group
down."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import NoReturn

from trl_ext.recipe.hardware import log

RESULT_TAG = "RECIPE_RESULT"


@contextlib.contextmanager
def zero3_init_disabled():
    """Let ``from_pretrained`` build an ordinary (unpartitioned) model while ZeRO-3 training arguments exist.

    Under ZeRO-3 with ``zero3_init_flag`` transformers partitions every model it loads across the ranks; a model
    loaded by the main process alone (for evaluation) would then wait for ranks that never join.
    """
    import transformers.integrations.deepspeed as hf_ds

    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved


def ensure_full_save(trainer) -> None:
    """Under ZeRO-3, make ``save_model`` gather the partitioned weights into one loadable checkpoint."""
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return
    plugin = trainer.accelerator.state.deepspeed_plugin
    zero = plugin.deepspeed_config.setdefault("zero_optimization", {})
    if str(zero.get("stage")) == "3" and zero.get("stage3_gather_16bit_weights_on_model_save") is not True:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        log("ZeRO-3: set stage3_gather_16bit_weights_on_model_save=true so that save_model writes a full model")


def max_over_processes(accelerator, value: float) -> float:
    """The largest ``value`` over all processes of ``accelerator`` (a collective: every process must call it at the
    same point). One process: ``value``."""
    if accelerator.num_processes == 1:
        return value
    import torch

    return float(accelerator.gather(torch.tensor([value], dtype=torch.float64, device=accelerator.device)).max())


def print_result(result: dict) -> None:
    """This rank's ``RECIPE_RESULT {json}`` line, for scripts and tests. One write: under PYTHONUNBUFFERED ``print``
    writes the text and the newline separately, and two ranks' lines could interleave on a shared pipe."""
    print(f"{RESULT_TAG} " + json.dumps(result) + "\n", end="", flush=True)


def end_process(code: int = 0) -> NoReturn:
    """End a finished program that ran as one process of several: tear the process group down
    (``shutdown_distributed``), run the ``atexit`` handlers (loggers, trackers) and flush the standard streams, then
    exit without the interpreter's finalization. With the group destroyed, a rank of a finished 2-process CPU run still
    aborted now and then while native objects of the collective stack were destroyed at interpreter exit ("terminate
    called without an active exception", exit -6; pytorch/pytorch#179291 describes that mechanism for gloo), and
    `accelerate launch` then reports the finished run as failed. Never returns: call it last, and only in a program
    (``trl_ext.recipe.train.main``), not in a library function whose caller may go on."""
    import atexit

    shutdown_distributed()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be written anyway
            pass
    os._exit(code)


def shutdown_distributed() -> None:
    """Tear the process group down explicitly before the interpreter exits: leaving it to interpreter shutdown
    sometimes aborted a rank after a finished 2-process CPU run ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
