"""Tiny offline causal LMs for the embedded testbed: no model hub, no download, 2 CPU cores.

* ``build_tiny_model(out_dir)``: a byte-level BPE tokenizer trained on the synthetic GSM8K-format corpus (every digit
  is its own token), wrapped in ``PreTrainedTokenizerFast`` with a ChatML chat template, plus a randomly initialised
  ``LlamaForCausalLM`` (about 0.9M parameters); both saved with ``save_pretrained`` and loadable with the Auto classes.
* ``warm_start()``: SFT of that model with TRL's ``SFTTrainer`` on the synthetic train split, cached on disk under a
  key derived from its config, so RL starts from a model with partial competence.

The warm start's SFT data ends 75% of the solutions of multi-step problems with ``The answer is N.`` instead of
``#### N`` (what the prompt asks for); one-step solutions always use ``#### N``. Greedy decoding of the SFT'd model
then answers most multi-step problems in the wrong format (strict accuracy well below flexible), while sampling
still produces ``#### N`` now and then, so RL on the strict reward has a signal to move probability towards the
requested format for every question. Gains on this testbed are therefore mostly *format alignment*; the evaluator reports
flexible accuracy (last number) beside strict accuracy so that the nature of a gain is visible.
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
ALT_ENDING = "The answer is {answer}."
CACHE_VERSION = "4"


def default_cache_dir() -> Path:
    return Path(os.environ.get("TRL_EXT_CACHE", Path.home() / ".cache" / "trl_ext")).expanduser()


def _corpus(num_examples: int, seed: int) -> list[str]:
    from trl_ext.data.gsm8k import DEFAULT_INSTRUCTION
    from trl_ext.data.synthetic import generate_problems

    texts = [DEFAULT_INSTRUCTION, ALT_ENDING, 'End with "#### <number>".', "system\nuser\nassistant\n"]
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
    """Settings of the SFT warm start; the cache key is a hash of all of them."""

    seed: int = 0
    num_train_examples: int = 20000
    max_steps: int = 400
    batch_size: int = 64
    learning_rate: float = 3e-3
    # Solutions of problems with at least `alt_format_min_steps` steps end "The answer is N." instead of "#### N"
    # with probability `alt_format_prob` (see the module docstring).
    alt_format_min_steps: int = 2
    alt_format_prob: float = 0.75
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    vocab_size: int = 512

    def key(self) -> str:
        blob = json.dumps({"v": CACHE_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def sft_dataset(cfg: WarmStartConfig):
    """Prompt-completion conversational SFT data from the synthetic train split."""
    import datasets

    from trl_ext.data.gsm8k import load_gsm8k

    ds = load_gsm8k("synthetic", "train", num_examples=cfg.num_train_examples, seed=cfg.seed)
    rng = random.Random(cfg.seed)

    def completion(row):
        solution = row["solution"]
        steps = solution.count("\n")  # one reasoning line per step, then "#### N"
        if steps >= cfg.alt_format_min_steps and rng.random() < cfg.alt_format_prob:
            lines = solution.split("\n")[:-1]
            solution = "\n".join(lines + [ALT_ENDING.format(answer=row["answer"])])
        return {"completion": [{"role": "assistant", "content": solution}]}

    rows = [{"prompt": r["prompt"], **completion(r)} for r in ds]
    return datasets.Dataset.from_list(rows)


def _train_sft(cfg: WarmStartConfig, out_dir: Path) -> None:
    import torch
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    build_tiny_model(
        out_dir, cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size, cfg.vocab_size, cfg.seed
    )
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    args = SFTConfig(
        output_dir=str(out_dir / "sft_run"),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, cfg.max_steps // 20),
        weight_decay=0.0,
        logging_steps=max(1, cfg.max_steps // 10),
        save_strategy="no",
        report_to="none",
        bf16=False,
        seed=cfg.seed,
        max_length=256,
        completion_only_loss=True,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = SFTTrainer(model=str(out_dir), args=args, train_dataset=sft_dataset(cfg), processing_class=tokenizer)
    trainer.train()
    trainer.model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    shutil.rmtree(out_dir / "sft_run", ignore_errors=True)


def warm_start(cfg: WarmStartConfig | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the SFT'd tiny model for ``cfg``, training it first if it is not cached.

    Safe to call from several processes at once (a file lock serialises the build; the model directory appears
    atomically, so a crashed build never leaves a half-written cache entry).
    """
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
        logger.warning("trl_ext: building the tiny SFT warm start (once, cached at %s)", final)
        try:
            _train_sft(cfg, tmp)
            (tmp / "warm_start.json").write_text(
                json.dumps({"config": dataclasses.asdict(cfg), "sft_seconds": time.time() - start}, indent=2)
            )
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Build (or find in the cache) the tiny SFT warm start and evaluate it")
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_steps", type=int, default=WarmStartConfig.max_steps)
    parser.add_argument("--eval_limit", type=int, default=200)
    parser.add_argument("--output_dir", default=None, help="where the evaluation JSON goes (default: <model>/eval)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    start = time.time()
    path = warm_start(WarmStartConfig(seed=args.seed, max_steps=args.max_steps), args.cache_dir)
    print(f"warm start: {path} (ready after {time.time() - start:.0f} s)")
    from trl_ext.eval import evaluate_path

    summary = evaluate_path(
        str(path), source="synthetic", split="test", limit=args.eval_limit, output_dir=args.output_dir or path / "eval"
    )
    print(json.dumps({k: summary[k] for k in ("strict", "flexible", "format_rate")}, indent=2))


if __name__ == "__main__":
    main()
