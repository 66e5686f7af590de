"""2-process DAPO run with keep rates that differ between ranks (every group that lands on rank 1 scores flat).
Launched by tests/test_dapo.py under DDP, ZeRO-2 and ZeRO-3; prints one RESULT line per rank."""

import argparse
import json

from helpers.configs import tiny_dapo_config
from helpers.rewards import KeepRateReward, keep_rate_dataset
from transformers import AutoTokenizer

from trl_ext import DAPOTrainer
from trl_ext.recipe.distributed import shutdown_distributed


class RecordingDAPOTrainer(DAPOTrainer):
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self.batch_rows = getattr(self, "batch_rows", []) + [int(out["completion_ids"].size(0))]
        return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_steps", type=int, default=3)
    parser.add_argument("--use_cpu", default="false", help="true for DDP on CPU")
    parser.add_argument("--keep_rate", type=float, default=1.0, help="share of prompts that are not flat")
    parser.add_argument("--max_rounds", type=int, default=10)
    args = parser.parse_args()
    config = tiny_dapo_config(args.output_dir, max_steps=args.max_steps, per_device_train_batch_size=6,
                              ddp_backend="gloo",
                              use_cpu=args.use_cpu.lower() == "true", dynamic_sampling_max_rounds=args.max_rounds)
    trainer = RecordingDAPOTrainer(
        model=args.model,
        reward_funcs=[KeepRateReward(seed=0, all_flat_on_rank=1)],
        args=config,
        train_dataset=keep_rate_dataset(256, args.keep_rate),
        processing_class=AutoTokenizer.from_pretrained(args.model),
    )
    trainer.train()
    history = trainer.state.log_history
    result = {
        "rank": trainer.accelerator.process_index,
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "batch_rows": [r * trainer.accelerator.num_processes for r in trainer.batch_rows],
        "rounds": [h["dapo/generation_rounds"] for h in history if "dapo/generation_rounds" in h],
        "losses": [h["loss"] for h in history if "loss" in h],
        "filled": [h["dapo/filled_zero_std_groups"] for h in history if "dapo/filled_zero_std_groups" in h],
    }
    # One write (< PIPE_BUF bytes) so the two ranks' lines cannot interleave on the shared pipe.
    print("RESULT " + json.dumps(result) + "\n", end="", flush=True)
    shutdown_distributed()


if __name__ == "__main__":
    main()
