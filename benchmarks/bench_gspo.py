"""Step time of GSPOTrainer vs stock GRPOTrainer at identical settings (same GSPOConfig, same tiny model, same seeds).

Both trainers get the same GSPOConfig (importance_sampling_level="sequence", loss_type="grpo", 4 minibatch updates per
rollout batch), so the only difference is GSPOTrainer's code path. The two are measured side by side in one process,
interleaved one optimizer step at a time (order alternating, same seed for both at each rollout, so both generate the
same completions and compute the same losses); the unit compared is one rollout batch (generation + 4 updates), and
the headline ratio is the median over rollouts of the per-rollout ratio (pairing cancels load drift on a shared
machine; run with --control for the noise level). A second, smaller measurement times the loss
(forward + backward) with per-token advantages: GSPOTrainer's GSPO-token path vs TRL's stock sequence path.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_gspo.py [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(key, "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def length_reward(completions, **kwargs):
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float(len(t)) / 10.0 for t in texts]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="rollout batches per trainer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--control", action="store_true", help="A/A control: a second stock GRPOTrainer in place of GSPOTrainer"
    )
    parser.add_argument("--max_completion_length", type=int, default=32)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoTokenizer, PrinterCallback, set_seed
    from trl import GRPOTrainer

    from trl_ext import GSPOConfig, GSPOTrainer
    from trl_ext.data.gsm8k import load_gsm8k
    from trl_ext.models.tiny import build_tiny_model

    torch.set_num_threads(args.threads)
    work = tempfile.mkdtemp(prefix="bench_gspo_")
    model_path = str(build_tiny_model(os.path.join(work, "model")))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dataset = load_gsm8k("synthetic", "train", num_examples=64)
    config = GSPOConfig(
        output_dir=os.path.join(work, "out"),
        per_device_train_batch_size=8,
        num_generations=8,
        max_completion_length=args.max_completion_length,
        max_steps=4,
        learning_rate=1e-4,
        logging_steps=4,
        bf16=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    trainers = {}
    for name, cls in (("GRPOTrainer", GRPOTrainer), ("GSPOTrainer", GRPOTrainer if args.control else GSPOTrainer)):
        set_seed(0)
        trainer = cls(
            model=model_path,
            reward_funcs=length_reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()  # warm-up: one rollout batch; also builds the optimizer used below
        trainers[name] = (trainer, iter(trainer.get_train_dataloader()))
    names = list(trainers)

    def one_step(name):
        """One optimizer step as the Trainer loop does it: rollout (every steps_per_generation) + update."""
        trainer, batches = trainers[name]
        loss = trainer.training_step(trainer.model, next(batches), None)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
        return loss.item()

    # Interleave at the granularity of single optimizer steps, so that both trainers see the same machine load;
    # a rollout batch (generation + steps_per_generation updates) is the unit that is compared.
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    losses = {name: [] for name in names}
    for rollout in range(args.repeats):
        for name in names:
            wall[name].append(0.0)
            cpu[name].append(0.0)
        for k in range(config.steps_per_generation):
            for name in names if (rollout + k) % 2 == 0 else names[::-1]:
                if k == 0:
                    set_seed(1000 + rollout)  # both trainers generate the same completions
                t_wall, t_cpu = time.perf_counter(), time.process_time()
                losses[name].append(one_step(name))
                wall[name][-1] += time.perf_counter() - t_wall
                cpu[name][-1] += time.process_time() - t_cpu

    def ratios(times):
        med = {name: statistics.median(v) / config.steps_per_generation for name, v in times.items()}
        paired = statistics.median(g / s for g, s in zip(times["GSPOTrainer"], times["GRPOTrainer"]))
        return med, paired

    print(
        f"config: importance_sampling_level={config.importance_sampling_level} loss_type={config.loss_type} "
        f"steps_per_generation={config.steps_per_generation} per_device_train_batch_size="
        f"{config.per_device_train_batch_size} num_generations={config.num_generations} "
        f"max_completion_length={config.max_completion_length} threads={args.threads}; "
        f"{args.repeats} rollout batches x {config.steps_per_generation} optimizer steps per trainer"
    )
    if args.control:
        print("A/A CONTROL RUN: 'GSPOTrainer' below is a second stock GRPOTrainer")
    print(f"identical losses at every step (same work done): {losses['GSPOTrainer'] == losses['GRPOTrainer']}")
    for label, times in (("wall", wall), ("CPU", cpu)):
        med, paired = ratios(times)
        print(
            f"{label} time per optimizer step (median): GRPOTrainer {med['GRPOTrainer'] * 1000:.1f} ms, "
            f"GSPOTrainer {med['GSPOTrainer'] * 1000:.1f} ms; step-time ratio GSPOTrainer / GRPOTrainer "
            f"(median over rollouts of the paired ratio): {paired:.3f} (ratio of medians "
            f"{med['GSPOTrainer'] / med['GRPOTrainer']:.3f})"
        )

    # Loss forward + backward with per-token (B, T) advantages: GSPO-token path vs TRL's stock path.
    trainer = trainers["GSPOTrainer"][0]
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1
    gen = torch.Generator().manual_seed(0)
    batch, length = 8, args.max_completion_length
    inputs = {
        "prompt_ids": torch.randint(10, 200, (batch, 24), generator=gen),
        "completion_ids": torch.randint(10, 200, (batch, length), generator=gen),
        "completion_mask": torch.ones(batch, length, dtype=torch.long),
        "advantages": torch.randn(batch, length, generator=gen),
    }
    inputs["prompt_mask"] = torch.ones_like(inputs["prompt_ids"])
    inputs["old_per_token_logps"] = -torch.rand(batch, length, generator=gen) * 5
    paths = {
        "stock": lambda: GRPOTrainer._compute_loss(trainer, model, inputs),
        "gspo_token": lambda: trainer._compute_loss(model, inputs),
    }
    loss_times = {name: [] for name in paths}
    for rep in range(3 * args.repeats + 1):
        for name in paths if rep % 2 == 0 else list(paths)[::-1]:
            start = time.perf_counter()
            paths[name]().backward()
            model.zero_grad()
            if rep > 0:
                loss_times[name].append(time.perf_counter() - start)
    loss_med = {name: statistics.median(v) for name, v in loss_times.items()}
    loss_paired = statistics.median(g / s for g, s in zip(loss_times["gspo_token"], loss_times["stock"]))
    print(
        f"loss fwd+bwd with (B,T) advantages: TRL stock path {loss_med['stock'] * 1000:.2f} ms, GSPO-token "
        f"{loss_med['gspo_token'] * 1000:.2f} ms, median of paired ratios {loss_paired:.3f}"
    )


if __name__ == "__main__":
    main()
