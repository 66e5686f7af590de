"""PPO with a learned critic and GAE for TRL 1.x, built on GRPOTrainer's rollout (math in ``trl_ext.core.ppo``)."""

from __future__ import annotations

import json
import os

import torch
from accelerate.utils import gather, is_peft_model
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.nn.parallel import DistributedDataParallel
from transformers import AutoModelForTokenClassification
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from trl import GRPOTrainer
from trl.trainer.utils import disable_dropout_in_model, get_config_model_id, use_adapter

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
from trl_ext.trainers.ppo_config import PPOConfig

CRITIC_ATTR = "ppo_critic"  # name of the critic submodule inside the policy module
CRITIC_DIR = "critic"  # sub-folder of a checkpoint / saved model holding the critic (a TokenClassification model)
KL_STATE_FILE = "ppo_kl_ctl_state.json"


def exclude_critic_from_weight_sync(vllm_generation) -> None:
    """Keep the critic out of TRL's weight sync to vLLM (colocate and server modes).

    TRL 1.16 pushes every parameter that ``VLLMGeneration._iter_named_params`` yields from the policy module, and the
    critic is a submodule of it (so that DDP/ZeRO handle both as one model). Wrap that walk: critic parameters are
    still visited, so under ZeRO-3 every rank takes part in the same gathers, but never pushed to vLLM, whose model
    has no such weights. ``tests/test_ppo.py`` pins the upstream method this relies on.
    """
    walk = vllm_generation._iter_named_params
    prefix = CRITIC_ATTR + "."

    def policy_params():
        for name, param in walk():
            if not name.startswith(prefix):
                yield name, param

    vllm_generation._iter_named_params = policy_params


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


class PPOTrainer(GRPOTrainer):
    """PPO (Schulman et al. 2017) with a critic and GAE (Schulman et al. 2015) on top of ``trl.GRPOTrainer``.

    Rollout, reward functions and the clipped policy loss are GRPOTrainer's; this class only wraps two hooks:

    * ``_generate_and_score_completions``: after the parent's rollout, computes the critic's values, the per-token
      reward (reward functions' score at the last completion token minus ``kl_coef * KL(pi_old || pi_ref)`` per
      token), GAE, and replaces ``advantages`` by whitened (B, T) advantages (``_compute_loss`` accepts them as they
      are); ``old_values`` and ``returns`` travel in the same dict through TRL's buffering/splitting, so
      ``steps_per_generation > 1`` and ``num_iterations > 1`` work unchanged.
    * ``compute_loss``: the parent's policy loss + ``vf_coef *`` the clipped value loss.

    Design choice, critic placement: the critic (an ``AutoModelForTokenClassification`` with one label, initialised
    from the policy's checkpoint or ``value_model_name_or_path``) is registered as a submodule ``ppo_critic`` of the
    policy module (``PreTrainedModel`` or ``PeftModel``). Hence one DDP wrapper / one DeepSpeed engine / one optimizer
    hold both models: ZeRO-2/3 shard the critic like the policy, gradients of both are reduced in the same backward,
    and the critic and its optimizer state are in every checkpoint. Generation and the policy's log-probs use the
    policy module exactly as in GRPO (the critic is only called explicitly; ZeRO-3 fetches its parameters through its
    module hooks). Costs: under ZeRO-3 the generation-time parameter gather also gathers the critic, and under
    DeepSpeed gradient clipping is joint (elsewhere ``_clip_grad_norm`` clips policy and critic separately). With vLLM
    the critic is kept out of the weight sync (``exclude_critic_from_weight_sync``). A second DeepSpeed engine for the
    critic would avoid the joint gathers but needs its own backward/step/checkpoint plumbing outside Trainer.
    The critic has its own param group (``critic_learning_rate``), is saved to ``<output_dir>/critic`` (and stripped
    from the policy's weights), and is full-parameter even when the policy uses PEFT/LoRA.

    Reference model: GRPOTrainer builds (and DeepSpeed-prepares) ``ref_model`` only when ``beta != 0``; PPO keeps the
    KL out of the loss (``beta=0``) but needs reference log-probs for the in-reward KL. ``args.beta`` is therefore set
    nonzero only while the parent's ``__init__`` runs; with PEFT the adapter is disabled instead, as GRPO does.
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
        loss_beta = args.beta
        if self._ppo_needs_ref and loss_beta == 0.0:
            args.beta = args.kl_coef  # only so that GRPOTrainer.__init__ builds and prepares the reference model
        try:
            super().__init__(model, reward_funcs, args, *pargs, **kwargs)
        finally:
            args.beta = loss_beta
        self.beta = loss_beta
        self.kl_ctl = AdaptiveKLController(args.kl_coef, args.kl_target, args.kl_horizon)
        self._ppo_rewards_per_func = None
        self.critic = self._build_critic()
        self.model.add_module(CRITIC_ATTR, self.critic)
        if self.use_vllm:
            exclude_critic_from_weight_sync(self.vllm_generation)
        # DDP: a parameter used outside the DDP forward trips its reducer ("marked ready twice"), so DDP ignores the
        # critic and ``training_step`` all-reduces the critic's gradients at each synchronisation step.
        self._critic_manual_sync = (
            self.accelerator.num_processes > 1 and not self.is_deepspeed_enabled and not self.is_fsdp_enabled
        )
        if self._critic_manual_sync:
            names = [f"{CRITIC_ATTR}.{n}" for n, _ in self.critic.named_parameters()]
            names += [f"{CRITIC_ATTR}.{n}" for n, _ in self.critic.named_buffers()]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.model, names)

    # ----- critic ---------------------------------------------------------------------------------------------------
    def _build_critic(self):
        policy = self.model
        path = self.args.value_model_name_or_path or get_config_model_id(policy.config)
        init_kwargs = {k: v for k, v in (self.args.model_init_kwargs or {}).items() if k != "device_map"}
        init_kwargs.setdefault("dtype", policy.dtype)
        init_kwargs.setdefault("trust_remote_code", self.args.trust_remote_code)
        critic, info = AutoModelForTokenClassification.from_pretrained(
            path, num_labels=1, output_loading_info=True, **init_kwargs
        )
        disable_dropout_in_model(critic)
        # Freshly created weights (the value head) start at 0: identical on every rank and no initial value noise.
        fresh = [p for n, p in critic.named_parameters() if n in set(info["missing_keys"])]
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
        if not self.is_deepspeed_enabled:
            critic.to(self.args.device)
        return critic

    def _critic_values(self, input_ids, attention_mask, logits_to_keep, batch_size):
        """(B, logits_to_keep) values V(s_t) of the state before each completion token."""
        chunks = []
        for i in range(0, input_ids.size(0), batch_size):
            logits = self.critic(
                input_ids=input_ids[i : i + batch_size], attention_mask=attention_mask[i : i + batch_size]
            ).logits
            chunks.append(logits[:, -logits_to_keep - 1 : -1, 0].float())
        return torch.cat(chunks, dim=0)

    def training_step(self, model, inputs, num_items_in_batch):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._critic_manual_sync and self.accelerator.sync_gradients:
            grads = [p.grad for p in self.critic.parameters() if p.grad is not None]
            if grads:
                flat = _flatten_dense_tensors(grads)
                torch.distributed.all_reduce(flat)
                flat /= self.accelerator.num_processes
                for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
                    g.copy_(synced)
        return loss

    def create_optimizer(self, model=None):
        """Parent's optimizer for the policy, plus the critic's two param groups at ``critic_learning_rate``: weight
        decay on its weight matrices, none on biases and norm weights (Trainer's rule for the policy)."""
        if self.optimizer is not None:
            return self.optimizer
        critic_params = [p for p in self.critic.parameters() if p.requires_grad]
        for p in critic_params:
            p.requires_grad_(False)
        try:
            optimizer = super().create_optimizer(model)
        finally:
            for p in critic_params:
                p.requires_grad_(True)
        lr = self.args.critic_learning_rate or self.args.learning_rate
        decay = set(self.get_decay_parameter_names(self.critic))
        named = [(n, p) for n, p in self.critic.named_parameters() if p.requires_grad]
        for name, weight_decay, params in (
            ("critic", self.args.weight_decay, [p for n, p in named if n in decay]),
            ("critic_no_decay", 0.0, [p for n, p in named if n not in decay]),
        ):
            if params:
                optimizer.add_param_group({"params": params, "lr": lr, "weight_decay": weight_decay, "name": name})
        return optimizer

    def _clip_grad_norm(self, model):
        """Clip the policy's and the critic's gradients separately, each to ``max_grad_norm`` (verl clips its actor
        and critic optimizers independently): one large gradient must not shrink the other's update. Returns the
        policy's pre-clip norm (Trainer logs it as ``grad_norm``); the critic's goes to ``ppo/critic_grad_norm``.
        Under DeepSpeed the engine clips all parameters together (its ``gradient_clipping``), as before."""
        if self.is_deepspeed_enabled:
            return super()._clip_grad_norm(model)
        critic = [p for p in self.critic.parameters()]
        critic_ids = {id(p) for p in critic}
        policy = [p for p in model.parameters() if id(p) not in critic_ids]
        max_norm = self.args.max_grad_norm
        critic_norm = self.accelerator.clip_grad_norm_(critic, max_norm)
        self._metrics["train"]["ppo/critic_grad_norm"].append(float(critic_norm))
        return self.accelerator.clip_grad_norm_(policy, max_norm)

    # ----- rollout --------------------------------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._ppo_rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._ppo_rewards_per_func  # (B_global, n_funcs), identical on every rank

    def _ref_logps(self, input_ids, attention_mask, logits_to_keep, batch_size):
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

    def _global(self, x):
        """Gather a (B, T) tensor from all ranks, padding T to the longest."""
        return gather(self.accelerator.pad_across_processes(x, dim=1, pad_index=0))

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        # Groups of one completion always have zero std: upstream's frac_reward_zero_std would always read 1.
        self._metrics[mode].pop("frac_reward_zero_std", None)
        args = self.args
        B, T = out["completion_ids"].shape
        mask = out["completion_mask"] if "tool_mask" not in out else out["completion_mask"] * out["tool_mask"]
        mask = mask.float()
        rpf = self._ppo_rewards_per_func
        scores = (rpf * self.reward_weights.to(rpf.device).unsqueeze(0)).nansum(dim=1)
        rank = self.accelerator.process_index
        scores = scores[rank * B : (rank + 1) * B].to(mask.device)
        input_ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attention_mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
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
            values = self._critic_values(input_ids, attention_mask, T, batch_size) * mask
            kl = torch.zeros_like(values)
            if self._ppo_needs_ref:
                old = out.get("old_per_token_logps")
                if old is None:  # on-policy: the parent skips it, PPO's KL needs it
                    old = self._get_per_token_logps_and_entropies(
                        self.model, input_ids, attention_mask, T, batch_size=batch_size
                    )[0]
                ref = out.get("ref_per_token_logps")
                if ref is None:
                    ref = self._ref_logps(input_ids, attention_mask, T, batch_size)
                kl = kl_penalty(old.float(), ref.float(), args.kl_estimator) * mask
        kl_coef = self.kl_ctl.value
        rewards = token_level_rewards(scores, kl, mask, kl_coef)
        advantages, returns = gae(rewards, values, mask, args.gamma, args.lam)

        g_mask, g_adv = self._global(mask), self._global(advantages)
        g_values, g_returns, g_kl = self._global(values), self._global(returns), self._global(kl)
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
        policy_loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        if mode == "train" and self.state.global_step < self.args.critic_warmup_steps:
            policy_loss = policy_loss * 0.0  # keeps the graph (DDP expects gradients for every parameter)
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        mask = mask.float()
        input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        T = inputs["completion_ids"].size(1)
        values = self._critic_values(input_ids, attention_mask, T, input_ids.size(0))
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
        ev = explained_variance(self._global(values.detach()), self._global(inputs["returns"]), self._global(mask))
        metrics["ppo/explained_variance"].append(ev.item())
        return loss

    # ----- checkpoints ----------------------------------------------------------------------------------------------
    def _save(self, output_dir=None, state_dict=None):
        """Save the policy as GRPOTrainer does, minus the critic's weights, which go to ``<output_dir>/critic``."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if state_dict is None:
            state_dict = self.model.state_dict()
        prefix = CRITIC_ATTR + "."
        critic_sd = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        policy_sd = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
        if self.args.should_save and critic_sd:
            self.critic.save_pretrained(os.path.join(output_dir, CRITIC_DIR), state_dict=critic_sd)
        super()._save(output_dir, state_dict=policy_sd)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Non-DeepSpeed resume: policy as usual, then the critic (DeepSpeed restores both from its engine files)."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        directory = os.path.join(resume_from_checkpoint, CRITIC_DIR)
        if os.path.isdir(directory):
            load_critic_weights(self.critic, directory)

    def _save_optimizer_and_scheduler(self, output_dir):
        # With the optimizer, i.e. before Trainer writes trainer_state.json, which marks a checkpoint as complete.
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            with open(os.path.join(output_dir, KL_STATE_FILE), "w") as f:
                json.dump({"kl_coef": self.kl_ctl.value}, f)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, KL_STATE_FILE) if checkpoint is not None else None
        if path is not None and os.path.isfile(path):
            with open(path) as f:
                self.kl_ctl.value = json.load(f)["kl_coef"]
