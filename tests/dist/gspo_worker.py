"""Two optimizer steps of GSPOTrainer under `accelerate launch` (used by tests/test_gspo.py with DeepSpeed ZeRO-3).

The first optimizer step uses per-sequence advantages (TRL's sequence path); the second gets the same advantages
expanded to (B, T), so it runs GSPOTrainer's GSPO-token path (including its cross-rank clip-fraction reduction).
Prints one line per rank: ``GSPO_WORKER rank=R world_size=W deepspeed=B zero_stage=Z steps=N loss=L token_calls=K``.
"""

import argparse
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()

    from helpers.rewards import length_reward
    from transformers import AutoTokenizer

    from trl_ext import GSPOConfig, GSPOTrainer
    from trl_ext.data.gsm8k import load_gsm8k

    config = GSPOConfig(
        output_dir=args.output_dir,
        per_device_train_batch_size=2,
        num_generations=4,
        max_completion_length=8,
        num_minibatches=2,  # 2 optimizer steps from one rollout batch: the second one is off-policy
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        bf16=False,
        ddp_backend="gloo",
        report_to="none",
        save_strategy="no",
    )

    class Worker(GSPOTrainer):
        token_calls = 0

        def _compute_loss(self, model, inputs):
            if self._step % 2 == 1:  # second micro-step (= second optimizer step here): per-token advantages
                inputs = {
                    **inputs,
                    "advantages": inputs["advantages"].unsqueeze(-1).expand_as(inputs["completion_mask"]),
                }
                self.token_calls += 1
            return super()._compute_loss(model, inputs)

    trainer = Worker(
        model=args.model,
        reward_funcs=length_reward,
        args=config,
        train_dataset=load_gsm8k("synthetic", "train", num_examples=16),
        processing_class=AutoTokenizer.from_pretrained(args.model),
    )
    trainer.train()

    world_size = trainer.accelerator.num_processes
    assert world_size == 2, f"expected 2 processes, trainer sees {world_size}"
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses
    assert trainer.token_calls == 1, trainer.token_calls
    clip = [h["clip_ratio/region_mean"] for h in trainer.state.log_history if "clip_ratio/region_mean" in h]
    assert len(clip) == 2 and all(0.0 <= v <= 1.0 for v in clip), clip
    zero_stage = trainer.accelerator.state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else None
    # one write (under PYTHONUNBUFFERED print writes the text and the newline separately; two ranks share the pipe)
    print(
        f"GSPO_WORKER rank={trainer.accelerator.process_index} world_size={world_size} "
        f"deepspeed={trainer.is_deepspeed_enabled} zero_stage={zero_stage} steps={trainer.state.global_step} "
        f"loss={losses[-1]:.6g} token_calls={trainer.token_calls}\n",
        end="",
        flush=True,
    )
    from trl_ext.recipe.distributed import shutdown_distributed

    shutdown_distributed()


if __name__ == "__main__":
    main()
