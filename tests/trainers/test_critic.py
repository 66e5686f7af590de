"""The PPO critic unit (trl_ext.trainers.critic) on its own, without a trainer: construction from the policy or a
reward model, values, param groups, gradient sync and clipping, and save / load of every weight layout. The trainer's
use of it (learning, resume through Trainer, DDP / ZeRO runs) is tested in test_ppo.py."""

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, Trainer

from trl_ext.trainers.critic import CRITIC_ATTR, CRITIC_DIR, Critic, load_critic_weights, split_critic_state


def critic_args(**kw):
    return SimpleNamespace(**{"value_model_name_or_path": None, "model_init_kwargs": None,
                              "trust_remote_code": False, **kw})


@pytest.fixture
def policy(tiny_model_path):
    return AutoModelForCausalLM.from_pretrained(tiny_model_path)


ONE_PROCESS = SimpleNamespace(distributed_type=SimpleNamespace(name="NO"))  # an accelerator that wraps nothing


def decay_names(model):
    return Trainer.get_decay_parameter_names(None, model)  # Trainer's rule; it does not use the trainer


def test_built_from_the_policy_with_a_zero_head(policy):
    critic = Critic.build(policy, critic_args()).model
    assert type(critic).__name__.endswith("ForTokenClassification") and critic.config.num_labels == 1
    assert critic.dtype == policy.dtype
    assert torch.count_nonzero(critic.score.weight) == 0 and torch.count_nonzero(critic.score.bias) == 0
    backbone = dict(critic.model.named_parameters())
    for name, param in policy.model.named_parameters():
        assert torch.equal(param, backbone[name]), f"backbone weight {name} not loaded from the policy"
    assert all(m.p == 0 for m in critic.modules() if isinstance(m, torch.nn.Dropout))


def test_built_from_a_reward_model_reuses_its_score_head(policy, tiny_model_path, tmp_path):
    reward_model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    torch.nn.init.normal_(reward_model.score.weight)
    reward_model.save_pretrained(tmp_path / "rm")
    critic = Critic.build(policy, critic_args(value_model_name_or_path=str(tmp_path / "rm"))).model
    assert torch.equal(critic.score.weight, reward_model.score.weight)
    assert torch.count_nonzero(critic.score.bias) == 0  # the reward model has no bias: fresh, so zero


def test_model_init_kwargs_apply_except_device_map(policy):
    args = critic_args(model_init_kwargs={"dtype": torch.float64, "device_map": "does-not-exist"})
    assert Critic.build(policy, args).model.dtype == torch.float64


def test_values_are_the_states_before_each_completion_token(policy):
    critic = Critic.build(policy, critic_args())
    torch.nn.init.normal_(critic.model.score.weight)
    input_ids = torch.randint(3, 100, (5, 9))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, :3] = 0  # a left-padded prompt
    with torch.no_grad():
        logits = critic.model(input_ids=input_ids, attention_mask=attention_mask).logits
        values = critic.values(input_ids, attention_mask, 4, batch_size=2)  # in chunks of 2, 2, 1 rows
    assert values.shape == (5, 4) and values.dtype == torch.float32
    # V(s_t) for completion token t (positions 5..8) is read at position t - 1
    torch.testing.assert_close(values, logits[:, 4:8, 0].float())


def test_param_groups_decay_weights_not_biases_or_norms(policy):
    critic = Critic.build(policy, critic_args())
    critic.model.model.embed_tokens.weight.requires_grad_(False)
    groups = critic.param_groups(3e-4, 0.1, decay_names(critic.model))
    assert [g["name"] for g in groups] == ["critic", "critic_no_decay"]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0] and all(g["lr"] == 3e-4 for g in groups)
    names = {id(p): n for n, p in critic.model.named_parameters()}
    decayed, spared = ({names[id(p)] for p in g["params"]} for g in groups)
    assert all("norm" in n or n.endswith("bias") for n in spared), spared
    assert not any("norm" in n or n.endswith("bias") for n in decayed), decayed
    trainable = {n for n, p in critic.model.named_parameters() if p.requires_grad}
    assert decayed | spared == trainable and "model.embed_tokens.weight" not in decayed
    # no empty group: a critic whose biases and norms are all frozen gets only the decay group
    for name, p in critic.model.named_parameters():
        p.requires_grad_(name not in spared)
    assert [g["name"] for g in critic.param_groups(1e-3, 0.1, decay_names(critic.model))] == ["critic"]


def test_hidden_from_optimizer_restores_the_flags(policy):
    critic = Critic.build(policy, critic_args())
    frozen = critic.model.model.embed_tokens.weight.requires_grad_(False)
    with pytest.raises(RuntimeError, match="boom"), critic.hidden_from_optimizer():
        assert not any(p.requires_grad for p in critic.parameters())
        raise RuntimeError("boom")
    assert not frozen.requires_grad
    assert all(p.requires_grad for p in critic.parameters() if p is not frozen)


@pytest.mark.parametrize("distributed_type,by_engine,manual", [
    ("MULTI_CPU", False, True),
    ("MULTI_GPU", False, True),  # also one process launched by torchrun (WORLD_SIZE=1): accelerate still wraps DDP
    ("DEEPSPEED", True, False),
    ("NO", False, False),
])
def test_attach_makes_the_critic_a_submodule_and_ddp_ignores_it(policy, distributed_type, by_engine, manual):
    from accelerate.utils import DistributedType

    critic = Critic.build(policy, critic_args())
    accelerator = SimpleNamespace(distributed_type=DistributedType[distributed_type])
    critic.attach(policy, accelerator, distributed_by_engine=by_engine)
    assert getattr(policy, CRITIC_ATTR) is critic.model and critic.manual_sync is manual
    ignored = getattr(policy, "_ddp_params_and_buffers_to_ignore", None)
    if manual:
        expected = {f"{CRITIC_ATTR}.{n}" for n, _ in critic.model.named_parameters()}
        assert expected <= set(ignored) and all(n.startswith(CRITIC_ATTR + ".") for n in ignored)
    else:
        assert ignored is None


def test_sync_gradients_averages_over_processes(policy, monkeypatch):
    critic = Critic.build(policy, critic_args())
    params = critic.parameters()
    for p in params:
        p.grad = torch.full_like(p, 1.0)
    other_rank = [torch.full_like(p, 3.0) for p in params]

    def all_reduce(flat):  # the sum over two ranks, the second holding other_rank's gradients
        flat += torch.cat([g.flatten() for g in other_rank])

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    critic.manual_sync = False
    critic.sync_gradients(2)
    assert all(torch.all(p.grad == 1.0) for p in params)  # DeepSpeed / one process: nothing to do
    critic.manual_sync = True
    critic.sync_gradients(2)
    assert all(torch.all(p.grad == 2.0) for p in params)


def test_clip_grad_norm_clips_policy_and_critic_separately(policy):
    critic = Critic.build(policy, critic_args())
    critic.attach(policy, ONE_PROCESS, distributed_by_engine=False)
    accelerator = SimpleNamespace(unscale_gradients=lambda: None)  # fp32: nothing to unscale
    critic_ids = {id(p) for p in critic.parameters()}
    for p in policy.parameters():
        p.grad = torch.full_like(p, 1e-4 if id(p) in critic_ids else 10.0)
    policy_norm, critic_norm = critic.clip_grad_norm(accelerator, policy, 1.0)
    assert float(policy_norm) > 100 and float(critic_norm) < 1.0  # pre-clip norms
    policy_grads = [p.grad for p in policy.parameters() if id(p) not in critic_ids]
    assert torch.linalg.vector_norm(torch.stack([g.norm() for g in policy_grads])).item() == pytest.approx(1.0, rel=1e-4)
    assert all(torch.all(p.grad == 1e-4) for p in critic.parameters())  # not shrunk by the policy's norm


def test_clip_grad_norm_unscales_an_fp16_gradient_scaler_once(policy):
    """fp16 without DeepSpeed: the scaler's unscale_ may run once per step; calling accelerate's clip_grad_norm_ per
    group unscaled twice and raised. A real Accelerator in fp16 with a real GradScaler (on CPU accelerate makes none,
    so one is attached as a GPU run would have it)."""
    from accelerate import Accelerator

    critic = Critic.build(policy, critic_args())
    critic.attach(policy, ONE_PROCESS, distributed_by_engine=False)
    accelerator = Accelerator(mixed_precision="fp16", cpu=True)
    optimizer = accelerator.prepare(torch.optim.SGD(policy.parameters(), lr=0.1))
    accelerator.native_amp, accelerator.scaler = True, torch.amp.GradScaler("cpu", init_scale=1024.0)
    critic_ids = {id(p) for p in critic.parameters()}
    accelerator.scaler.scale(torch.ones(()))  # a scaled backward's loss scaling (sets the scale up)
    for p in policy.parameters():  # scaled gradients, as after that backward
        p.grad = torch.full_like(p, 1024.0 * (1e-4 if id(p) in critic_ids else 10.0))
    policy_norm, critic_norm = critic.clip_grad_norm(accelerator, policy, 1.0)
    assert float(policy_norm) > 100 and float(critic_norm) < 1.0  # norms of the unscaled gradients
    assert all(torch.allclose(p.grad, torch.full_like(p, 1e-4)) for p in critic.parameters())  # unscaled once
    policy_grads = [p.grad for p in policy.parameters() if id(p) not in critic_ids]
    assert torch.linalg.vector_norm(torch.stack([g.norm() for g in policy_grads])).item() == pytest.approx(1.0, rel=1e-4)
    accelerator.scaler.step(optimizer.optimizer)  # the step the scaler guards still goes through
    accelerator.scaler.update()


def attached_critic(policy):
    critic = Critic.build(policy, critic_args())
    critic.attach(policy, ONE_PROCESS, distributed_by_engine=False)
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(torch.randn_like(p))
    return critic


def assert_same_weights(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), f"critic weight {name} differs"


def test_save_splits_the_policy_state_and_round_trips(policy, tmp_path):
    critic = attached_critic(policy)
    state = policy.state_dict()
    policy_state = critic.save(str(tmp_path), state, should_save=True)
    assert not any(CRITIC_ATTR in k for k in policy_state)
    assert set(policy_state) | {f"{CRITIC_ATTR}.{k}" for k in critic.model.state_dict()} == set(state)
    with open(tmp_path / CRITIC_DIR / "config.json") as f:
        assert json.load(f)["architectures"][0].endswith("ForTokenClassification")
    fresh = Critic.build(policy, critic_args())
    assert fresh.load_from_checkpoint(str(tmp_path))
    assert_same_weights(critic.model, fresh.model)
    # not the main process: nothing written, the policy's state still returned
    assert critic.save(str(tmp_path / "other"), state, should_save=False) == policy_state
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("layout", ["safetensors", "safetensors-sharded", "bin", "bin-sharded"])
def test_load_critic_weights_reads_every_layout(policy, tmp_path, layout):
    critic = attached_critic(policy)
    directory = tmp_path / CRITIC_DIR
    if layout.startswith("safetensors"):
        critic.model.save_pretrained(directory, **({"max_shard_size": "100KB"} if "sharded" in layout else {}))
        index = directory / "model.safetensors.index.json"
        assert index.is_file() == ("sharded" in layout)
    else:
        directory.mkdir()
        _, state = split_critic_state(policy.state_dict())
        if layout == "bin":
            torch.save(state, directory / "pytorch_model.bin")
        else:  # the index layout of pytorch_model-0000k-of-0000n.bin shards
            names = sorted(state)
            shards = {"pytorch_model-00001-of-00002.bin": names[::2], "pytorch_model-00002-of-00002.bin": names[1::2]}
            for file, keys in shards.items():
                torch.save({k: state[k] for k in keys}, directory / file)
            weight_map = {k: file for file, keys in shards.items() for k in keys}
            (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    fresh = Critic.build(policy, critic_args())
    load_critic_weights(fresh.model, str(directory))
    assert_same_weights(critic.model, fresh.model)


def test_load_from_checkpoint_refuses_to_go_on_with_a_fresh_critic(policy, tmp_path):
    critic = Critic.build(policy, critic_args())
    assert critic.load_from_checkpoint(str(tmp_path)) is False  # no critic folder (e.g. a GRPO checkpoint)
    (tmp_path / CRITIC_DIR).mkdir()
    with pytest.raises(FileNotFoundError, match="no critic weights"):
        critic.load_from_checkpoint(str(tmp_path))
    torch.save({"score.weight": torch.zeros(1, 3)}, tmp_path / CRITIC_DIR / "pytorch_model.bin")
    with pytest.raises(RuntimeError):  # strict: weights of another model are not silently half-loaded
        critic.load_from_checkpoint(str(tmp_path))
