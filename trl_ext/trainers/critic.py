"""PPO's critic as its own unit: how it is built, called, optimised, synchronised, saved and restored.

Conventions, stated once for this module:

* **Model.** The critic is an ``AutoModelForTokenClassification`` with one label, loaded from the policy's checkpoint
  (fresh scalar head) or from ``value_model_name_or_path`` (a reward model's score head is reused). Weights that the
  checkpoint lacks (the head) start at 0: identical on every rank, and no initial value noise. Dropout is off.
* **Values.** ``Critic.values(...)[:, t]`` is V(s_t), the value of the state *before* completion token ``t``: the
  head's output at the position that predicts token ``t``, in float32, shape (B, T) for the last T tokens.
* **Placement.** The critic is the submodule ``ppo_critic`` (``CRITIC_ATTR``) of the policy module, so one DDP
  wrapper / DeepSpeed engine / optimizer holds both models and the policy's state dict names its weights
  ``ppo_critic.*``. Under DeepSpeed the engine shards, reduces, clips (jointly with the policy) and checkpoints it.
  Under DDP (several processes, no DeepSpeed) DDP ignores it and ``sync_gradients`` averages its gradients by hand.
* **Files.** In a saved model and in every checkpoint the critic is the ``save_pretrained`` folder ``critic/``
  (``CRITIC_DIR``) beside the policy's weights, which never contain it. ``load_critic_weights`` reads every layout
  ``save_pretrained`` writes (one file or shards, safetensors or ``.bin``).

Two functions here work around an internal of TRL / transformers / torch; each says what it relies on, and
``tests/trainers/test_ppo_upstream.py`` fails when that internal changes: ``exclude_critic_from_weight_sync`` (TRL's
vLLM weight sync) and ``ignore_in_ddp`` (torch DDP's private ignore list). ``Critic.hidden_from_optimizer`` relies on
``Trainer.create_optimizer`` taking only parameters with ``requires_grad``.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

import torch
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.nn.parallel import DistributedDataParallel
from transformers import AutoModelForTokenClassification
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from trl.trainer.utils import disable_dropout_in_model, get_config_model_id

CRITIC_ATTR = "ppo_critic"  # name of the critic submodule inside the policy module
CRITIC_DIR = "critic"  # sub-folder of a checkpoint / saved model holding the critic (a TokenClassification model)
_PREFIX = CRITIC_ATTR + "."


def exclude_critic_from_weight_sync(vllm_generation) -> None:
    """Keep the critic out of TRL's weight sync to vLLM (colocate and server modes).

    TRL 1.16 pushes every parameter that ``VLLMGeneration._iter_named_params`` yields from the policy module, and the
    critic is a submodule of it (so that DDP/ZeRO handle both as one model). Wrap that walk: critic parameters are
    still visited, so under ZeRO-3 every rank takes part in the same gathers, but never pushed to vLLM, whose model
    has no such weights. ``tests/trainers/test_ppo_upstream.py`` pins the upstream method this relies on.
    """
    walk = vllm_generation._iter_named_params

    def policy_params():
        for name, param in walk():
            if not name.startswith(_PREFIX):
                yield name, param

    vllm_generation._iter_named_params = policy_params


def ignore_in_ddp(module: torch.nn.Module, names: list[str]) -> None:
    """Make a later ``DistributedDataParallel(module)`` ignore the named parameters and buffers.

    DDP's reducer expects each parameter's gradient once per backward, from inside the DDP forward; the critic is
    called outside it (its own forward in ``compute_loss``), which trips the reducer ("marked ready twice"). torch has
    no public API for this: the private static ``DistributedDataParallel._set_params_and_buffers_to_ignore_for_model``
    stores the names in ``module._ddp_params_and_buffers_to_ignore``, which DDP's constructor reads (pinned in
    ``tests/trainers/test_ppo_upstream.py``). The ignored gradients are then averaged by ``Critic.sync_gradients``.
    """
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)


def _read_weights(path: str) -> dict:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_critic_weights(critic, directory: str) -> None:
    """Load the critic's weights from ``directory`` in any layout ``save_pretrained`` writes: one safetensors or
    ``pytorch_model.bin`` file, or shards with an index. Raises when nothing there can be loaded (a resume must not
    go on with a fresh critic) and when the weights do not match the critic (``strict``)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if os.path.isfile(os.path.join(directory, name)):
            critic.load_state_dict(_read_weights(os.path.join(directory, name)))
            return
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = os.path.join(directory, name)
        if os.path.isfile(index):
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            state = {}
            for shard in shards:
                state.update(_read_weights(os.path.join(directory, shard)))
            critic.load_state_dict(state)
            return
    raise FileNotFoundError(
        f"{directory}: the checkpoint has a critic folder but no critic weights (model.safetensors, "
        f"pytorch_model.bin or a sharded index; found {sorted(os.listdir(directory))}). Resume from a complete "
        "checkpoint, or delete the folder to start the critic afresh on purpose."
    )


def build_critic_model(policy, args, device=None):
    """The critic model for ``policy``, from ``args.value_model_name_or_path`` or the policy's own checkpoint.

    ``args`` supplies ``value_model_name_or_path``, ``model_init_kwargs`` (minus ``device_map``) and
    ``trust_remote_code``; the dtype defaults to the policy's. ``device``: where to put it (None under DeepSpeed,
    whose engine places it).
    """
    path = args.value_model_name_or_path or get_config_model_id(policy.config)
    init_kwargs = {k: v for k, v in (args.model_init_kwargs or {}).items() if k != "device_map"}
    init_kwargs.setdefault("dtype", policy.dtype)
    init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
    critic, info = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=1, output_loading_info=True, **init_kwargs
    )
    disable_dropout_in_model(critic)
    missing = set(info["missing_keys"])
    fresh = [p for n, p in critic.named_parameters() if n in missing]
    if fresh:
        if is_deepspeed_zero3_enabled():
            import deepspeed

            with deepspeed.zero.GatheredParameters(fresh, modifier_rank=0), torch.no_grad():
                for p in fresh:
                    p.zero_()
        else:
            with torch.no_grad():
                for p in fresh:
                    p.zero_()
    if device is not None:
        critic.to(device)
    return critic


def split_critic_state(state_dict: dict) -> tuple[dict, dict]:
    """``(policy_state, critic_state)`` of the policy module's state dict; the critic's keys lose ``ppo_critic.``."""
    critic = {k[len(_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(_PREFIX)}
    policy = {k: v for k, v in state_dict.items() if not k.startswith(_PREFIX)}
    return policy, critic


class Critic:
    """The critic model plus everything the trainer does with it (see the module docstring for the conventions).

    ``Critic(model)`` wraps a built model (``Critic.build(policy, args, device)`` builds one); ``attach`` makes it a
    submodule of the policy. The trainer then calls: ``values`` (rollout and loss), ``hidden_from_optimizer`` and
    ``param_groups`` (optimizer), ``sync_gradients`` and ``clip_grad_norm`` (each optimizer step), ``save`` and
    ``load_from_checkpoint`` (checkpoints, saved models, resume).
    """

    def __init__(self, model):
        self.model = model
        self.manual_sync = None  # set by attach: whether sync_gradients averages the gradients by hand

    @classmethod
    def build(cls, policy, args, device=None) -> Critic:
        return cls(build_critic_model(policy, args, device))

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    # ----- placement ----------------------------------------------------------------------------------------------
    def attach(self, policy: torch.nn.Module, accelerator, distributed_by_engine: bool) -> None:
        """Register the critic as ``policy.ppo_critic``. ``distributed_by_engine``: DeepSpeed or FSDP handles it
        with the policy; otherwise, whenever accelerate wraps the policy in DDP (a ``MULTI_*`` distributed type: also
        a single process launched by torchrun, ``WORLD_SIZE=1``), DDP ignores it and ``sync_gradients`` averages it."""
        policy.add_module(CRITIC_ATTR, self.model)
        self.manual_sync = accelerator.distributed_type.name.startswith("MULTI_") and not distributed_by_engine
        if self.manual_sync:
            names = [_PREFIX + n for n, _ in self.model.named_parameters()]
            names += [_PREFIX + n for n, _ in self.model.named_buffers()]
            ignore_in_ddp(policy, names)

    # ----- values -------------------------------------------------------------------------------------------------
    def values(self, input_ids, attention_mask, logits_to_keep: int, batch_size: int) -> torch.Tensor:
        """(B, logits_to_keep) float32 values V(s_t) of the state before each of the last ``logits_to_keep`` tokens,
        computed ``batch_size`` rows at a time."""
        chunks = []
        for i in range(0, input_ids.size(0), batch_size):
            logits = self.model(
                input_ids=input_ids[i : i + batch_size], attention_mask=attention_mask[i : i + batch_size]
            ).logits
            chunks.append(logits[:, -logits_to_keep - 1 : -1, 0].float())
        return torch.cat(chunks, dim=0)

    # ----- optimizer ----------------------------------------------------------------------------------------------
    @contextmanager
    def hidden_from_optimizer(self):
        """While inside, the critic's trainable parameters have ``requires_grad=False``.

        ``Trainer.create_optimizer`` builds its two param groups (decay / no decay) from every parameter of the
        model that has ``requires_grad``; the critic is a submodule of the model, so it would land in the policy's
        groups at the policy's learning rate. Hiding it while the parent builds the optimizer leaves its own groups
        (``param_groups``) to be added afterwards. Frozen critic parameters stay frozen; the flags are restored even
        if the parent raises. ``tests/trainers/test_ppo_upstream.py`` pins the ``requires_grad`` filter this relies on.
        """
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        for p in trainable:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in trainable:
                p.requires_grad_(True)

    def param_groups(self, lr: float, weight_decay: float, decay_names) -> list[dict]:
        """The critic's param groups at learning rate ``lr``: ``"critic"`` (weight decay on the names in
        ``decay_names``, Trainer's ``get_decay_parameter_names`` of the critic) and ``"critic_no_decay"`` (biases and
        norm weights); empty groups are left out."""
        decay = set(decay_names)
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = []
        for name, wd, params in (
            ("critic", weight_decay, [p for n, p in named if n in decay]),
            ("critic_no_decay", 0.0, [p for n, p in named if n not in decay]),
        ):
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": wd, "name": name})
        return groups

    def sync_gradients(self, num_processes: int) -> None:
        """Average the critic's gradients over the processes (one all-reduce of the flattened gradients); a no-op
        unless ``attach`` chose manual sync. Call on gradient-synchronisation steps only, before clipping."""
        if not self.manual_sync:
            return
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads:
            flat = _flatten_dense_tensors(grads)
            torch.distributed.all_reduce(flat)
            flat /= num_processes
            for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
                g.copy_(synced)

    def clip_grad_norm(self, accelerator, model, max_norm: float):
        """Clip the policy's and the critic's gradients separately, each to ``max_norm`` (verl clips its actor and
        critic optimizers independently: one large gradient must not shrink the other's update). ``model``: the
        (wrapped) policy module, critic included. Returns ``(policy_norm, critic_norm)``, both before clipping."""
        critic = self.parameters()
        critic_ids = {id(p) for p in critic}
        policy = [p for p in model.parameters() if id(p) not in critic_ids]
        # Unscale once (fp16 with a GradScaler; a no-op otherwise), then clip each group: the scaler refuses a second
        # unscale_ in the same step, which two `accelerator.clip_grad_norm_` calls would each make.
        accelerator.unscale_gradients()
        critic_norm = torch.nn.utils.clip_grad_norm_(critic, max_norm)
        return torch.nn.utils.clip_grad_norm_(policy, max_norm), critic_norm

    # ----- files --------------------------------------------------------------------------------------------------
    def save(self, output_dir: str, state_dict: dict, should_save: bool) -> dict:
        """Write the critic's part of the policy module's ``state_dict`` to ``<output_dir>/critic`` (if
        ``should_save`` and there is one) and return the rest: the policy's state dict to save as usual."""
        policy_state, critic_state = split_critic_state(state_dict)
        if should_save and critic_state:
            self.model.save_pretrained(os.path.join(output_dir, CRITIC_DIR), state_dict=critic_state)
        return policy_state

    def load_from_checkpoint(self, checkpoint: str) -> bool:
        """Load the critic from ``<checkpoint>/critic`` if that folder exists (raising if it holds no loadable
        weights); returns whether it did. DeepSpeed resumes restore the critic from the engine's files instead."""
        directory = os.path.join(checkpoint, CRITIC_DIR)
        if not os.path.isdir(directory):
            return False
        load_critic_weights(self.model, directory)
        return True
