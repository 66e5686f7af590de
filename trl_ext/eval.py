"""GSM8K evaluator: strict and flexible accuracy with 95% confidence intervals, pass@k / maj@k.

    python -m trl_ext.eval --model <path or hub id> --source ../shared/data/gsm8k --split test --limit 200
    trl-ext-eval --model <path> --source synthetic --num_samples 4 --temperature 1.0

Protocol (reported in every summary): the prompt is the loader's (question + verl's instruction, chat template with
generation prompt); greedy decoding unless ``--num_samples > 1``; *strict* = the last ``#### <number>`` line must
equal the gold answer numerically, *flexible* = the last number in the completion must. Generation uses vLLM when it
is installed and a GPU is present, otherwise batched Hugging Face ``generate`` with left padding.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections import Counter
from pathlib import Path

from trl_ext.rewards.answers import MODES

logger = logging.getLogger(__name__)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (well-behaved at 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def sampling_config(model, tokenizer, num_samples: int, temperature: float, max_new_tokens: int):
    """An explicit ``GenerationConfig`` for evaluation and sampling, as TRL's rollouts build one: plain sampling at
    ``temperature`` (greedy at 0), with every knob that reshapes the distribution set to its neutral value. In
    transformers 5 ``generate`` fills each field left ``None`` from the checkpoint's ``generation_config.json``, so a
    checkpoint's ``repetition_penalty`` or ``top_k`` would otherwise change what is measured."""
    from transformers import GenerationConfig

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sample = num_samples > 1 or temperature > 0
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        temperature=temperature if sample else 1.0,
        top_p=1.0,
        top_k=0,
        min_p=0.0,
        typical_p=1.0,
        epsilon_cutoff=0.0,
        eta_cutoff=0.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        num_beams=1,
        num_return_sequences=num_samples,
        pad_token_id=pad_id,
        eos_token_id=model.generation_config.eos_token_id or tokenizer.eos_token_id,
    )


def _generate_hf(model, tokenizer, prompts, num_samples, temperature, max_new_tokens, batch_size, progress):
    """Completions ``(text, token count, terminated)`` per prompt, ``num_samples`` each, with batched HF generate;
    ``terminated``: the completion ended with EOS within ``max_new_tokens`` (not cut off by the limit)."""
    import torch
    from tqdm.auto import tqdm

    tokenizer.padding_side = "left"
    config = sampling_config(model, tokenizer, num_samples, temperature, max_new_tokens)
    eos_ids = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    device = next(model.parameters()).device
    # Longest prompts first: batches of similar length waste less padding, and an OOM shows up at once.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[list[tuple[str, int, bool]]] = [[] for _ in prompts]
    rows_per_batch = max(1, batch_size // num_samples)
    model.eval()
    with torch.inference_mode(), tqdm(total=len(prompts), desc="eval", disable=not progress) as bar:
        for start in range(0, len(order), rows_per_batch):
            idx = order[start : start + rows_per_batch]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            gen = model.generate(**enc, generation_config=config)
            completion_ids = gen[:, enc["input_ids"].shape[1] :]
            for j, ids in enumerate(completion_ids.tolist()):
                # Cut at the first EOS (kept out of the text) and drop padding.
                n, terminated = len(ids), False
                for k, t in enumerate(ids):
                    if t in eos_ids:
                        n, terminated = k + 1, True
                        break
                text = tokenizer.decode(ids[:n], skip_special_tokens=True)
                outputs[idx[j // num_samples]].append((text, n, terminated))
            bar.update(len(idx))
    return outputs


def _generate_vllm(model_path, tokenizer, prompts, num_samples, temperature, max_new_tokens, seed=0):
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_path, dtype="bfloat16", seed=seed)
    params = SamplingParams(n=num_samples, temperature=temperature, max_tokens=max_new_tokens)
    results = llm.generate(prompts, params)
    return [[(o.text, len(o.token_ids), o.finish_reason == "stop") for o in r.outputs] for r in results]


def _rate(flags) -> float | None:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else None


def score(completions: list[list[str]], answers: list[str], steps: list[int] | None = None) -> dict:
    """Accuracy table from per-problem completion lists (the first completion is the 'greedy'/mean@1 one).

    Besides accuracy per mode: ``format_rate`` (completions with a ``#### N`` answer), ``shows_work`` (share of the
    first completions that show their work, ``trl_ext.rewards.shows_work``), ``by_strategy`` (flexible accuracy of
    all completions that show their work vs those that answer directly) and, when the reference solutions' step
    counts are given, ``by_steps`` (accuracy of the first completions per step count; 4 and more pooled as "4+").
    """
    from trl_ext.rewards.answers import extract_answer, is_correct, normalize_number
    from trl_ext.rewards.gsm8k import shows_work

    n = len(answers)
    k = len(completions[0]) if completions else 0
    summary: dict = {"num_problems": n, "num_samples": k}
    correct_by_mode = {}
    for mode in MODES:
        correct = [[is_correct(c, gold, mode=mode) for c in comps] for comps, gold in zip(completions, answers)]
        correct_by_mode[mode] = correct
        total = sum(map(sum, correct))
        first = sum(c[0] for c in correct)
        lo, hi = wilson_interval(first, n)
        entry = {"accuracy": first / n if n else 0.0, "ci95": [lo, hi]}
        if k > 1:
            entry[f"mean@{k}"] = total / (n * k)
            entry[f"pass@{k}"] = sum(any(c) for c in correct) / n
            majority = 0
            for comps, gold in zip(completions, answers):
                votes = Counter(a for a in (normalize_number(extract_answer(c, mode=mode)) for c in comps) if a is not None)
                if votes and is_correct(f"#### {votes.most_common(1)[0][0]}", gold, mode="strict"):
                    majority += 1
            entry[f"maj@{k}"] = majority / n
        summary[mode] = entry
    formatted = sum(extract_answer(c, mode="strict") is not None for comps in completions for c in comps)
    summary["format_rate"] = formatted / max(1, n * k)

    worked = [[shows_work(c) for c in comps] for comps in completions]
    summary["shows_work"] = _rate(w[0] for w in worked) or 0.0
    flexible = correct_by_mode["flexible"]
    pairs = [(w, ok) for ws, oks in zip(worked, flexible) for w, ok in zip(ws, oks)]
    summary["by_strategy"] = {
        name: {"completions": sum(w == want for w, _ in pairs), "flexible": _rate(ok for w, ok in pairs if w == want)}
        for name, want in (("worked", True), ("direct", False))
    }
    if steps is not None:
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(steps):
            groups.setdefault(str(s) if s < 4 else "4+", []).append(i)
        summary["by_steps"] = {
            key: {"problems": len(idx), **{m: _rate(correct_by_mode[m][i][0] for i in idx) for m in MODES}}
            for key, idx in sorted(groups.items())
        }
    return summary


def rng_devices(model) -> list[int]:
    """The CUDA device whose generator an evaluation of ``model`` forks: the one it generates on (none on CPU). Not
    every visible GPU: each rank of a launch sees them all, and saving their states would touch each one."""
    device = getattr(model, "device", None)
    if device is None or device.type != "cuda":
        return []
    import torch

    return [device.index if device.index is not None else torch.cuda.current_device()]


def evaluate(
    model,
    tokenizer,
    dataset,
    *,
    num_samples: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    progress: bool = True,
    model_path: str | None = None,
    seed: int = 0,
):
    """Evaluate ``model`` on a dataset from ``load_gsm8k``. Returns ``(summary, records)``.

    ``model`` may be ``None`` when ``model_path`` is given and vLLM is used. Sampling is seeded with ``seed``, so a
    sampled evaluation of the same model gives the same numbers again (on the same hardware), from a private copy of
    torch's generators: the global RNG state (CPU and the CUDA device it generates on) is left exactly as it was
    found, so an evaluation during training (the accuracy curve) does not reseed the training's sampling.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if num_samples > 1 and temperature <= 0:
        temperature = 1.0
    prompts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in dataset["prompt"]]
    start = time.time()
    if model is None:
        outputs = _generate_vllm(model_path, tokenizer, prompts, num_samples, temperature, max_new_tokens, seed)
    else:
        import torch

        with torch.random.fork_rng(devices=rng_devices(model)):
            torch.manual_seed(seed)
            outputs = _generate_hf(model, tokenizer, prompts, num_samples, temperature, max_new_tokens, batch_size,
                                   progress)
    seconds = time.time() - start
    completions = [[text for text, _, _ in out] for out in outputs]
    lengths = [n for out in outputs for _, n, _ in out]
    from trl_ext.data.gsm8k import reasoning_steps

    steps = [reasoning_steps(sol) for sol in dataset["solution"]] if "solution" in dataset.column_names else None
    summary = score(completions, list(dataset["answer"]), steps)
    summary.update(
        mean_completion_tokens=sum(lengths) / max(1, len(lengths)),
        tokens_per_second=sum(lengths) / max(seconds, 1e-9),
        generation_seconds=seconds,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        backend="vllm" if model is None else "hf",
        protocol="strict: last '#### <number>' line; flexible: last number; numeric comparison; "
        + ("greedy" if num_samples == 1 and temperature == 0 else f"sampled T={temperature}, k={num_samples}"),
    )
    from trl_ext.rewards.answers import is_correct

    records = [
        {
            "question": q,
            "answer": a,
            "completions": comps,
            "terminated": [done for _, _, done in out],
            "strict": [is_correct(c, a, mode="strict") for c in comps],
            "flexible": [is_correct(c, a, mode="flexible") for c in comps],
        }
        for q, a, comps, out in zip(dataset["question"], dataset["answer"], completions, outputs)
    ]
    return summary, records


def load_model(model_name_or_path: str, dtype: str = "auto"):
    """Model + tokenizer on the best device: bf16 on a GPU (unless told otherwise), fp32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    if dtype == "auto":
        dtype = "bfloat16" if cuda else "float32"
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype=getattr(torch, dtype))
    return model.to("cuda" if cuda else "cpu"), tokenizer


def _use_vllm(backend: str) -> bool:
    if backend == "hf":
        return False
    import importlib.util

    import torch

    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if backend == "vllm" and not available:
        raise RuntimeError("--backend vllm needs the vllm package and a CUDA GPU")
    return available


def evaluate_path(
    model_name_or_path: str,
    source: str = "openai/gsm8k",
    split: str = "test",
    *,
    limit: int | None = None,
    num_samples: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    output_dir: str | Path | None = None,
    backend: str = "auto",
    progress: bool = True,
    dataset_kwargs: dict | None = None,
) -> dict:
    """Load a model and a GSM8K split, evaluate, and write ``summary.json`` + ``samples.jsonl`` to ``output_dir``."""
    from trl_ext.data.gsm8k import load_gsm8k

    dataset = load_gsm8k(source, split, limit=limit, **(dataset_kwargs or {}))
    if _use_vllm(backend):
        from transformers import AutoTokenizer

        model, tokenizer = None, AutoTokenizer.from_pretrained(model_name_or_path)
    else:
        model, tokenizer = load_model(model_name_or_path)
    summary, records = evaluate(
        model,
        tokenizer,
        dataset,
        num_samples=num_samples,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
        model_path=model_name_or_path,
    )
    summary.update(model=str(model_name_or_path), source=source, split=split)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        with open(out / "samples.jsonl", "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
    return summary


def percent(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def format_mechanism(s: dict) -> str | None:
    """One line on *how* the answers are reached: share that show their work, how often each strategy is right
    (flexible; over all completions), accuracy by the problems' step count, mean completion length."""
    if "shows_work" not in s:
        return None
    strategy = s["by_strategy"]
    line = (f"shows work {percent(s['shows_work'])} (right: worked {percent(strategy['worked']['flexible'])}, direct "
            f"{percent(strategy['direct']['flexible'])})")
    if s.get("by_steps"):
        line += "; by steps " + ", ".join(f"{k}: {percent(v['flexible'])}" for k, v in s["by_steps"].items())
    return line + f"; mean length {s['mean_completion_tokens']:.1f} tokens"


def format_summary(s: dict) -> str:
    lines = [f"{s.get('model', 'model')} on {s.get('source', '?')}[{s.get('split', '?')}], {s['num_problems']} problems"]
    for mode in MODES:
        e = s[mode]
        extra = "".join(f", {k} {v:.3f}" for k, v in e.items() if "@" in k)
        lines.append(
            f"  {mode:8s} accuracy {100 * e['accuracy']:5.1f}% "
            f"(95% CI {100 * e['ci95'][0]:.1f}-{100 * e['ci95'][1]:.1f}){extra}"
        )
    lines.append(
        f"  format rate {100 * s['format_rate']:.1f}%, mean completion {s['mean_completion_tokens']:.1f} tokens, "
        f"{s['tokens_per_second']:.0f} tokens/s ({s['backend']})"
    )
    mechanism = format_mechanism(s)
    if mechanism:
        lines.append("  " + mechanism)
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model path or hub id")
    parser.add_argument("--source", default="openai/gsm8k", help="hub id, local JSONL dir/file, or 'synthetic'")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_samples", type=int, default=1, help="k completions per problem (pass@k, maj@k)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (1.0 when num_samples > 1)")
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--output_dir", default="eval_output")
    parser.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    summary = evaluate_path(
        args.model,
        args.source,
        args.split,
        limit=args.limit,
        num_samples=args.num_samples,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        output_dir=args.output_dir,
        backend=args.backend,
        progress=not args.no_progress,
    )
    print(format_summary(summary))
    print(f"wrote {Path(args.output_dir) / 'summary.json'} and samples.jsonl")


if __name__ == "__main__":
    main()
