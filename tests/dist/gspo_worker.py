"""Two optimizer steps of GSPOTrainer under `accelerate launch` (tests/trainers/test_gspo.py, DeepSpeed ZeRO-3).

The first optimizer step uses per-sequence advantages (TRL's sequence path); the second gets the same advantages
expanded to (B, T), so it runs GSPOTrainer's GSPO-token path (including its cross-rank clip-fraction reduction).
Prints one GSPO_WORKER line per rank: rank, world_size, global_step, deepspeed, zero_stage, loss, token_calls.
"""

import math

from helpers.configs import tiny_gspo_config
from helpers.rewards import length_reward
from helpers.worker import build_trainer, emit, finish, rank_record, worker_parser

from trl_ext import GSPOTrainer
from trl_ext.data.gsm8k import load_gsm8k


class TokenPathGSPOTrainer(GSPOTrainer):
    """Sends the second micro-step (= the second optimizer step here) through the GSPO-token path."""

    token_calls = 0

    def _compute_loss(self, model, inputs):
        if self._step % 2 == 1:  # second micro-step: per-token advantages
            inputs = {**inputs, "advantages": inputs["advantages"].unsqueeze(-1).expand_as(inputs["completion_mask"])}
            self.token_calls += 1
        return super()._compute_loss(model, inputs)


def main():
    cli = worker_parser(__doc__).parse_args()
    config = tiny_gspo_config(
        cli.output_dir,
        per_device_train_batch_size=2,
        num_generations=4,
        max_completion_length=8,
        num_minibatches=2,  # 2 optimizer steps from one rollout batch: the second one is off-policy
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        ddp_backend="gloo",
        use_cpu=cli.use_cpu,
    )
    trainer = build_trainer(TokenPathGSPOTrainer, cli, config, length_reward,
                            load_gsm8k("synthetic", "train", num_examples=16))
    trainer.train()

    world_size = trainer.accelerator.num_processes
    assert world_size == 2, f"expected 2 processes, trainer sees {world_size}"
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses
    assert trainer.token_calls == 1, trainer.token_calls
    clip = [h["clip_ratio/region_mean"] for h in trainer.state.log_history if "clip_ratio/region_mean" in h]
    assert len(clip) == 2 and all(0.0 <= v <= 1.0 for v in clip), clip
    zero_stage = trainer.accelerator.state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else None
    emit("GSPO_WORKER", {**rank_record(trainer), "deepspeed": trainer.is_deepspeed_enabled, "zero_stage": zero_stage,
                         "loss": losses[-1], "token_calls": trainer.token_calls})
    finish()


if __name__ == "__main__":
    main()
