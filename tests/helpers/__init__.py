"""Helpers shared by the tests, the 2-process workers in tests/dist/ and the benchmarks, found by import.

``tests/`` is on ``sys.path`` inside pytest (it holds conftest.py) and on the PYTHONPATH of every subprocess the tests
start (``helpers.launch.pythonpath``), so ``import helpers.<module>`` works in both:

- ``helpers.launch``: the checkout's paths, the offline environment, ``launch`` (a real `accelerate launch`);
- ``helpers.rewards``: the toy reward functions (by import path in recipe runs: ``reward_path(length_reward)``);
- ``helpers.configs``: tiny trainer configs and tiny recipe arguments;
- ``helpers.worker``: the protocol of the 2-process workers (arguments, trainer, one ``TAG {json}`` line per rank);
- ``helpers.vllm_stand_in``: TRL's vLLM weight sync against a recording stand-in engine.
"""
