"""The ``trl-ext`` command.

    trl-ext train ALGO [recipe args...]   train one entry of the algorithm table (ppo, dpo, grpo, dapo, gspo; TRL's
                                         family: rloo, dr_grpo, cispo, sapo; sft: the comparison's SFT controls); no
                                         recipe arguments: the embedded CPU testbed. Same as recipes/<algo>_math.py.
    trl-ext compare [args...]            the algorithms and controls at the same budget, one results report
    trl-ext eval --model PATH [args...]  held-out GSM8K evaluation of a saved model (also: trl-ext-eval)
    trl-ext configs [--path NAME]        the shipped recipe and accelerate configs (--path: the file of one of them)

Several processes: ``accelerate launch [launch args] -m trl_ext.cli train dapo [recipe args]``; a shipped accelerate
config by name: ``--config_file "$(trl-ext configs --path zero3)"``. Recipe configs are paths or shipped names:
``--config gsm8k/qwen2.5-0.5b-instruct/dapo.yaml`` (``trl-ext configs`` lists them).

Importing this module imports neither torch nor trl; each command imports what it needs.
"""

from __future__ import annotations

import sys

USAGE = __doc__.split("\n\n")[1]


def _algorithms_help() -> str:
    import textwrap

    from trl_ext.recipe.algorithms import ALGORITHMS

    width = max(len(a.name) for a in ALGORITHMS)
    lines = ["algorithms:"]
    for a in ALGORITHMS:
        lines.append(f"  {a.name:{width}s}  {a.description}")
        for label, text in (("vs GRPOTrainer", a.changes), ("paper", a.paper), ("default config", a.default_config)):
            lines += textwrap.wrap(f"{label}: {text}", 110, initial_indent=" " * (width + 4),
                                   subsequent_indent=" " * (width + 6))
    return "\n".join(lines)


def train(argv: list[str]) -> int:
    from trl_ext.recipe.algorithms import UnknownAlgorithmError, get_algorithm

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: trl-ext train ALGO [recipe args...]   (trl-ext train ALGO --help: the recipe arguments)\n")
        print(_algorithms_help())
        return 0 if argv else 2
    try:
        algorithm = get_algorithm(argv[0])
    except UnknownAlgorithmError as err:
        print(f"trl-ext train: {err}", file=sys.stderr)
        return 2
    from trl_ext.recipe.train import main

    main(algorithm, argv[1:])
    return 0


def compare(argv: list[str]) -> int:
    from trl_ext.compare.cli import main

    return main(argv) or 0


def evaluate(argv: list[str]) -> int:
    from trl_ext.eval import main

    return main(argv) or 0


def configs(argv: list[str]) -> int:
    import argparse

    from trl_ext.configs import KINDS, ConfigNotFoundError, resolve_config, shipped_configs

    parser = argparse.ArgumentParser(prog="trl-ext configs", description="The configs shipped with trl-ext.")
    parser.add_argument("--path", metavar="NAME", help="print the file of one config (a shipped name or a path)")
    args = parser.parse_args(argv)
    if args.path:
        try:
            print(resolve_config(args.path))
        except ConfigNotFoundError as err:
            print(f"trl-ext configs: {err}", file=sys.stderr)
            return 1
        return 0
    usage = {"recipe": "--config NAME (trl-ext train ALGO --config NAME)",
             "accelerate": 'accelerate launch --config_file "$(trl-ext configs --path NAME)"'}
    for kind, names in shipped_configs().items():
        print(f"{kind} configs in {KINDS[kind]}  [{usage[kind]}]")
        for name in names:
            print(f"  {name}")
    return 0


COMMANDS = {"train": train, "compare": compare, "eval": evaluate, "configs": configs}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage:\n" + USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"trl-ext: unknown command {command!r}; commands: {', '.join(COMMANDS)}\nusage:\n{USAGE}",
              file=sys.stderr)
        return 2
    return COMMANDS[command](rest)


if __name__ == "__main__":
    sys.exit(main())
