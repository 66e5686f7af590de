"""trl-ext: DAPO, GSPO and PPO trainers on top of Hugging Face TRL.

Importing ``trl_ext`` is cheap: the trainers and configs (which import trl, transformers and torch) are loaded
on first attribute access.
"""

from trl_ext._lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


def __dir__():
    return __all__
