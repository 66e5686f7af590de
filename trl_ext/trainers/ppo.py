"""PPOTrainer: PPO with a learned critic and GAE on GRPOTrainer's rollout, for TRL 1.16.

The math is ``trl_ext.core.ppo`` (pure functions), the critic ``trl_ext.trainers.critic``, the config
``trl_ext.trainers.ppo_config``; this module wires them into GRPOTrainer's hooks. Conventions, stated once:

* ``B`` is the number of rows (completions) on this process, ``T`` the padded completion width. ``mask`` is
  ``loss_mask(batch)`` as float: the completion tokens that count. A row that no reward function could score is
  masked out entirely (``completion_mask`` too), so it leaves both losses and their normalisers.
* The rollout dict that TRL buffers and splits carries per-token ``advantages`` (B, T) instead of GRPO's (B,), plus
  ``old_values`` and ``returns`` (B, T), all 0 at masked positions.
* Every ``ppo/*`` metric is over the global batch: (B, T) tensors are ``pad_and_gather``-ed, scalars gathered and
  averaged. ``ppo/kl`` is in the adaptive controller's unit (per-token mean KL, ``mean_token_kl``).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

import torch
from accelerate.utils import gather, is_peft_model
from trl import GRPOTrainer
from trl.trainer.utils import get_config_model_id, use_adapter

from trl_ext.core.ppo import (
    AdaptiveKLController,
    explained_variance,
    gae,
    kl_penalty,
    masked_mean,
    mean_token_kl,
    token_level_rewards,
    value_loss,
    whiten,
)
from trl_ext.trainers.common import loss_mask, model_inputs, pad_and_gather
from trl_ext.trainers.critic import (  # noqa: F401  (re-exported: imported from here by tests and users)
    CRITIC_ATTR,
    CRITIC_DIR,
    Critic,
    exclude_critic_from_weight_sync,
    load_critic_weights,
)
from trl_ext.trainers.ppo_config import PPOConfig

KL_STATE_FILE = "ppo_kl_ctl_state.json"


@contextmanager
def reference_model_built_by_parent(args: PPOConfig):
    """While inside, ``args.beta`` is nonzero if PPO needs a reference model (``kl_coef > 0``) and ``beta`` is 0.

    TRL's ``GRPOTrainer.__init__`` builds and prepares (DeepSpeed / FSDP / plain) ``ref_model`` only when
    ``args.beta != 0`` (``if self.beta == 0.0: self.ref_model = None``), and adds the frozen ``"ref"`` adapter to a
    PEFT model with a pretrained adapter under the same condition. PPO keeps the KL out of the loss (``beta=0``) but
    puts ``kl_coef * KL(pi_old || pi_ref)`` into the reward, so it needs that reference model; building and preparing
    it here would copy TRL's code. So ``beta`` is set to ``kl_coef`` only while the parent's ``__init__`` runs, and
    restored on exit (also on error); the trainer then sets ``self.beta`` back to the loss's value. Yields the loss's
    ``beta``. ``tests/trainers/test_ppo_upstream.py`` pins TRL's condition.
    """
    loss_beta = args.beta
    if args.kl_coef > 0 and loss_beta == 0.0:
        args.beta = args.kl_coef
    try:
        yield loss_beta
    finally:
        args.beta = loss_beta


def drop_group_metrics(metrics: dict) -> None:
    """Remove TRL's ``frac_reward_zero_std`` from a rollout's metrics.

    GRPOTrainer logs the fraction of prompt groups whose rewards have zero std (groups that teach GRPO nothing). PPO
    samples one completion per prompt, whose "group" always has zero std, so the metric would always read 1 while
    PPO learns from every completion. ``tests/trainers/test_ppo_upstream.py`` pins the metric's name in TRL's rollout.
    """
    metrics.pop("frac_reward_zero_std", None)


class PPOTrainer(GRPOTrainer):
    """PPO (Schulman et al. 2017) with a critic and GAE (Schulman et al. 2015) on top of ``trl.GRPOTrainer``.

    Rollout, reward functions and the clipped policy loss are GRPOTrainer's; the math is ``trl_ext.core.ppo``, the
    critic ``trl_ext.trainers.critic.Critic`` (``self.critic_unit``; ``self.critic`` is its model). It overrides
    these hooks, and no others:

    Algorithm

    * ``_generate_and_score_completions``: after the parent's rollout, the critic's values, the per-token reward
      (the reward functions' weighted score at the last completion token minus ``kl_coef * KL(pi_old || pi_ref)`` per
      token), GAE, and whitened (B, T) advantages in place of ``advantages`` (TRL's ``_compute_loss`` takes them as
      they are); ``old_values`` and ``returns`` travel in the same dict through TRL's buffering and splitting, so
      ``steps_per_generation > 1`` and ``num_iterations > 1`` work unchanged.
    * ``_calculate_rewards``: keeps the gathered rewards, which the parent's rollout uses but does not return.
    * ``compute_loss``: the parent's policy loss (zeroed during ``critic_warmup_steps``) + ``vf_coef *`` the clipped
      value loss.

    Critic (each delegates to ``Critic``)

    * ``__init__``: the parent builds the reference model (``reference_model_built_by_parent``), then the critic is
      built, attached to the policy module and kept out of the vLLM weight sync.
    * ``create_optimizer``: the parent's param groups without the critic, then the critic's at
      ``critic_learning_rate``.
    * ``training_step``: under DDP, averages the critic's gradients after the backward (DDP ignores the critic).
    * ``_clip_grad_norm``: clips policy and critic separately (not under DeepSpeed, whose engine clips jointly).
    * ``_save``: writes the critic to ``<output_dir>/critic`` and the policy without it.
    * ``_load_from_checkpoint``: a non-DeepSpeed resume restores the critic too (DeepSpeed's engine files hold both).

    Adaptive KL controller

    * ``_save_optimizer_and_scheduler`` / ``_load_optimizer_and_scheduler``: its coefficient is saved with the
      optimizer, before ``trainer_state.json`` marks the checkpoint complete, and restored on resume.

    Workarounds of TRL internals, each one function pinned by ``tests/trainers/test_ppo_upstream.py``:
    ``reference_model_built_by_parent``, ``drop_group_metrics``, ``_calculate_rewards`` and ``_ref_logps`` here,
    ``one_generation_accepted_by_grpo`` in ppo_config.py, and ``Critic.hidden_from_optimizer``,
    ``exclude_critic_from_weight_sync`` and ``ignore_in_ddp`` in critic.py.

    Design choice, critic placement: the critic is a submodule of the policy module (``PreTrainedModel`` or
    ``PeftModel``), so one DDP wrapper / DeepSpeed engine / optimizer hold both models: ZeRO-2/3 shard the critic like
    the policy, gradients of both are reduced in the same backward, and the critic and its optimizer state are in
    every checkpoint. Generation and the policy's log-probs use the policy module exactly as in GRPO (the critic is
    only called explicitly; ZeRO-3 fetches its parameters through its module hooks). Costs: under ZeRO-3 the
    generation-time parameter gather also gathers the critic, and under DeepSpeed gradient clipping is joint. A second
    DeepSpeed engine for the critic would avoid both but needs its own backward/step/checkpoint plumbing outside
    Trainer. The critic is full-parameter even when the policy uses PEFT/LoRA.
    """

    _tag_names = ("trl", "trl-ext", "ppo")
    _name = "PPO"

    def __init__(self, model, reward_funcs=None, args: PPOConfig | None = None, *pargs, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = PPOConfig(f"{name.split('/')[-1]}-PPO")
        if not isinstance(args, PPOConfig):
            raise TypeError(f"PPOTrainer needs a trl_ext.PPOConfig, got {type(args).__name__}.")
        self._ppo_needs_ref = args.kl_coef > 0
        with reference_model_built_by_parent(args) as loss_beta:
            super().__init__(model, reward_funcs, args, *pargs, **kwargs)
        self.beta = loss_beta
        self.kl_ctl = AdaptiveKLController(args.kl_coef, args.kl_target, args.kl_horizon)
        self._ppo_rewards_per_func = None
        device = None if self.is_deepspeed_enabled else self.args.device
        self.critic_unit = Critic.build(self.model, self.args, device)
        self.critic_unit.attach(self.model, self.accelerator, self.is_deepspeed_enabled or self.is_fsdp_enabled)
        if self.use_vllm:
            exclude_critic_from_weight_sync(self.vllm_generation)

    @property
    def critic(self):
        """The critic model (``AutoModelForTokenClassification``, submodule ``ppo_critic`` of ``self.model``)."""
        return self.critic_unit.model

    # ----- optimizer step -------------------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch):
        """The parent's step; on gradient-synchronisation steps, under DDP, then averages the critic's gradients
        (``Critic.sync_gradients``: DDP ignores the critic), before Trainer clips them."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients:
            self.critic_unit.sync_gradients(self.accelerator.num_processes)
        return loss

    def create_optimizer(self, model=None):
        """Parent's optimizer for the policy, plus the critic's two param groups at ``critic_learning_rate``: weight
        decay on its weight matrices, none on biases and norm weights (Trainer's rule for the policy)."""
        if self.optimizer is not None:
            return self.optimizer
        with self.critic_unit.hidden_from_optimizer():
            optimizer = super().create_optimizer(model)
        lr = self.args.critic_learning_rate or self.args.learning_rate
        decay = self.get_decay_parameter_names(self.critic)
        for group in self.critic_unit.param_groups(lr, self.args.weight_decay, decay):
            optimizer.add_param_group(group)
        return optimizer

    def _clip_grad_norm(self, model):
        """Clip the policy's and the critic's gradients separately (``Critic.clip_grad_norm``). Returns the policy's
        pre-clip norm (Trainer logs it as ``grad_norm``); the critic's goes to ``ppo/critic_grad_norm``. Under
        DeepSpeed the engine clips all parameters together (its ``gradient_clipping``), as before."""
        if self.is_deepspeed_enabled:
            return super()._clip_grad_norm(model)
        policy_norm, critic_norm = self.critic_unit.clip_grad_norm(self.accelerator, model, self.args.max_grad_norm)
        self._metrics["train"]["ppo/critic_grad_norm"].append(float(critic_norm))
        return policy_norm

    # ----- rollout --------------------------------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """Keep the reward functions' scores for ``_generate_and_score_completions``.

        TRL's rollout calls this hook, gets every process's (B_global, n_funcs) rewards (NaN where a function
        returned None) and turns them into group-normalised advantages without returning them. PPO needs them: their
        weighted sum is the terminal reward of GAE, and a row that no function scored leaves the losses. Held in
        ``self._ppo_rewards_per_func`` until the wrapped rollout returns. ``tests/trainers/test_ppo_upstream.py`` pins
        that the rollout calls this hook and that it returns the gathered rewards.
        """
        self._ppo_rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._ppo_rewards_per_func  # (B_global, n_funcs), identical on every rank

    def _ref_logps(self, input_ids, attention_mask, logits_to_keep, batch_size):
        """Reference log-probs for the in-reward KL. TRL's rollout computes ``ref_per_token_logps`` only when
        ``beta != 0`` (PPO's loss beta is 0), so they are computed here as TRL does: with ``ref_model``, or with PEFT
        with the adapter disabled (or the frozen "ref" adapter). Pinned in ``tests/trainers/test_ppo_upstream.py``."""
        if self.ref_model is not None:
            return self._get_per_token_logps_and_entropies(
                self.ref_model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size
            )[0]
        policy = self.accelerator.unwrap_model(self.model)
        if not is_peft_model(policy):
            raise RuntimeError("kl_coef > 0 needs a reference model, but none was created.")
        with use_adapter(policy, adapter_name="ref" if "ref" in policy.peft_config else None):
            return self._get_per_token_logps_and_entropies(
                self.model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size
            )[0]

    def _rollout_kl(self, out, input_ids, attention_mask, mask, batch_size):
        """(B, T) in-reward KL(pi_old || pi_ref) estimate per valid token (0 without a reference model)."""
        T = mask.size(1)
        if not self._ppo_needs_ref:
            return torch.zeros_like(mask)
        old = out.get("old_per_token_logps")
        if old is None:  # on-policy: the parent skips it, PPO's KL needs it
            old = self._get_per_token_logps_and_entropies(
                self.model, input_ids, attention_mask, T, batch_size=batch_size
            )[0]
        ref = out.get("ref_per_token_logps")
        if ref is None:
            ref = self._ref_logps(input_ids, attention_mask, T, batch_size)
        return kl_penalty(old.float(), ref.float(), self.args.kl_estimator) * mask

    def _generate_and_score_completions(self, inputs):
        """The parent's rollout, then PPO's per-token advantages: critic values, KL-shaped rewards, GAE, whitening
        over the global batch; adds ``old_values`` and ``returns`` (see the module docstring)."""
        out = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        drop_group_metrics(self._metrics[mode])
        args = self.args
        B, T = out["completion_ids"].shape
        mask = loss_mask(out).float()
        rpf = self._ppo_rewards_per_func
        scores = (rpf * self.reward_weights.to(rpf.device).unsqueeze(0)).nansum(dim=1)
        rank = self.accelerator.process_index
        scores = scores[rank * B : (rank + 1) * B].to(mask.device)
        input_ids, attention_mask = model_inputs(out)
        # A completion that no reward function could score (all None) carries no signal: GRPO gives it zero
        # advantage; here it leaves the policy and value losses (and their token-mean normaliser) altogether.
        unscorable = torch.isnan(rpf).all(dim=1)
        self._metrics[mode]["ppo/unscorable_frac"].append(unscorable.float().mean().item())
        local_unscorable = unscorable[rank * B : (rank + 1) * B].to(mask.device)
        if unscorable.any():
            keep = (~local_unscorable).unsqueeze(1)
            mask = mask * keep
            out["completion_mask"] = out["completion_mask"] * keep.to(out["completion_mask"].dtype)
            if "num_items_in_batch" in out:
                out["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        batch_size = args.per_device_train_batch_size if mode == "train" else args.per_device_eval_batch_size
        with torch.no_grad():
            values = self.critic_unit.values(input_ids, attention_mask, T, batch_size) * mask
            kl = self._rollout_kl(out, input_ids, attention_mask, mask, batch_size)
        kl_coef = self.kl_ctl.value
        rewards = token_level_rewards(scores, kl, mask, kl_coef)
        advantages, returns = gae(rewards, values, mask, args.gamma, args.lam)

        g_mask, g_adv, g_values, g_returns, g_kl = (
            pad_and_gather(self.accelerator, x) for x in (mask, advantages, values, returns, kl)
        )
        if args.whiten_advantages:
            advantages = whiten(g_adv, g_mask)[rank * B : (rank + 1) * B, :T]
        out["advantages"], out["old_values"], out["returns"] = advantages, values, returns

        kl_per_token = mean_token_kl(g_kl, g_mask).item()  # the controller's unit (verl's target 0.1)
        metrics = self._metrics[mode]
        metrics["ppo/kl"].append(kl_per_token)
        metrics["ppo/kl_per_sequence"].append(g_kl.sum(dim=1).mean().item())  # summed over tokens
        metrics["ppo/kl_coef"].append(kl_coef)
        metrics["ppo/returns_mean"].append(masked_mean(g_returns, g_mask).item())
        metrics["ppo/values_mean"].append(masked_mean(g_values, g_mask).item())
        metrics["ppo/advantages_mean"].append(masked_mean(g_adv, g_mask).item())  # before whitening
        if mode == "train":
            self.kl_ctl.update(kl_per_token, n_steps=g_mask.size(0))
        return out

    # ----- loss -----------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The parent's policy loss (zeroed during ``critic_warmup_steps``) + ``vf_coef *`` the clipped value loss,
        scaled for gradient accumulation as TRL scales its own token-mean losses."""
        policy_loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        if mode == "train" and self.state.global_step < self.args.critic_warmup_steps:
            policy_loss = policy_loss * 0.0  # keeps the graph (DDP expects gradients for every parameter)
        mask = loss_mask(inputs).float()
        input_ids, attention_mask = model_inputs(inputs)
        T = inputs["completion_ids"].size(1)
        values = self.critic_unit.values(input_ids, attention_mask, T, input_ids.size(0))
        vf_loss, vf_clipfrac = value_loss(
            values, inputs["old_values"], inputs["returns"], mask, self.args.cliprange_value
        )
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        loss = policy_loss + self.args.vf_coef * vf_loss / normalizer

        metrics = self._metrics[mode]
        stats = torch.stack([vf_loss.detach(), vf_clipfrac])
        vf_loss_g, vf_clipfrac_g = gather(stats.unsqueeze(0)).mean(dim=0).tolist()
        metrics["ppo/value_loss"].append(vf_loss_g)
        metrics["ppo/value_clipfrac"].append(vf_clipfrac_g)
        ev = explained_variance(
            *(pad_and_gather(self.accelerator, x) for x in (values.detach(), inputs["returns"], mask))
        )
        metrics["ppo/explained_variance"].append(ev.item())
        return loss

    # ----- checkpoints ----------------------------------------------------------------------------------------------
    def _save(self, output_dir=None, state_dict=None):
        """Save the policy as GRPOTrainer does, minus the critic's weights, which go to ``<output_dir>/critic``."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if state_dict is None:
            state_dict = self.model.state_dict()
        policy_state = self.critic_unit.save(output_dir, state_dict, self.args.should_save)
        super()._save(output_dir, state_dict=policy_state)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Non-DeepSpeed resume: policy as usual, then the critic (DeepSpeed restores both from its engine files)."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self.critic_unit.load_from_checkpoint(resume_from_checkpoint)

    def _save_optimizer_and_scheduler(self, output_dir):
        """Also save the adaptive KL coefficient (``KL_STATE_FILE``): with the optimizer, i.e. before Trainer writes
        ``trainer_state.json``, which marks a checkpoint as complete."""
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            with open(os.path.join(output_dir, KL_STATE_FILE), "w") as f:
                json.dump({"kl_coef": self.kl_ctl.value}, f)

    def _load_optimizer_and_scheduler(self, checkpoint):
        """Also restore the adaptive KL coefficient on resume (a checkpoint without the file keeps the initial one)."""
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, KL_STATE_FILE) if checkpoint is not None else None
        if path is not None and os.path.isfile(path):
            with open(path) as f:
                self.kl_ctl.value = json.load(f)["kl_coef"]
