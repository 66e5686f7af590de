"""One training run with a real colocated vLLM engine on CPU, for tests/vllm_tier/test_vllm_cpu.py: GRPO, DAPO, GSPO or
PPO with ``use_vllm=True, vllm_mode="colocate"``, started by ``python`` (1 process) or ``accelerate launch`` (2
processes, DDP or ZeRO-3). Calls ``trl_ext.vllm_cpu.keep_vllm_cpu_weights_reloadable()`` first, as a user must.

Checked on every rank, after every weight sync TRL makes:

* vLLM holds the policy: each of its parameters equals the policy's, cast to vLLM's dtype (q/k/v and gate/up
  concatenated as vLLM fuses them);
* vLLM computes with them: its next-token log-probabilities on a fixed prompt match a forward of the policy's
  weights (float32, HF), within bf16 error.

Over the run: every completion came from vLLM (its ``generate`` was called, the policy's ``generate`` never), the
weights vLLM computes with moved with training, and (PPO) no critic tensor was pushed. Prints one ``VLLM_RESULT``
line per rank; a failed assertion fails the run.
"""

import os
import sys
import time

import torch
from helpers.configs import tiny_dapo_config, tiny_gspo_config, tiny_ppo_config
from helpers.rewards import KeepRateReward, digit_reward, keep_rate_dataset, length_reward
from helpers.worker import build_trainer, emit, finish, rank_record, worker_parser

PROBE_QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def full_params(trainer):
    """{name: float32 copy} of the policy's parameters (gathered under ZeRO-3), without PPO's critic."""
    from trl_ext.trainers.critic import CRITIC_ATTR

    named = [(n, p) for n, p in trainer.model.named_parameters() if not n.startswith(CRITIC_ATTR + ".")]
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in named]):
            return {n: p.detach().float().clone() for n, p in named}
    return {n: p.detach().float().clone() for n, p in named}


def as_vllm_holds_it(policy: dict, name: str) -> torch.Tensor:
    """The policy's tensor for vLLM parameter ``name`` (Llama/Qwen2 layout: fused qkv_proj and gate_up_proj)."""
    if ".qkv_proj." in name:
        return torch.cat([policy[name.replace("qkv_proj", p)] for p in ("q_proj", "k_proj", "v_proj")])
    if ".gate_up_proj." in name:
        return torch.cat([policy[name.replace("gate_up_proj", p)] for p in ("gate_proj", "up_proj")])
    return policy[name]


class Probe:
    """Wraps the trainer's vLLM generation (sync and generate), the engine's ``load_weights`` and the policy's
    ``generate``; checks the engine against the policy after each sync."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.generation = trainer.vllm_generation
        self.engine_model = self.generation.llm.llm_engine.model_executor.driver_worker.model_runner.model
        self.syncs, self.pushed, self.vllm_generate_calls, self.vllm_prompts, self.hf_generate_calls = [], set(), 0, 0, 0
        self.first_hf_logprobs = None
        self.prompt_ids = trainer.processing_class.apply_chat_template(
            [{"role": "user", "content": PROBE_QUESTION}], add_generation_prompt=True, tokenize=True
        )
        if not isinstance(self.prompt_ids, list):  # a BatchEncoding in some transformers versions
            self.prompt_ids = list(self.prompt_ids["input_ids"])
        policy = trainer.accelerator.unwrap_model(trainer.model)
        self.reference = type(policy)(policy.config).eval()  # a plain float32 copy for the HF forward

        sync, generate, load = self.generation.sync_weights, self.generation.generate, self.engine_model.load_weights

        def sync_and_check():
            sync()
            self.check()

        def counted_generate(*args, **kwargs):
            self.vllm_generate_calls += 1
            self.vllm_prompts += len(kwargs.get("prompts", args[0] if args else []))
            return generate(*args, **kwargs)

        def recorded_load(weights):
            weights = list(weights)
            self.pushed.update(name for name, _ in weights)
            return load(weights)

        def hf_generate(*args, **kwargs):
            self.hf_generate_calls += 1
            raise AssertionError("the policy's HF generate was called with use_vllm=True")

        self.generation.sync_weights = sync_and_check
        self.generation.generate = counted_generate
        self.engine_model.load_weights = recorded_load
        policy.generate = hf_generate

    def check(self):
        policy = full_params(self.trainer)
        weights_diff, dtype, vllm_params = 0.0, None, dict(self.engine_model.named_parameters())
        for name, param in vllm_params.items():
            expected = as_vllm_holds_it(policy, name)
            if name.endswith(("embed_tokens.weight", "lm_head.weight")):  # vLLM pads the vocabulary (rows)
                param = param[: expected.shape[0]]
            assert param.shape == expected.shape, (name, param.shape, expected.shape)
            dtype = param.dtype
            weights_diff = max(weights_diff, (param.detach().float() - expected.to(param.dtype).float()).abs().max().item())

        from vllm import SamplingParams

        out = self.generation.llm.generate(
            [{"prompt_token_ids": self.prompt_ids}],
            sampling_params=SamplingParams(max_tokens=1, temperature=1.0, logprobs=5, seed=0),
            use_tqdm=False,
        )
        vllm_top = {t: lp.logprob for t, lp in out[0].outputs[0].logprobs[0].items()}
        missing, _ = self.reference.load_state_dict(policy, strict=False)
        tied = getattr(self.reference.config, "tie_word_embeddings", False)
        assert set(missing) <= ({"lm_head.weight"} if tied else set()), missing
        with torch.no_grad():
            logits = self.reference(input_ids=torch.tensor([self.prompt_ids])).logits[0, -1].float()
        hf = torch.log_softmax(logits, -1)
        if self.first_hf_logprobs is None:
            self.first_hf_logprobs = hf
        self.syncs.append({
            "step": self.trainer.state.global_step,
            "vllm_params": len(vllm_params),
            "vllm_dtype": str(dtype).removeprefix("torch."),
            "max_weight_diff": weights_diff,
            "max_logprob_diff": max(abs(v - hf[t].item()) for t, v in vllm_top.items()),
            # how far the policy's next-token distribution has moved since the first sync (top-5 of vLLM's tokens)
            "policy_moved": max(abs(hf[t].item() - self.first_hf_logprobs[t].item()) for t in vllm_top),
        })

    def record(self) -> dict:
        return {
            "syncs": self.syncs,
            "pushed": sorted(self.pushed),
            "vllm_generate_calls": self.vllm_generate_calls,
            "vllm_prompts": self.vllm_prompts,
            "hf_generate_calls": self.hf_generate_calls,
        }


def setup(cli):
    """(trainer class, config, reward functions, train dataset) of ``cli.algo``, with colocated vLLM."""
    from trl import GRPOTrainer

    from trl_ext import DAPOTrainer, GSPOTrainer, PPOTrainer
    from trl_ext.data.gsm8k import load_gsm8k

    common = dict(use_vllm=True, vllm_mode="colocate", use_cpu=cli.use_cpu, max_steps=cli.max_steps,
                  **({"ddp_backend": "gloo"} if cli.distributed else {}))
    prompts = load_gsm8k("synthetic", "train", num_examples=64)
    if cli.algo == "grpo":
        from trl import GRPOConfig

        return GRPOTrainer, tiny_dapo_config(cli.output_dir, config_class=GRPOConfig, **common), [length_reward], prompts
    if cli.algo == "dapo":
        # half of the prompts score the same for every completion: dynamic sampling must draw again (refill rounds)
        config = tiny_dapo_config(cli.output_dir, dynamic_sampling_max_rounds=10, **common)
        return DAPOTrainer, config, [KeepRateReward(seed=0)], keep_rate_dataset(256, keep_rate=0.5)
    if cli.algo == "gspo":
        config = tiny_gspo_config(cli.output_dir, per_device_train_batch_size=8, num_generations=4,
                                  max_completion_length=8, learning_rate=1e-3, logging_steps=1, seed=0,
                                  steps_per_generation=2, disable_tqdm=True, **common)
        return GSPOTrainer, config, [length_reward], prompts
    config = tiny_ppo_config(cli.output_dir, per_device_train_batch_size=4, max_completion_length=8,
                             learning_rate=1e-3, critic_learning_rate=1e-2, kl_coef=0.05, **common)
    return PPOTrainer, config, [digit_reward], prompts


def main():
    parser = worker_parser(__doc__)
    parser.add_argument("--algo", choices=["grpo", "dapo", "gspo", "ppo"], required=True)
    parser.add_argument("--max_steps", type=int, default=3)
    cli = parser.parse_args()
    cli.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cli.use_cpu = cli.use_cpu or not cli.distributed  # one plain process: the trainer on CPU

    from trl_ext.vllm_cpu import keep_vllm_cpu_weights_reloadable

    assert keep_vllm_cpu_weights_reloadable(), "vLLM is not on its CPU platform here"
    trainer_class, config, rewards, dataset = setup(cli)
    start = time.perf_counter()
    trainer = build_trainer(trainer_class, cli, config, rewards, dataset)
    init_seconds = time.perf_counter() - start
    probe = Probe(trainer)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    history = trainer.state.log_history
    emit("VLLM_RESULT", {
        **rank_record(trainer),
        **probe.record(),
        "init_seconds": init_seconds,
        "train_seconds": train_seconds,
        "rounds": [h["dapo/generation_rounds"] for h in history if "dapo/generation_rounds" in h],
        "losses": [h["loss"] for h in history if "loss" in h],
    })
    finish()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
