"""2-process DAPO run with keep rates that differ between ranks (every group that lands on rank 1 scores flat).
Launched by tests/trainers/test_dapo.py under DDP, ZeRO-2 and ZeRO-3; prints one RESULT line per rank."""

from helpers.configs import tiny_dapo_config
from helpers.rewards import KeepRateReward, keep_rate_dataset
from helpers.worker import build_trainer, emit, finish, rank_record, worker_parser

from trl_ext import DAPOTrainer


class RecordingDAPOTrainer(DAPOTrainer):
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self.batch_rows = getattr(self, "batch_rows", []) + [int(out["completion_ids"].size(0))]
        return out


def main():
    parser = worker_parser(__doc__)
    parser.add_argument("--max_steps", type=int, default=3)
    parser.add_argument("--keep_rate", type=float, default=1.0, help="share of prompts that are not flat")
    parser.add_argument("--max_rounds", type=int, default=10)
    cli = parser.parse_args()
    config = tiny_dapo_config(cli.output_dir, max_steps=cli.max_steps, per_device_train_batch_size=6,
                              ddp_backend="gloo", use_cpu=cli.use_cpu, dynamic_sampling_max_rounds=cli.max_rounds)
    trainer = build_trainer(RecordingDAPOTrainer, cli, config, [KeepRateReward(seed=0, all_flat_on_rank=1)],
                            keep_rate_dataset(256, cli.keep_rate))
    trainer.train()
    history = trainer.state.log_history
    emit("RESULT", {
        **rank_record(trainer),
        "batch_rows": [r * trainer.accelerator.num_processes for r in trainer.batch_rows],
        "rounds": [h["dapo/generation_rounds"] for h in history if "dapo/generation_rounds" in h],
        "losses": [h["loss"] for h in history if "loss" in h],
        "filled": [h["dapo/filled_zero_std_groups"] for h in history if "dapo/filled_zero_std_groups" in h],
    })
    finish()


if __name__ == "__main__":
    main()
