"""trl_ext.trainers.common: the loss mask, the forward inputs, and pad-and-gather over two real (gloo) processes."""

import re
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp

from trl_ext.trainers.common import loss_mask, model_inputs, pad_and_gather


def test_loss_mask_applies_the_tool_mask_when_there_is_one():
    completion = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert torch.equal(loss_mask({"completion_mask": completion}), completion)
    tool = torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1]])
    masked = loss_mask({"completion_mask": completion, "tool_mask": tool})
    assert masked.tolist() == [[1, 0, 1, 0], [1, 1, 0, 0]] and masked.dtype == completion.dtype


def test_model_inputs_put_prompt_and_completion_side_by_side():
    batch = {"prompt_ids": torch.tensor([[0, 5]]), "prompt_mask": torch.tensor([[0, 1]]),
             "completion_ids": torch.tensor([[6, 7, 9]]), "completion_mask": torch.tensor([[1, 1, 0]])}
    input_ids, attention_mask = model_inputs(batch)
    assert input_ids.tolist() == [[0, 5, 6, 7, 9]] and attention_mask.tolist() == [[0, 1, 1, 1, 0]]


def _gather_worker(rank, port, results):
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from accelerate import PartialState
    from accelerate.utils import operations

    PartialState(cpu=True)
    accelerator = SimpleNamespace(pad_across_processes=operations.pad_across_processes)
    width = 2 + rank  # rank 0 holds (2, 2), rank 1 (2, 3)
    completion = torch.full((2, width), rank + 1)
    prompt = torch.full((2, width), rank + 1)
    logps = torch.full((2, width), 0.5)
    results.put((rank, {
        "right": pad_and_gather(accelerator, completion).tolist(),
        "left": pad_and_gather(accelerator, prompt, pad_index=-1, pad_first=True).tolist(),
        "float": pad_and_gather(accelerator, logps, pad_index=1.0).tolist(),
        "rows": pad_and_gather(accelerator, torch.tensor([rank, rank])).tolist(),
    }))


def test_pad_and_gather_over_two_processes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    mp.start_processes(_gather_worker, args=(port, results), nprocs=2, start_method="spawn")
    by_rank = dict(results.get(timeout=60) for _ in range(2))
    assert by_rank[0] == by_rank[1]  # every process gets the same gathered tensor
    out = by_rank[0]
    assert out["right"] == [[1, 1, 0], [1, 1, 0], [2, 2, 2], [2, 2, 2]]
    assert out["left"] == [[-1, 1, 1], [-1, 1, 1], [2, 2, 2], [2, 2, 2]]
    assert out["float"] == [[0.5, 0.5, 1.0], [0.5, 0.5, 1.0], [0.5] * 3, [0.5] * 3]
    assert out["rows"] == [0, 0, 1, 1]


@pytest.mark.parametrize(
    "config,kwargs,field",
    [
        ("PPOConfig", dict(gamma=1.5), "gamma"),
        ("PPOConfig", dict(kl_target=0.1, kl_coef=0.0), "kl_coef"),
        ("PPOConfig", dict(fsdp="full_shard"), "fsdp"),
        ("DAPOConfig", dict(overlong_buffer_len=-1), "overlong_buffer_len"),
        ("DAPOConfig", dict(epsilon=0.3, epsilon_high=0.2), "epsilon_high"),
        ("DAPOConfig", dict(scale_rewards="batch"), "scale_rewards"),
        ("GSPOConfig", dict(num_minibatches=0), "num_minibatches"),
        ("GSPOConfig", dict(loss_type="dapo"), "loss_type"),
    ],
)
def test_configs_report_errors_in_one_style(tmp_path, config, kwargs, field):
    """Every trl_ext config error reads "<requirement> (got <field>=<value>, ...)[: <reason>]. <fix>"."""
    import trl_ext

    with pytest.raises(ValueError) as error:
        getattr(trl_ext, config)(output_dir=str(tmp_path), use_cpu=True, bf16=False, **kwargs)
    match = re.fullmatch(r"(?P<requirement>.+?) \(got (?P<got>.+?)\)(: (?P<reason>.+?))?\. (?P<fix>.+)", str(error.value))
    assert match, str(error.value)
    assert field in match["requirement"] and f"{field}=" in match["got"] and match["fix"]
    for name, value in kwargs.items():
        assert f"{name}={value!r}" in match["got"] or name not in match["got"]
