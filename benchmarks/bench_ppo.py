"""PPO vs GRPO cost at the same number of completions and tokens per step, measured side by side in one run.

Both trainers get the same model, prompts, batch (``--completions`` completions per step) and completion length
(generation is forced to exactly ``--length`` tokens, so both see the same tokens). GRPO uses ``beta=0.04`` (a
reference model, as in DeepSeekMath) and ``--group`` completions per prompt; PPO uses ``kl_coef=0.05`` (reference
model) with one completion per prompt, plus a critic of the policy's size. Each variant runs in its own subprocess,
alternating GRPO/PPO for ``--rounds`` rounds; step time is the median wall time of an optimizer step after
``--warmup`` steps, memory the peak RSS growth of the process over its RSS before the trainer was built.

Expected ratios (printed beside the measured ones), with N = matmul parameters of the policy (its LM head
included), Nc = those of the critic, one forward = 2 FLOPs per parameter and token, forward+backward = 6:

* train-side FLOPs: GRPO = ref fwd 2N + policy fwd/bwd 6N; PPO adds the pi_old forward (2N, skipped by GRPO when
  on-policy), the critic's rollout forward (2Nc) and its forward/backward (6Nc);
* with generation counted as one more forward (2N) on both sides;
* memory: fp32 weights + grads + Adam moments = 16 bytes per trainable parameter, 4 per reference parameter.

Usage: ``python benchmarks/bench_ppo.py [--steps 4 --rounds 2]`` (about 2-3 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_variant(algo: str, model_path: str, cli) -> dict:
    """Runs in a subprocess: train ``warmup + steps`` steps of one algorithm, return timings and memory."""
    import datasets
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from trl_ext import PPOConfig, PPOTrainer

    tok = AutoTokenizer.from_pretrained(model_path)
    rows = [{"prompt": [{"role": "user", "content": f"Problem {i}: add {i % 9} and {i % 7}."}]} for i in range(512)]
    dataset = datasets.Dataset.from_list(rows)

    def reward(completions, **kw):
        return [sum(ch.isdigit() for ch in c[0]["content"]) / 10 for c in completions]

    common = dict(
        output_dir=tempfile.mkdtemp(), bf16=False, use_cpu=True, report_to="none", save_strategy="no",
        disable_tqdm=True, gradient_checkpointing=False, per_device_train_batch_size=cli.completions,
        max_completion_length=cli.length, max_steps=cli.warmup + cli.steps, learning_rate=1e-5, logging_steps=1,
        generation_kwargs={"min_new_tokens": cli.length}, seed=0,
    )
    if algo == "grpo":
        args = GRPOConfig(num_generations=cli.group, beta=0.04, **common)
        trainer_cls = GRPOTrainer
    else:
        args = PPOConfig(num_generations=1, kl_coef=0.05, **common)
        trainer_cls = PPOTrainer

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self.t0 = [], 0.0

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.t0)

    base_rss = rss_mb()
    trainer = trainer_cls(model=model_path, reward_funcs=reward, args=args, train_dataset=dataset,
                          processing_class=tok, callbacks=[Timer()])
    timer = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, Timer))
    trainer.train()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return {
        "step_s": statistics.median(timer.times[cli.warmup :]),
        "mem_mb": peak_rss - base_rss,
        "tokens_per_step": tokens[-1] / len(tokens),
        "mean_length": statistics.mean(lengths),
    }


def count_params(model_path: str) -> tuple[int, int, int, int]:
    """(policy matmul params incl. LM head, critic matmul params, policy total params, critic total params)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path)
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight.numel()
    body = total - embed  # tied embeddings: the LM head reuses them (counted once below as a matmul)
    head = model.get_output_embeddings().weight.numel()
    critic = body + model.config.hidden_size + 1  # backbone without the LM head matmul, plus a scalar head
    return body + head, critic, total, total + model.config.hidden_size + 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--completions", type=int, default=16)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    cli = parser.parse_args()

    if cli.variant:  # child process
        print("RESULT " + json.dumps(run_variant(cli.variant, cli.model, cli)))
        return

    from trl_ext.models.tiny import build_tiny_model

    model_path = str(build_tiny_model(tempfile.mkdtemp(), hidden_size=cli.hidden, num_layers=cli.layers,
                                      num_heads=max(1, cli.hidden // 64), intermediate_size=3 * cli.hidden))
    n, nc, total, critic_total = count_params(model_path)
    results = {"grpo": [], "ppo": []}
    passthrough = [f"--{k}={getattr(cli, k)}" for k in ("completions", "group", "length", "steps", "warmup")]
    for _ in range(cli.rounds):
        for algo in ("grpo", "ppo"):
            out = subprocess.run([sys.executable, __file__, "--variant", algo, "--model", model_path, *passthrough],
                                 capture_output=True, text=True, check=False)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                raise SystemExit(f"{algo} failed:\n{out.stderr[-4000:]}")
            results[algo].append(json.loads(line[0][7:]))

    def med(algo, key):
        return statistics.median(r[key] for r in results[algo])

    g_step, p_step = med("grpo", "step_s"), med("ppo", "step_s")
    g_mem, p_mem = med("grpo", "mem_mb"), med("ppo", "mem_mb")
    train_expected = (2 * n + 2 * n + 2 * nc + 6 * n + 6 * nc) / (2 * n + 6 * n)
    with_gen_expected = (2 * n + 2 * n + 2 * n + 2 * nc + 6 * n + 6 * nc) / (2 * n + 2 * n + 6 * n)
    mem_expected = (16 * total + 16 * critic_total + 4 * total) / (16 * total + 4 * total)
    print(f"model: policy {total / 1e6:.2f}M params (matmul N={n / 1e6:.2f}M), critic Nc={nc / 1e6:.2f}M; "
          f"{cli.completions} completions x {cli.length} tokens per step; GRPO groups of {cli.group}; "
          f"{cli.rounds} rounds x {cli.steps} timed steps each")
    print(f"tokens/step: GRPO {med('grpo', 'tokens_per_step'):.0f}, PPO {med('ppo', 'tokens_per_step'):.0f}; "
          f"mean completion length: GRPO {med('grpo', 'mean_length'):.1f}, PPO {med('ppo', 'mean_length'):.1f}")
    print(f"{'':28s}{'GRPO':>10s}{'PPO':>10s}{'ratio':>9s}{'expected':>10s}")
    print(f"{'step time (s)':28s}{g_step:10.3f}{p_step:10.3f}{p_step / g_step:9.2f}"
          f"{with_gen_expected:10.2f}  (FLOPs incl. generation as 1 fwd; train side only: {train_expected:.2f})")
    print(f"{'peak memory growth (MB)':28s}{g_mem:10.1f}{p_mem:10.1f}{p_mem / g_mem:9.2f}{mem_expected:10.2f}"
          f"  (16 B/trainable param + 4 B/ref param; activations excluded)")
    print("per-round step times (s): " + json.dumps({a: [round(r['step_s'], 3) for r in v] for a, v in results.items()}))


if __name__ == "__main__":
    main()
