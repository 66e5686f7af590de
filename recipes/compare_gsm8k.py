"""One command to compare the math recipes (PPO, DPO, GRPO, DAPO, GSPO) and the SFT controls at an equal budget:
a sweep on the validation split picks each entry's value, the seeds run on the test split, and the report
(results.md + .csv, .json, figures) gives gains with intervals, paired differences, accuracy during training and
the phenomena. The protocol is in trl_ext/compare/plan.py; `--help` lists the options.

    # the committed embedded protocol (docs/results/embedded/results.md), about an hour on 2 CPU cores:
    python recipes/compare_gsm8k.py --sweep learning_rate=1e-5,2e-5,4e-5 --control-sweep learning_rate=1e-4,3e-4 \
        --seeds 3 --output-dir outputs/comparison/embedded --report-dir docs/results/embedded
    # two algorithms, no controls, plan only:
    python recipes/compare_gsm8k.py --algos grpo,dapo --controls none --dry-run
"""

import sys

from trl_ext.compare.cli import main

if __name__ == "__main__":
    sys.exit(main())
