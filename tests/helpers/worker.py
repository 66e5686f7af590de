"""The protocol of the 2-process workers in tests/dist/, both sides.

A worker is a script that ``helpers.launch.launch`` starts under `accelerate launch` (tests/ on its PYTHONPATH). It is
only its algorithm-specific part (trainer subclass, config, checks) around these steps::

    parser = worker_parser(__doc__)                    # --model, --output_dir, --use_cpu; add the worker's own
    cli = parser.parse_args()
    trainer = build_trainer(TrainerClass, cli, config, reward_funcs, train_dataset)
    trainer.train()
    ...                                                # the worker's checks (assert: a failing rank fails the launch)
    emit("TAG", {**rank_record(trainer), ...})         # one `TAG {json}` line per rank (or on rank 0 only)
    finish()                                           # tear the process group down

The test reads the lines back with ``records(proc.stdout, "TAG")`` (or ``tagged_records`` for the raw text).
"""

import argparse
import json
import os

from helpers.launch import OFFLINE_ENV

for _name, _value in OFFLINE_ENV.items():  # also when a worker is launched by hand, before transformers is imported
    os.environ.setdefault(_name, _value)


def _true(text: str) -> bool:
    return text.lower() == "true"


def worker_parser(description=None) -> argparse.ArgumentParser:
    """The arguments every worker takes; ``launch`` appends ``--use_cpu true`` for DDP on CPU (config "multi_gpu")."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the tiny model's folder")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--use_cpu", type=_true, default=False, help="true for DDP on CPU (gloo)")
    return parser


def build_trainer(trainer_class, cli, config, reward_funcs, train_dataset, **kwargs):
    """``trainer_class`` on the worker's model and its tokenizer."""
    from transformers import AutoTokenizer

    return trainer_class(
        model=cli.model,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=train_dataset,
        processing_class=AutoTokenizer.from_pretrained(cli.model),
        **kwargs,
    )


def rank_record(trainer) -> dict:
    """What every result line starts with: this rank, the world size the trainer sees, the steps it took."""
    return {
        "rank": trainer.accelerator.process_index,
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
    }


def emit(tag: str, record: dict) -> None:
    """Print ``tag {json}\\n`` in one write (< PIPE_BUF bytes), so that the ranks' lines cannot interleave on the
    shared pipe (print(text) under PYTHONUNBUFFERED would write the text and the newline separately)."""
    print(f"{tag} {json.dumps(record)}\n", end="", flush=True)


def finish() -> None:
    """End the worker as the recipes end theirs: one process of several ends here (``end_process``: the process
    group torn down, no interpreter finalization); one process tears down whatever group it has and returns."""
    import torch.distributed as dist

    from trl_ext.recipe.distributed import end_process, shutdown_distributed

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        end_process()
    shutdown_distributed()


def tagged_records(stdout, tag):
    """The text after each ``tag`` up to the end of its line, in order.

    Workers print ``tag + payload + "\\n"`` in one write (atomic on a pipe below PIPE_BUF), but another rank's
    unterminated output may precede it on the same line, so the tag is looked for anywhere in a line.
    """
    return [line.split(tag + " ", 1)[1] for line in stdout.splitlines() if tag + " " in line]


def records(stdout, tag) -> list[dict]:
    """``tagged_records`` read as JSON."""
    return [json.loads(r) for r in tagged_records(stdout, tag)]
