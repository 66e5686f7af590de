"""The comparison's controls: SFT of the start model on rejection-sampled (``--sft_data rft``), warm-start
(``warm_start``) or gold worked-solution (``gold``, an oracle) data, with the recipes' evaluation and summary; see
trl_ext/recipe/controls.py. `trl-ext train sft [args]` runs the same program.

    accelerate launch recipes/sft_math.py --sft_data rft --max_samples 2400
    accelerate launch recipes/sft_math.py --sft_data gold --max_train_seconds 60
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("sft")
