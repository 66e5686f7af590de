"""Tiny offline causal LMs for the embedded testbed: no model hub, no download, 2 CPU cores.

* ``build_tiny_model(out_dir)``: a byte-level BPE tokenizer trained on the synthetic GSM8K-format corpus (every digit
  is its own token), wrapped in ``PreTrainedTokenizerFast`` with a ChatML chat template, plus a randomly initialised
  ``LlamaForCausalLM`` (about 0.9M parameters); both saved with ``save_pretrained`` and loadable with the Auto classes.
* ``warm_start()``: SFT of that model with TRL's ``SFTTrainer`` on the synthetic train split, cached on disk under a
  key derived from its config, so RL starts from a model with partial competence.

**Two strategies, one format ("show your work").** Every SFT solution ends in ``#### N``, but the warm start learns
two ways to get there. Stage 1 trains on worked solutions only (one ``a + b = c`` line per step, then ``#### N``),
so the model becomes competent at the worked route. Stage 2 goes on with a mix in which ``direct_fraction`` of the
solutions are the bare answer (``#### N``, no working). Direct answers need the whole computation in one token
prediction, which a 0.9M-parameter model gets right mostly on one-step problems; worked answers are right far
more often. The start model then answers directly on a large share of the problems (greedy), so its accuracy is
low, while sampling still shows the worked route now and then: RL on the final answer alone can teach it to
*choose* to work step by step, which raises answer correctness (flexible accuracy), not just the format (strict and
flexible stay equal: both routes end in ``#### N``). A small-scale version of what RL does for chain of thought in
large models; it does not teach new arithmetic.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# ChatML, as Qwen2.5-Instruct and SmolLM2-Instruct use it; `add_generation_prompt` opens the assistant turn.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CACHE_VERSION = "6"


def default_cache_dir() -> Path:
    return Path(os.environ.get("TRL_EXT_CACHE", Path.home() / ".cache" / "trl_ext")).expanduser()


def _corpus(num_examples: int, seed: int) -> list[str]:
    from trl_ext.data.gsm8k import DEFAULT_INSTRUCTION
    from trl_ext.data.synthetic import generate_problems

    # "The answer is {answer}." stays in the corpus from an earlier testbed: it keeps the tokenizer (and with it every
    # random tiny model the tests build) exactly as it was.
    texts = [DEFAULT_INSTRUCTION, "The answer is {answer}.", 'End with "#### <number>".', "system\nuser\nassistant\n"]
    for row in generate_problems(num_examples, "train", seed=seed, max_steps=4, max_operand=50):
        texts += [row["question"], row["answer"]]
    return texts


def build_tokenizer(vocab_size: int = 512, seed: int = 0):
    """Byte-level BPE with individual digits, trained on the synthetic corpus, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Digits first, so that every digit is one token (arithmetic stays learnable), then byte-level BPE.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(4000, seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=512,
    )


def build_tiny_model(
    out_dir: str | os.PathLike,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int = 384,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Build and save a randomly initialised tiny ``LlamaForCausalLM`` with its tokenizer; returns ``out_dir``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(vocab_size, seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@dataclasses.dataclass
class WarmStartConfig:
    """Settings of the SFT warm start; the cache key is a hash of all of them (see the module docstring)."""

    seed: int = 0
    num_train_examples: int = 20000
    batch_size: int = 64
    # Stage 1: worked solutions only, until the worked route is competent.
    worked_steps: int = 400
    worked_learning_rate: float = 3e-3
    # Stage 2: `direct_fraction` of the solutions are the bare "#### N", the rest worked.
    mix_steps: int = 250
    mix_learning_rate: float = 2e-3
    direct_fraction: float = 0.6
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    vocab_size: int = 512

    @property
    def total_steps(self) -> int:
        return self.worked_steps + self.mix_steps

    def key(self) -> str:
        blob = json.dumps({"v": CACHE_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def direct_solution(solution: str) -> str:
    """The bare final-answer line of a GSM8K-style solution (``"3 + 6 = 9\n#### 9"`` -> ``"#### 9"``)."""
    return solution.strip().split("\n")[-1]


def sft_dataset(cfg: WarmStartConfig, direct_fraction: float, stage: int):
    """Prompt-completion conversational SFT data from the synthetic train split: each solution is replaced by its
    bare answer line with probability ``direct_fraction`` (a stream of its own per stage)."""
    import datasets

    from trl_ext.data.gsm8k import load_gsm8k

    ds = load_gsm8k("synthetic", "train", num_examples=cfg.num_train_examples, seed=cfg.seed)
    rng = random.Random(f"{cfg.seed}-stage{stage}")
    rows = []
    for r in ds:
        solution = direct_solution(r["solution"]) if rng.random() < direct_fraction else r["solution"]
        rows.append({"prompt": r["prompt"], "completion": [{"role": "assistant", "content": solution}]})
    return datasets.Dataset.from_list(rows)


def _progress_callback(total_steps: int):
    """A ``TrainerCallback`` driving one tqdm bar (with its time estimate) over both SFT stages."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self):
            self.bar = tqdm(total=total_steps, desc="trl_ext warm start (SFT)", unit="step", mininterval=5)

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(1)

    return Progress()


def sft_stage(cfg: WarmStartConfig, model_dir: Path, stage: int, callbacks=()) -> None:
    """Run SFT stage 1 (worked solutions only) or 2 (the direct/worked mix) on the model saved in ``model_dir``, and
    save the result back there."""
    import torch
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    steps, lr, direct_fraction = {
        1: (cfg.worked_steps, cfg.worked_learning_rate, 0.0),
        2: (cfg.mix_steps, cfg.mix_learning_rate, cfg.direct_fraction),
    }[stage]
    if steps <= 0:
        return
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    args = SFTConfig(
        output_dir=str(model_dir / "sft_run"),
        max_steps=steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=lr,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 20),
        weight_decay=0.0,
        logging_steps=max(1, steps // 5),
        save_strategy="no",
        report_to="none",
        bf16=False,
        seed=cfg.seed + stage,
        max_length=256,
        completion_only_loss=True,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = SFTTrainer(model=str(model_dir), args=args, train_dataset=sft_dataset(cfg, direct_fraction, stage),
                         processing_class=tokenizer, callbacks=list(callbacks))
    trainer.train()
    trainer.model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    shutil.rmtree(model_dir / "sft_run", ignore_errors=True)


def _train_sft(cfg: WarmStartConfig, out_dir: Path) -> None:
    build_tiny_model(
        out_dir, cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size, cfg.vocab_size, cfg.seed
    )
    progress = _progress_callback(cfg.total_steps)
    for stage in (1, 2):
        sft_stage(cfg, out_dir, stage, callbacks=[progress])
    progress.bar.close()


# Environment variables through which a launcher (torchrun, `accelerate launch`, DeepSpeed; MPI launchers, whose
# world size accelerate reads for multi-process CPU runs) makes a process join a process group: the warm-start build
# runs without them.
_DISTRIBUTED_ENV_PREFIXES = ("ACCELERATE_", "TORCHELASTIC_", "OMPI_COMM_WORLD_", "MV2_COMM_WORLD_", "PMI_",
                             "MPI_LOCAL")
_DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                    "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS")


def build_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default ``os.environ``) without the variables that make a process a rank of a launch, and, when this
    trl_ext is a source checkout, with it first on ``PYTHONPATH`` (the build runs the same code as its caller; an
    installed one is found as it is, without putting site-packages ahead of the standard library)."""
    env = dict(os.environ if env is None else env)
    for key in list(env):
        if key in _DISTRIBUTED_ENV or key.startswith(_DISTRIBUTED_ENV_PREFIXES):
            del env[key]
    package_root = Path(__file__).resolve().parents[2]
    if (package_root / "pyproject.toml").is_file():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_root), env.get("PYTHONPATH")) if p)
    return env


def build_warm_start(cfg: WarmStartConfig, out_dir: str | os.PathLike) -> None:
    """Train the warm start for ``cfg`` into ``out_dir`` (no cache, no lock: ``warm_start`` calls this in a process
    of its own). Uses every core this process may run on."""
    import datasets
    import torch

    out_dir = Path(out_dir)
    start = time.time()
    datasets.disable_progress_bars()  # one bar for the whole build, not one per dataset map
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(torch.get_num_threads(), cores))
    _train_sft(cfg, out_dir)
    (out_dir / "warm_start.json").write_text(
        json.dumps({"config": dataclasses.asdict(cfg), "key": cfg.key(), "sft_seconds": time.time() - start},
                   indent=2)
    )


def warm_start(cfg: WarmStartConfig | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the SFT'd tiny model for ``cfg``, training it first if it is not cached.

    Safe to call from every rank of a launch and from parallel processes: a file lock serialises the build, so it
    happens once, and the model directory appears atomically, so a crashed build never leaves a half-written cache
    entry. The build runs in a child process with the launcher's distributed environment removed
    (``build_environment``): inside a rank, ``SFTTrainer`` would wait at barriers for the other ranks, which wait
    for the lock (a deadlock on the first multi-process run of a fresh machine). The build shows a progress bar
    with a time estimate (about 5 minutes on 2 CPU cores).
    """
    import subprocess
    import sys

    from filelock import FileLock

    cfg = cfg or WarmStartConfig()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"tiny-sft-{cfg.key()}"
    with FileLock(str(final) + ".lock"):
        if (final / "config.json").exists():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=root))
        start = time.time()
        logger.warning(
            "trl_ext: building the embedded warm start (%d SFT steps, once; cached at %s; to rebuild, delete that "
            "folder or run `python -m trl_ext.models.tiny --rebuild`)", cfg.total_steps, final
        )
        try:
            cmd = [sys.executable, "-m", "trl_ext.models.tiny", "--build_into", str(tmp),
                   "--build_config", json.dumps(dataclasses.asdict(cfg))]
            proc = subprocess.run(cmd, env=build_environment())
            if proc.returncode != 0 or not (tmp / "warm_start.json").exists():
                raise RuntimeError(f"building the embedded warm start failed (exit {proc.returncode}; its output is "
                                   f"above): {' '.join(cmd[:4])} ...")
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.warning("trl_ext: warm start built in %.0f s: %s", time.time() - start, final)
    return final


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Build (or find in the cache) the embedded warm start and evaluate it on the held-out split"
    )
    parser.add_argument("--cache_dir", default=None, help="default: $TRL_EXT_CACHE or ~/.cache/trl_ext")
    parser.add_argument("--seed", type=int, default=WarmStartConfig.seed)
    parser.add_argument("--rebuild", action="store_true", help="delete the cached model for these settings first")
    parser.add_argument("--split", default="test", help="held-out split to evaluate: test or validation")
    parser.add_argument("--eval_limit", type=int, default=200)
    parser.add_argument("--output_dir", default=None, help="where the evaluation JSON goes (default: <model>/eval)")
    # warm_start()'s child process: train into this folder with these settings, nothing else (no cache, no lock)
    parser.add_argument("--build_into", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--build_config", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.build_into:
        build_warm_start(WarmStartConfig(**json.loads(args.build_config)), args.build_into)
        return
    cfg = WarmStartConfig(seed=args.seed)
    if args.rebuild:
        root = Path(args.cache_dir) if args.cache_dir is not None else default_cache_dir()
        shutil.rmtree(root / f"tiny-sft-{cfg.key()}", ignore_errors=True)
    start = time.time()
    path = warm_start(cfg, args.cache_dir)
    print(f"warm start: {path} (ready after {time.time() - start:.0f} s)")
    from trl_ext.eval import evaluate_path, format_summary

    out = Path(args.output_dir) if args.output_dir else path / "eval"
    for k, name in ((1, "greedy"), (4, "sampled")):
        summary = evaluate_path(str(path), source="synthetic", split=args.split, limit=args.eval_limit, num_samples=k,
                                max_new_tokens=64, output_dir=out / name, progress=False)
        strategy = summary["by_strategy"]
        print(f"{name}:\n{format_summary(summary)}\n  shows work (first completion) {100 * summary['shows_work']:.1f}%;"
              f" right when worked {strategy['worked']['flexible']}, when direct {strategy['direct']['flexible']}")


if __name__ == "__main__":
    main()
