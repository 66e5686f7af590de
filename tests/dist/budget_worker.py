"""2-process GRPO run under a time budget in which rank 1's clock reads far past the deadline from its second step
on, while rank 0's does not: the ranks must still stop on the same step (a rank that stops alone enters the
end-of-training collectives while the other steps again). The budget callback is wired as ``RecipeRun`` wires it.
Prints one RESULT line per rank."""

import functools

from helpers.configs import tiny_dapo_config
from helpers.rewards import length_reward
from helpers.worker import build_trainer, emit, finish, rank_record, worker_parser

from trl_ext.recipe.callbacks import BudgetCallback
from trl_ext.recipe.distributed import max_over_processes

SKEW_SECONDS = 10_000.0
BUDGET_SECONDS = 600.0


class SkewedClockBudget(BudgetCallback):
    """Rank ``rank``'s training clock jumps ``SKEW_SECONDS`` ahead from its second reading on."""

    def __init__(self, *args, rank, **kwargs):
        super().__init__(*args, **kwargs)
        self.rank, self.readings = rank, 0

    def train_seconds(self) -> float:
        self.readings += 1
        return super().train_seconds() + (SKEW_SECONDS if self.rank == 1 and self.readings >= 2 else 0.0)


def main():
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    cli = worker_parser(__doc__).parse_args()
    config = tiny_dapo_config(cli.output_dir, GRPOConfig, max_steps=6, ddp_backend="gloo", use_cpu=cli.use_cpu)
    prompts = datasets.Dataset.from_list([{"prompt": f"Count to {i}:"} for i in range(64)])
    trainer = build_trainer(GRPOTrainer, cli, config, [length_reward], prompts)
    acc = trainer.accelerator
    budget = SkewedClockBudget(None, acc.num_processes, max_train_seconds=BUDGET_SECONDS,
                               reduce_max=functools.partial(max_over_processes, acc), rank=acc.process_index)
    trainer.add_callback(budget)
    trainer.train()
    emit("RESULT", {**rank_record(trainer), "stopped_by": budget.stopped_by})
    finish()


if __name__ == "__main__":
    main()
