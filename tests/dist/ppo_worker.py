"""2-process PPOTrainer run for tests/trainers/test_ppo.py, under `accelerate launch` with DDP / ZeRO-2 / ZeRO-3.

Trains 2 optimizer steps on the tiny model and asserts, on every rank: the trainer sees 2 processes, the critic and
the policy both changed (and agree across ranks), the PPO metrics are finite, TRL's vLLM weight sync (against a
stand-in engine) pushes the policy and not the critic, and the saved model holds the policy without critic weights
plus a loadable critic. Prints one PPO_WORKER_OK line on rank 0 (its rank record and the last logged PPO metrics).
"""

import json
import math
import os

import torch
from accelerate.utils import gather
from helpers.configs import tiny_ppo_config
from helpers.rewards import digit_reward
from helpers.vllm_stand_in import expected_weights, pushed_weights
from helpers.worker import build_trainer, emit, finish, rank_record, worker_parser

from trl_ext import PPOTrainer
from trl_ext.data.gsm8k import load_gsm8k
from trl_ext.trainers.ppo import exclude_critic_from_weight_sync


def full_state(trainer, module):
    """{name: fp32 copy} of a module's parameters (gathered under ZeRO-3)."""
    named = list(module.named_parameters())
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in named]):
            return {n: p.detach().float().clone() for n, p in named}
    return {n: p.detach().float().clone() for n, p in named}


def flat(state):
    return torch.cat([v.flatten() for v in state.values()])


def main():
    parser = worker_parser(__doc__)
    parser.add_argument("--peft", action="store_true")
    parser.add_argument("--steps_per_generation", type=int, default=1)
    parser.add_argument("--num_iterations", type=int, default=1)
    parser.add_argument("--deepspeed", action="store_true", help="set the gloo backend DeepSpeed needs on CPU")
    cli = parser.parse_args()

    args = tiny_ppo_config(
        cli.output_dir,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=cli.steps_per_generation,
        steps_per_generation=cli.steps_per_generation,
        num_iterations=cli.num_iterations,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-3,
        critic_learning_rate=1e-2,
        kl_coef=0.05,
        kl_target=0.1,
        kl_horizon=100,
        use_cpu=cli.use_cpu,
        **({"ddp_backend": "gloo"} if cli.deepspeed else {}),
    )
    peft_config = None
    if cli.peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = build_trainer(PPOTrainer, cli, args, digit_reward, load_gsm8k("synthetic", "train", num_examples=32),
                            peft_config=peft_config)
    acc = trainer.accelerator
    assert acc.num_processes == 2, f"expected 2 processes, trainer sees {acc.num_processes}"
    assert trainer.ref_model is not None or cli.peft, "kl_coef > 0 needs a reference model"

    critic_before = full_state(trainer, trainer.critic)
    policy_module = trainer.model.get_base_model() if cli.peft else trainer.model
    policy_trainable = [n for n, p in policy_module.named_parameters() if "ppo_critic" not in n and p.requires_grad]

    def policy_state():
        state = full_state(trainer, policy_module)
        return {n: state[n] for n in policy_trainable}

    policy_before = policy_state()
    trainer.train()
    critic_after = full_state(trainer, trainer.critic)
    policy_after = policy_state()
    # trainable policy params: compare a fingerprint across ranks and with the initial weights (LoRA B starts at 0)
    assert not torch.equal(flat(critic_after), flat(critic_before)), "critic did not change"
    fp = torch.stack([flat(critic_after).sum(), flat(critic_after).abs().sum()]).unsqueeze(0)
    fps = gather(fp)
    assert torch.allclose(fps[0], fps[1], rtol=1e-5), f"critic differs across ranks: {fps.tolist()}"
    assert policy_trainable, "no trainable policy parameters"
    # the docstring promised this check, which was missing
    assert not torch.equal(flat(policy_after), flat(policy_before)), "policy did not change"
    fps = gather(torch.stack([flat(policy_after).sum(), flat(policy_after).abs().sum()]).unsqueeze(0))
    assert torch.allclose(fps[0], fps[1], rtol=1e-5), f"policy differs across ranks: {fps.tolist()}"

    logs = [h for h in trainer.state.log_history if "ppo/value_loss" in h]
    assert len(logs) == 2, trainer.state.log_history
    # rollout metrics appear on the steps that generated (every steps_per_generation * num_iterations micro-steps)
    for key in ["ppo/value_loss", "ppo/value_clipfrac", "ppo/explained_variance", "ppo/kl", "ppo/kl_coef",
                "ppo/returns_mean", "ppo/values_mean", "ppo/advantages_mean", "clip_ratio/region_mean"]:
        seen = [h[key] for h in logs if key in h]
        assert seen and all(math.isfinite(v) for v in seen), (key, logs)
    assert trainer.kl_ctl.value != 0.05, "adaptive KL controller did not update"

    # PPO with vLLM: TRL's weight sync, run against a recording stand-in engine on every rank (the gathers are
    # collectives), pushes the policy's weights under vLLM's names and full shapes and none of the critic's.
    pushed = pushed_weights(trainer, exclude_critic_from_weight_sync)
    assert sorted(pushed) == sorted(expected_weights(cli.model)), f"vLLM sync pushed {pushed}"

    save_dir = os.path.join(cli.output_dir, "final")
    trainer.save_model(save_dir)
    acc.wait_for_everyone()
    if acc.is_main_process:
        from safetensors.torch import load_file

        weights = "adapter_model.safetensors" if cli.peft else "model.safetensors"
        keys = load_file(os.path.join(save_dir, weights)).keys()
        assert not any("ppo_critic" in k for k in keys), "critic weights leaked into the policy checkpoint"
        with open(os.path.join(save_dir, "critic", "config.json")) as f:
            assert json.load(f)["architectures"][0].endswith("ForTokenClassification")
        saved = load_file(os.path.join(save_dir, "critic", "model.safetensors"))
        assert set(saved) <= set(critic_after), "unexpected keys in the saved critic"
        for name, value in saved.items():
            assert torch.allclose(value.float(), critic_after[name], atol=1e-6), f"saved critic differs at {name}"
        emit("PPO_WORKER_OK", {**rank_record(trainer), "last": logs[-1]})
    finish()


if __name__ == "__main__":
    main()
