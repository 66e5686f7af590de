"""What each trainer costs per step at a realistic size, side by side: GRPO (stock TRL), DAPO (keep rate 1 and about
0.5), GSPO (4 updates per rollout) and PPO (critic included), at equal completions per optimizer step and equal,
forced completion length, so that random weights cannot make the runs differ.

    python benchmarks/bench_scale.py                        # GPU: Qwen2.5-0.5B geometry in bf16; CPU: "small"
    python benchmarks/bench_scale.py --geometry tiny --steps 2 --output docs/results/bench_scale_cpu.md

The model is randomly initialised with the geometry's published architecture (no weights are needed to measure
cost; `Qwen2ForCausalLM`), the tokenizer a word-level one with the geometry's vocabulary size, built offline. Each
trainer runs in a process of its own (clean peak memory) for `--warmup` + `--steps` optimizer steps; only the last
`--steps` are timed. Per optimizer step: generation (`GRPOTrainer._generate`), scoring (`_calculate_rewards`), the
rest of the rollout (old/reference log-probs, PPO's critic values and GAE, DAPO's gathers) and training (the
remainder of the step). Generation uses Hugging Face `generate` for every trainer (vLLM is not part of the
comparison). The ratio to GRPO is printed beside the ratio the FLOPs and parameter counts predict.
"""

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", WANDB_MODE="disabled")

GEOMETRIES = {
    # Qwen2.5-0.5B-Instruct's config.json: 494M parameters, tied embeddings
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, rope_theta=1e6, tie_word_embeddings=True),
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=32000, rope_theta=1e6, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, vocab_size=4096, rope_theta=1e6, tie_word_embeddings=True),
}
ALGOS = ["grpo", "dapo", "dapo_keep_half", "gspo", "ppo"]
PROMPT_WORDS = 32


def build_model(geometry: str, out: Path, bf16: bool) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from trl_ext.models.tiny import CHAT_TEMPLATE, SPECIAL_TOKENS

    sizes = GEOMETRIES[geometry]
    specials = [*SPECIAL_TOKENS, "[UNK]"]
    vocab = {token: i for i, token in enumerate(specials)}
    vocab.update({f"w{i}": len(specials) + i for i in range(sizes["vocab_size"] - len(specials))})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        unk_token="[UNK]", chat_template=CHAT_TEMPLATE, padding_side="left")
    config = Qwen2Config(**sizes, max_position_embeddings=4096, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16 if bf16 else torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def controlled_reward(completions, flat, **kwargs):
    """0 for prompts marked flat (their group is all-equal: DAPO drops it), a fresh random number otherwise."""
    return [0.0 if f else random.random() for f in flat]


def run_one(algo: str, args) -> dict:
    """One trainer in this process; returns its timings, memory and parameter counts."""
    import datasets
    import torch
    from transformers import AutoTokenizer

    from trl_ext.recipe.algorithms import get_algorithm

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rng = random.Random(0)
    keep = 0.5 if algo == "dapo_keep_half" else 1.0
    rows = [{"prompt": [{"role": "user", "content": " ".join(f"w{rng.randrange(1000)}" for _ in range(PROMPT_WORDS))}],
             "flat": rng.random() >= keep} for _ in range(4096)]
    dataset = datasets.Dataset.from_list(rows)
    group = 1 if algo == "ppo" else args.num_generations
    common = dict(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.completions, num_generations=group,
        max_completion_length=args.completion_length, learning_rate=1e-6, max_steps=args.warmup + args.steps,
        logging_steps=1, save_strategy="no", report_to="none", bf16=cuda and args.bf16, use_cpu=not cuda,
        gradient_checkpointing=cuda, disable_tqdm=True, seed=0, dataloader_num_workers=0, beta=0.0,
        generation_kwargs={"min_new_tokens": args.completion_length},  # fixed length: no early EOS
    )
    algorithm = get_algorithm("dapo" if algo == "dapo_keep_half" else algo)
    config_class, trainer_class = algorithm.config_class(), algorithm.trainer_class()
    extra = {"kl_coef": 0.0} if algo == "ppo" else {}
    trainer = trainer_class(model=args.model, reward_funcs=controlled_reward, train_dataset=dataset,
                            args=config_class(**common, **extra), processing_class=tokenizer)

    intervals = {name: [] for name in ("_generate", "_calculate_rewards", "_generate_and_score_completions")}
    for name, spans in intervals.items():
        method = getattr(trainer, name)

        def timed(*a, _method=method, _spans=spans, **k):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = _method(*a, **k)
            if cuda:
                torch.cuda.synchronize()
            _spans.append((start, time.perf_counter()))
            return out

        setattr(trainer, name, timed)
    from transformers import TrainerCallback

    step_ends = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            step_ends.append(time.perf_counter())

    trainer.add_callback(StepClock())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    window = (step_ends[args.warmup - 1], step_ends[-1])

    def inside(name):
        return sum(max(0.0, min(b, window[1]) - max(a, window[0])) for a, b in intervals[name])

    total = window[1] - window[0]
    rollout = inside("_generate_and_score_completions")
    generation, scoring = inside("_generate"), inside("_calculate_rewards")
    import resource

    policy = sum(p.numel() for n, p in trainer.model.named_parameters() if not n.startswith("ppo_critic."))
    critic = sum(p.numel() for n, p in trainer.model.named_parameters() if n.startswith("ppo_critic."))
    # the critic's token embedding is a lookup (no FLOPs); the policy's, tied to its output layer, is a matmul
    critic_lookup = sum(p.numel() for n, p in trainer.model.named_parameters()
                        if n.startswith("ppo_critic.") and n.endswith("embed_tokens.weight"))
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    rounds = [h["dapo/generation_rounds"] for h in trainer.state.log_history if "dapo/generation_rounds" in h]
    return {
        "algo": algo, "steps": args.steps, "step_s": total / args.steps, "generation_s": generation / args.steps,
        "scoring_s": scoring / args.steps, "other_rollout_s": (rollout - generation - scoring) / args.steps,
        "training_s": (total - rollout) / args.steps,
        "completion_tokens_per_s": args.completions * args.completion_length * args.steps / total,
        "peak_memory_mb": (torch.cuda.max_memory_allocated() / 2**20 if cuda
                           else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_memory_kind": "CUDA allocated" if cuda else "CPU RSS",
        "policy_params": policy, "critic_params": critic, "critic_compute_params": critic - critic_lookup,
        "trainable_params": trainable,
        "generation_rounds": sum(rounds[args.warmup:]) / max(1, len(rounds[args.warmup:])) if rounds else 1.0,
    }


def expected(row: dict, grpo: dict) -> dict:
    """What the ratio to GRPO should be from counting: per completion token, generation costs ~2N FLOPs per
    generated token (N policy parameters, the tied embedding counted once as the output layer) times the generation
    rounds, a forward+backward pass 6N; GSPO's off-policy updates add a forward for the old log-probs (2N); PPO adds
    the critic (C parameters that do arithmetic: its embedding is only a lookup): a forward at the rollout and a
    forward+backward in the loss (8C). Parameters and Adam state scale with the trainable parameters. At small sizes
    fixed per-step costs (Python, kernel launches, generation's per-token loop) flatten every ratio towards 1."""
    n, c = row["policy_params"], row["critic_compute_params"]
    extra = {"gspo": 2 * n, "ppo": 8 * c}.get(row["algo"], 0)
    return {"generation": row["generation_rounds"], "training": (6 * n + extra) / (6 * n),
            "params_and_adam": row["trainable_params"] / grpo["trainable_params"]}


def table(rows: list[dict], args, header: str) -> str:
    grpo = next(r for r in rows if r["algo"] == "grpo")
    lines = [header, "",
             "| trainer | step s | generation s | scoring s | other rollout s | training s | completion tokens/s | "
             f"peak memory MB ({rows[0]['peak_memory_kind']}) | step time / GRPO | expected: generation x, training "
             "FLOPs x, parameters and Adam state x |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = expected(r, grpo)
        lines.append(
            f"| {r['algo']} | {r['step_s']:.3f} | {r['generation_s']:.3f} | {r['scoring_s']:.4f} | "
            f"{r['other_rollout_s']:.3f} | {r['training_s']:.3f} | {r['completion_tokens_per_s']:.0f} | "
            f"{r['peak_memory_mb']:.0f} | {r['step_s'] / grpo['step_s']:.2f} | {e['generation']:.2f}, "
            f"{e['training']:.2f}, {e['params_and_adam']:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--geometry", choices=sorted(GEOMETRIES), default=None,
                        help="default: qwen2.5-0.5b on a GPU, small on CPU")
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--completions", type=int, default=16, help="completions per optimizer step")
    parser.add_argument("--num_generations", type=int, default=8)
    parser.add_argument("--completion_length", type=int, default=None, help="default: 256 on a GPU, 32 on CPU")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps (a multiple of 4: GSPO's rollout)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed optimizer steps first")
    parser.add_argument("--no_bf16", dest="bf16", action="store_false")
    parser.add_argument("--output", default=None, help="also write the Markdown table (and a .json beside it) here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one trainer, print JSON
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    args.geometry = args.geometry or ("qwen2.5-0.5b" if cuda else "small")
    args.completion_length = args.completion_length or (256 if cuda else 32)
    if args.one:
        print("BENCH_SCALE " + json.dumps(run_one(args.one, args)), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(args.geometry, Path(tmp) / "model", cuda and args.bf16)
        rows = []
        for algo in args.algos.split(","):
            cmd = [sys.executable, __file__, "--one", algo, "--model", str(model), "--geometry", args.geometry,
                   "--completions", str(args.completions), "--num_generations", str(args.num_generations),
                   "--completion_length", str(args.completion_length), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), *([] if args.bf16 else ["--no_bf16"])]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            found = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_SCALE ")]
            if proc.returncode != 0 or not found:
                raise RuntimeError(f"{algo} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
            rows.append(json.loads(found[-1][len("BENCH_SCALE "):]))
            print(f"{algo}: {rows[-1]['step_s']:.3f} s/step", flush=True)
    device = torch.cuda.get_device_name(0) if cuda else f"{os.cpu_count()} CPU cores ({platform.machine()})"
    precision = "bf16" if cuda and args.bf16 else "fp32"
    header = (f"# Trainer step cost at the `{args.geometry}` geometry\n\n"
              f"{device}, torch {torch.__version__}, {precision}; {rows[0]['policy_params'] / 1e6:.1f}M policy "
              f"parameters; {args.completions} completions of exactly {args.completion_length} tokens per optimizer "
              f"step (groups of {args.num_generations}; PPO: 1), {args.steps} timed steps after {args.warmup}. "
              f"Command: `python benchmarks/bench_scale.py {' '.join(sys.argv[1:])}`.")
    text = table(rows, args, header)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
        Path(args.output).with_suffix(".json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
