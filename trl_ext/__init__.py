"""trl-ext: DAPO, GSPO and PPO trainers on top of Hugging Face TRL.

Importing ``trl_ext`` is cheap: the trainers and configs (which import trl, transformers and torch) are loaded
on first attribute access.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "DAPOConfig": "trl_ext.trainers.dapo_config",
    "DAPOTrainer": "trl_ext.trainers.dapo",
    "GSPOConfig": "trl_ext.trainers.gspo_config",
    "GSPOTrainer": "trl_ext.trainers.gspo",
    "PPOConfig": "trl_ext.trainers.ppo_config",
    "PPOTrainer": "trl_ext.trainers.ppo",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trl_ext' has no attribute {name!r}")


def __dir__():
    return __all__
