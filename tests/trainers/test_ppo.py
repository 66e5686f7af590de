"""PPOConfig validation, PPOTrainer learning/checkpointing on 1 process, and 2-process DDP / ZeRO-2 / ZeRO-3 runs."""

import copy
import math

import datasets
import pytest
import torch
from helpers.configs import tiny_ppo_config
from helpers.launch import TESTS, launch
from helpers.rewards import yes_reward
from helpers.worker import records

WORKER = TESTS / "dist" / "ppo_worker.py"


# --- config -------------------------------------------------------------------------------------------------------


def test_config_defaults(tmp_path):
    args = tiny_ppo_config(tmp_path / "out")
    assert args.num_generations == 1 and type(args.num_generations) is int
    assert args.beta == 0.0 and args.gamma == 1.0 and args.lam == 0.95
    assert args.kl_estimator == "k1" and args.kl_target is None and args.whiten_advantages
    assert args.generation_batch_size == 8
    assert tiny_ppo_config(tmp_path / "out", num_generations=4).num_generations == 4


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(gamma=1.5), "gamma"),
        (dict(lam=-0.1), "lam"),
        (dict(kl_coef=-1.0), "kl_coef"),
        (dict(kl_estimator="k2"), "kl_estimator"),
        (dict(kl_target=0.0), "kl_target"),
        (dict(kl_target=0.1, kl_coef=0.0), "kl_target"),
        (dict(kl_horizon=0), "kl_horizon"),
        (dict(cliprange_value=0.0), "cliprange_value"),
        (dict(vf_coef=0.0), "vf_coef"),
        (dict(critic_learning_rate=-1e-5), "critic_learning_rate"),
        (dict(critic_warmup_steps=-1), "critic_warmup_steps"),
        (dict(num_generations=0), "num_generations"),
        (dict(importance_sampling_level="sequence"), "importance_sampling_level"),
    ],
)
def test_config_rejects_invalid(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_ppo_config(tmp_path / "out", **kwargs)


def test_ppo_under_fsdp_is_rejected(tmp_path, monkeypatch):
    """The critic runs outside the root FSDP forward, so PPO under FSDP (the shipped
    accelerate_configs/fsdp2.yaml, or TrainingArguments' fsdp) must fail at config time, naming what works instead."""
    with pytest.raises(ValueError, match=r"FSDP.*ZeRO-2 or ZeRO-3.*zero3.yaml"):
        tiny_ppo_config(tmp_path / "out", fsdp="full_shard")
    tiny_ppo_config(tmp_path / "out")  # without FSDP: fine
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --config_file fsdp2.yaml` sets
    with pytest.raises(ValueError, match=r"FSDP.*ZeRO-2 or ZeRO-3"):
        tiny_ppo_config(tmp_path / "out")


# --- 1-process training -------------------------------------------------------------------------------------------


def yes_no_dataset(n=32):
    """Two kinds of prompts; the reward depends only on the prompt, so a critic can predict it from the prompt."""
    rows = [{"prompt": [{"role": "user", "content": "Say yes." if i % 2 else "Say no, 7."}]} for i in range(n)]
    return datasets.Dataset.from_list(rows)


def make_trainer(tiny_model_path, args, dataset=None):
    from transformers import AutoTokenizer

    from trl_ext import PPOTrainer

    return PPOTrainer(
        model=tiny_model_path,
        reward_funcs=yes_reward,
        args=args,
        train_dataset=dataset if dataset is not None else yes_no_dataset(),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_path),
    )


def test_adaptive_kl_controller_gets_the_per_token_mean(tiny_model_path, tmp_path, monkeypatch):
    """The controller used to get the KL *summed* per sequence, while its target (verl's 0.1) is a
    per-token mean, so kl_coef grew when it should fall. The trainer must hand it ``mean_token_kl`` of the rollout
    (pinned to the pure function, tested against a loop in tests/core/test_core_ppo.py), and log the same value as
    ``ppo/kl``."""
    import trl_ext.trainers.ppo as ppo_module
    from trl_ext.core.ppo import adaptive_kl_update, mean_token_kl

    seen = []

    def spy(kl, mask):
        value = mean_token_kl(kl, mask)
        seen.append((value.item(), int(mask.size(0))))
        return value

    monkeypatch.setattr(ppo_module, "mean_token_kl", spy)
    args = tiny_ppo_config(tmp_path / "out", max_steps=2, learning_rate=1e-2, kl_coef=0.05, kl_target=0.1,
                           kl_horizon=100)
    trainer = make_trainer(tiny_model_path, args)
    trainer.train()
    assert len(seen) == 2
    expected = 0.05
    for value, rows in seen:
        expected = adaptive_kl_update(expected, value, 0.1, 100, rows)
    assert trainer.kl_ctl.value == pytest.approx(expected)
    logged = [h["ppo/kl"] for h in trainer.state.log_history if "ppo/kl" in h]
    # groups of one completion always have zero std; that upstream metric is not logged for PPO
    assert all("frac_reward_zero_std" not in h for h in trainer.state.log_history)
    assert logged == pytest.approx([v for v, _ in seen])
    assert seen[1][0] != 0.0  # the policy moved away from the reference, so the KL is a real number to track


def test_critic_learns_explained_variance_rises(tiny_model_path, tmp_path):
    # Critic warm-up for the whole run: only the critic learns, the policy must stay exactly as it was.
    args = tiny_ppo_config(
        tmp_path / "out", max_steps=20, learning_rate=1e-3, critic_learning_rate=3e-3, kl_coef=0.0,
        critic_warmup_steps=100, lam=1.0, lr_scheduler_type="constant",
    )
    trainer = make_trainer(tiny_model_path, args)
    assert trainer.ref_model is None  # kl_coef == 0: no reference model
    policy_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "ppo_critic" not in n}
    trainer.train()
    ev = [h["ppo/explained_variance"] for h in trainer.state.log_history if "ppo/explained_variance" in h]
    assert len(ev) == 20
    early, late = ev[0], sum(ev[-3:]) / 3
    assert late > 0.5 and late > early + 0.4, ev
    for n, p in trainer.model.named_parameters():
        if "ppo_critic" not in n:
            assert torch.equal(p, policy_before[n]), f"policy parameter {n} changed during critic warm-up"
    groups = trainer.optimizer.param_groups
    assert groups[-1]["lr"] == pytest.approx(3e-3) and groups[0]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize("critic_layout", ["single", "sharded"])
def test_checkpoint_resume_restores_critic_and_optimizer(tiny_model_path, tmp_path, critic_layout):
    common = dict(
        learning_rate=1e-3, critic_learning_rate=1e-2, kl_coef=0.05, kl_target=0.01, kl_horizon=50,
        save_strategy="steps", save_steps=2, max_completion_length=4, per_device_train_batch_size=4,
    )
    first = make_trainer(tiny_model_path, tiny_ppo_config(tmp_path / "out", max_steps=2, **common))
    first.train()
    ckpt = tmp_path / "out" / "checkpoint-2"
    assert (ckpt / "critic" / "model.safetensors").is_file()
    from safetensors.torch import load_file

    assert not any("ppo_critic" in k for k in load_file(ckpt / "model.safetensors"))
    assert first.kl_ctl.value != 0.05
    if critic_layout == "sharded":
        # a critic saved in shards (what save_pretrained writes for a large model) was silently
        # not restored on a non-DeepSpeed resume; only critic/model.safetensors was looked for.
        import shutil

        shutil.rmtree(ckpt / "critic")
        first.critic.save_pretrained(ckpt / "critic", max_shard_size="100KB")
        assert (ckpt / "critic" / "model.safetensors.index.json").is_file()
        assert not (ckpt / "critic" / "model.safetensors").exists()

    # A fresh trainer (fresh zero-head critic, fresh optimizer) resumes through Trainer's own code path; we snapshot
    # what it holds right after Trainer restored the optimizer (the weights are restored before that).
    second = make_trainer(tiny_model_path, tiny_ppo_config(tmp_path / "out", max_steps=2, **common))
    assert not torch.equal(second.critic.score.weight, first.critic.score.weight)
    snap, load = {}, second._load_optimizer_and_scheduler

    def load_and_snapshot(checkpoint):
        load(checkpoint)
        snap["critic"] = {n: p.detach().clone() for n, p in second.critic.named_parameters()}
        snap["policy"] = {n: p.detach().clone() for n, p in second.model.named_parameters() if "ppo_critic" not in n}
        snap["optimizer"] = copy.deepcopy(second.optimizer.state_dict())
        snap["kl_coef"] = second.kl_ctl.value

    second._load_optimizer_and_scheduler = load_and_snapshot
    second.train(resume_from_checkpoint=str(ckpt))
    assert snap, "Trainer did not restore the optimizer"
    for n, p in first.critic.named_parameters():
        assert torch.equal(p, snap["critic"][n]), f"critic parameter {n} not restored"
    for n, p in first.model.named_parameters():
        if "ppo_critic" not in n:
            assert torch.equal(p, snap["policy"][n]), f"policy parameter {n} not restored"
    assert snap["kl_coef"] == first.kl_ctl.value
    expected, restored = first.optimizer.state_dict(), snap["optimizer"]
    assert [g["lr"] for g in expected["param_groups"]] == [g["lr"] for g in restored["param_groups"]]
    assert [g["params"] for g in expected["param_groups"]] == [g["params"] for g in restored["param_groups"]]
    critic_ids = [i for g in expected["param_groups"] if g.get("name", "").startswith("critic") for i in g["params"]]
    assert len(critic_ids) == len(list(first.critic.parameters()))
    assert set(critic_ids) <= set(expected["state"]), "the critic has no Adam moments in the checkpoint"
    assert expected["state"].keys() == restored["state"].keys()
    for idx, state in expected["state"].items():
        for key, value in state.items():
            assert torch.equal(value, restored["state"][idx][key]), f"optimizer state {key} of param {idx} differs"


def test_minibatch_updates_exercise_the_clips(tiny_model_path, tmp_path):
    """With 4 mini-batch updates per rollout (the recipes' setting) the later updates are off-policy,
    so PPO's value clip acts; with one update per rollout it never could (V == V_old)."""
    def clipfrac(steps_per_generation):
        args = tiny_ppo_config(tmp_path / str(steps_per_generation) / "out", max_steps=8, learning_rate=1e-2,
                         critic_learning_rate=5e-2, cliprange_value=0.01, kl_coef=0.0, per_device_train_batch_size=4,
                         steps_per_generation=steps_per_generation, lr_scheduler_type="constant")
        trainer = make_trainer(tiny_model_path, args)
        trainer.train()
        return [h["ppo/value_clipfrac"] for h in trainer.state.log_history if "ppo/value_clipfrac" in h]

    assert max(clipfrac(1)) == 0.0
    assert max(clipfrac(4)) > 0.0


def test_unscorable_completions_leave_the_losses(tiny_model_path, tmp_path):
    """A completion for which every reward function returned None used to train as if it scored 0
    (a spurious negative signal). It is now masked out of the policy and value losses and of num_items_in_batch."""
    from trl_ext import PPOTrainer

    class Recording(PPOTrainer):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            self.rollouts = getattr(self, "rollouts", []) + [(out, [x["prompt"][-1]["content"] for x in inputs])]
            return out

    def yes_or_none(prompts, completions, **kwargs):
        return [1.0 if "yes" in p[-1]["content"] else None for p in prompts]

    from transformers import AutoTokenizer

    trainer = Recording(model=tiny_model_path, reward_funcs=yes_or_none, train_dataset=yes_no_dataset(),
                        args=tiny_ppo_config(tmp_path / "out", max_steps=2),
                        processing_class=AutoTokenizer.from_pretrained(tiny_model_path))
    trainer.train()
    for out, prompts in trainer.rollouts:
        none = torch.tensor(["yes" not in p for p in prompts])
        assert none.any() and (~none).any()
        assert out["completion_mask"][none].sum() == 0
        assert (out["advantages"][none] == 0).all()
        assert out["num_items_in_batch"] == out["completion_mask"].sum()
    fracs = [h["ppo/unscorable_frac"] for h in trainer.state.log_history if "ppo/unscorable_frac" in h]
    assert fracs and all(0 < f < 1 for f in fracs)


@pytest.mark.parametrize("peft", [False, True], ids=["plain", "lora"])
def test_vllm_weight_sync_pushes_the_policy_not_the_critic(tiny_model_path, tmp_path, peft):
    """PPO with vLLM: TRL's own sync (VLLMGeneration.sync_weights, against a recording stand-in engine) pushes every
    policy weight under the name and shape vLLM's model has, and none of the critic's. Without the hook it would push
    the critic too (checked first). ZeRO-3: tests/dist/ppo_worker.py."""
    from helpers.vllm_stand_in import expected_weights, pushed_weights
    from transformers import AutoTokenizer

    from trl_ext import PPOTrainer
    from trl_ext.trainers.ppo import exclude_critic_from_weight_sync

    peft_config = None
    if peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = PPOTrainer(model=tiny_model_path, reward_funcs=yes_reward, args=tiny_ppo_config(tmp_path / "out"),
                         train_dataset=yes_no_dataset(), processing_class=AutoTokenizer.from_pretrained(tiny_model_path),
                         peft_config=peft_config)
    unhooked = pushed_weights(trainer)
    assert any(name.startswith("ppo_critic.") for name, _ in unhooked)  # what the hook is for
    assert sorted(pushed_weights(trainer, exclude_critic_from_weight_sync)) == sorted(expected_weights(tiny_model_path))


def test_ppo_config_accepts_vllm(tmp_path):
    assert tiny_ppo_config(tmp_path / "out", use_vllm=True, vllm_mode="colocate").use_vllm is True
    assert tiny_ppo_config(tmp_path / "out", use_vllm=True, vllm_mode="server").vllm_mode == "server"


def test_vllm_importance_sampling_correction_reaches_the_ppo_loss(tiny_model_path, tmp_path):
    """With vLLM, TRL multiplies the per-token policy loss by ``importance_sampling_ratio`` (the sampler/trainer
    mismatch correction) inside the parent's loss, which PPO's compute_loss calls: halving the ratio halves PPO's
    policy loss and leaves the value loss alone."""
    trainer = make_trainer(tiny_model_path, tiny_ppo_config(tmp_path / "out", vf_coef=1e-9, kl_coef=0.0))
    batch = trainer._generate_and_score_completions(list(yes_no_dataset(8)))
    trainer.use_vllm, trainer.vllm_importance_sampling_correction = True, True  # what a vLLM run sets
    batch["advantages"] = torch.ones_like(batch["advantages"])
    batch["old_per_token_logps"] = trainer._get_per_token_logps_and_entropies(
        trainer.model, torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1),
        torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1), batch["completion_ids"].size(1))[0].detach()
    losses = []
    for ratio in (1.0, 0.5):
        batch["importance_sampling_ratio"] = torch.full_like(batch["old_per_token_logps"], ratio)
        losses.append(trainer.compute_loss(trainer.model, dict(batch)).item())
    assert losses[0] != 0 and losses[1] == pytest.approx(0.5 * losses[0], rel=1e-4)


def test_unloadable_critic_checkpoint_raises(tiny_model_path, tmp_path):
    """A checkpoint whose critic/ folder holds no loadable weights must not resume silently with a
    fresh critic."""
    args = tiny_ppo_config(tmp_path / "out", max_steps=1, save_strategy="steps", save_steps=1, max_completion_length=4,
                     per_device_train_batch_size=4, kl_coef=0.0)
    make_trainer(tiny_model_path, args).train()
    ckpt = tmp_path / "out" / "checkpoint-1"
    for f in (ckpt / "critic").glob("*.safetensors"):
        f.unlink()
    resumed = make_trainer(tiny_model_path, tiny_ppo_config(tmp_path / "out", max_steps=2, save_strategy="no",
                                                      max_completion_length=4, per_device_train_batch_size=4,
                                                      kl_coef=0.0))
    with pytest.raises(FileNotFoundError, match=r"critic.*no critic weights"):
        resumed.train(resume_from_checkpoint=str(ckpt))


def test_critic_weight_decay_spares_biases_and_norms(tiny_model_path, tmp_path):
    """Like the policy (Trainer's decay/no-decay groups), the critic's biases and norm weights get no
    weight decay; its other weights get args.weight_decay; both at the critic's learning rate."""
    args = tiny_ppo_config(tmp_path / "out", weight_decay=0.1, critic_learning_rate=3e-4)
    trainer = make_trainer(tiny_model_path, args)
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in trainer.critic.named_parameters()}
    groups = [g for g in optimizer.param_groups if any(id(p) in names for p in g["params"])]
    assert len(groups) == 2 and all(g["lr"] == 3e-4 for g in groups)
    decayed = {names[id(p)] for g in groups if g["weight_decay"] == 0.1 for p in g["params"]}
    spared = {names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert decayed and spared and len(decayed) + len(spared) == len(names)
    assert all("norm" in n or n.endswith("bias") for n in spared), spared
    assert not any("norm" in n or n.endswith("bias") for n in decayed), decayed


def test_policy_and_critic_gradients_are_clipped_separately(tiny_model_path, tmp_path):
    """As verl (two optimizers, each with its grad clip), a large policy gradient must not shrink the
    critic's gradient, and vice versa; the logged grad_norm is the policy's."""
    trainer = make_trainer(tiny_model_path, tiny_ppo_config(tmp_path / "out", max_grad_norm=1.0))
    trainer.create_optimizer()
    critic = {id(p) for p in trainer.critic.parameters()}
    policy = [p for p in trainer.model.parameters() if id(p) not in critic]
    for p in policy:
        p.grad = torch.full_like(p, 10.0)
    for p in trainer.critic.parameters():
        p.grad = torch.full_like(p, 1e-4)
    critic_grads = [p.grad.clone() for p in trainer.critic.parameters()]
    norm = trainer._clip_grad_norm(trainer.model)
    policy_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in policy]))
    assert policy_norm.item() == pytest.approx(1.0, rel=1e-4)
    assert float(norm) > 100  # the pre-clip policy norm
    assert all(torch.equal(g, p.grad) for g, p in zip(critic_grads, trainer.critic.parameters()))


# --- 2-process runs -----------------------------------------------------------------------------------------------

# For "multi_gpu" helpers.launch.launch appends the script argument `--use_cpu true` (DDP on CPU over gloo); the worker
# asserts world size 2.
DIST_CASES = {
    "ddp": ("multi_gpu", ["--steps_per_generation", "2", "--num_iterations", "2"]),
    "zero2-lora": ("zero2", ["--deepspeed", "--peft"]),
    "zero3": ("zero3", ["--deepspeed"]),
}


@pytest.mark.parametrize("case", list(DIST_CASES))
def test_two_process_run(case, tiny_model_path, tmp_path):
    config, extra = DIST_CASES[case]
    proc = launch(
        WORKER, ["--model", tiny_model_path, "--output_dir", tmp_path / "out", *extra], config=config, timeout=300
    )
    results = records(proc.stdout, "PPO_WORKER_OK")
    assert results, proc.stdout[-3000:]
    assert results[0]["world_size"] == 2
    assert not math.isnan(results[0]["last"]["ppo/value_loss"])


@pytest.mark.timeout(300)
def test_one_process_launched_as_torchrun_does(tiny_model_path, tmp_path):
    """`torchrun --nproc_per_node 1` (or a scheduler) exports RANK=0 LOCAL_RANK=0 WORLD_SIZE=1: accelerate then wraps
    the policy in DDP although there is one process, so DDP must ignore the critic as with several (it failed with
    "Expected to mark a variable ready only once")."""
    import json
    import os
    import subprocess
    import sys

    from helpers.configs import tiny_recipe_args
    from helpers.launch import OFFLINE_ENV, RECIPES, pythonpath

    out = tmp_path / "ppo"
    env = {**os.environ, **OFFLINE_ENV, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(29500 + os.getpid() % 1000), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": pythonpath(os.environ.get("PYTHONPATH"))}
    args = [*tiny_recipe_args("ppo", tiny_model_path, str(out)), "--eval_before", "false", "--eval_after", "false"]
    proc = subprocess.run([sys.executable, str(RECIPES / "ppo_math.py"), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 2 and summary["world_size"] == 1
