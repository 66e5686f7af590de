"""The offline tiny model: save, reload with the Auto classes, chat template, generate."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_round_trip_and_generate(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert model.config.model_type == "llama"
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 2e6
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token_id != tokenizer.pad_token_id
    # Every digit is its own token, so numbers are spelled digit by digit.
    assert tokenizer.tokenize("1080") == ["1", "0", "8", "0"]
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Ben has 3 cards."}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "<|im_start|>user\nBen has 3 cards.<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text  # lossless
    out = model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False)
    assert out.shape[1] <= len(ids) + 5
    # Reloading gives the same weights.
    again = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
