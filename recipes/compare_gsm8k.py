"""One command to compare the math recipes (PPO, DPO, GRPO, DAPO, GSPO): each algorithm x seed runs as a subprocess
from the same start model, data, training budget (prompts seen) and evaluator; the results land in
``<output-dir>/results.md`` (+ ``.csv``, ``.json`` and PNG plots). Finished runs (their ``summary.json`` exists) are
reused unless ``--force``; a failed run is reported in its row and does not stop the others.

    # the embedded CPU testbed, 3 seeds, 256 training prompts (DPO: pairs) per algorithm:
    python recipes/compare_gsm8k.py --algos ppo,dpo,grpo,dapo,gspo --seeds 3 --prompts 256
    # GSM8K with Qwen2.5-0.5B-Instruct, each run on 8 GPUs under ZeRO-3:
    python recipes/compare_gsm8k.py --config-dir recipes/configs/gsm8k/qwen2.5-0.5b-instruct \
        --launch-config accelerate_configs/zero3.yaml --num-processes 8 --prompts 12800 --output-dir comparison/qwen05
    # overrides for every run after `--`, for one algorithm with --algo-args; --dry-run prints the plan only:
    python recipes/compare_gsm8k.py --algos grpo,dapo --algo-args "dapo=--dynamic_sampling_max_rounds 2" \
        --dry-run -- --eval_limit 100

See trl_ext/recipe/compare.py for how the budget is equalised.
"""

import sys
from pathlib import Path

from trl_ext.recipe.compare import main

if __name__ == "__main__":
    sys.exit(main(recipes_dir=Path(__file__).resolve().parent))
