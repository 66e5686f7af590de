"""The one-command comparison of the math recipes and the SFT controls (``recipes/compare_gsm8k.py``, or
``python -m trl_ext.compare.cli``): ``plan`` (budgets, sweep, phases), ``runner`` (one launch per run, reuse, resume),
``stats`` (intervals, paired tests), ``report`` (rows and readings from finished runs), ``markdown`` and ``plots``
(the report), ``machine`` (what it ran on) and ``cli`` (the command line). The protocol is in ``plan``'s docstring
and docs/comparison.md."""
