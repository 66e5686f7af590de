"""Every rank of a 2-process launch asks for the warm start from inside the process group, as a recipe does (its
arguments have made the ranks join one before the start model is resolved): one rank builds it, the others wait on
the lock, and all go on. A tiny warm-start config keeps the build to seconds. Prints one RESULT line per rank."""

import argparse

from helpers.worker import emit, finish

# seconds to build, as in tests/models/test_warm_start.py
TINY = dict(num_train_examples=64, batch_size=8, worked_steps=2, mix_steps=2, hidden_size=32, intermediate_size=64,
            num_layers=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache_dir", required=True)
    parser.add_argument("--use_cpu", default="false")
    cli = parser.parse_args()
    from accelerate import PartialState

    state = PartialState(cpu=cli.use_cpu == "true", backend="gloo")  # the process group, as TrainingArguments joins it
    from trl_ext.models.tiny import WarmStartConfig, warm_start

    path = warm_start(WarmStartConfig(**TINY), cache_dir=cli.cache_dir)
    state.wait_for_everyone()
    emit("RESULT", {"rank": state.process_index, "world_size": state.num_processes, "path": str(path)})
    finish()


if __name__ == "__main__":
    main()
