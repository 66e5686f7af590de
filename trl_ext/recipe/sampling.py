"""Verified samples of the start model, shared out over the ranks and cached on disk: what DPO's on-policy pairs
(``trl_ext.recipe.dpo_pairs``) and the RFT control (``trl_ext.recipe.controls``) are built from.

The training questions are cut into chunks (``chunk_bounds``); rank ``r`` of ``W`` samples chunks ``r, r + W, ...``
(``sample_records``: each chunk seeded by (seed, first question), so the records do not depend on the number of
ranks), writes each finished chunk to disk at once (a killed run resumes from the last finished chunk), and waits for
the other ranks' chunks on the files rather than in a collective (``shared_records``). Cache folders live under
``default_cache_dir()`` and are named by ``cache_key`` (the model's fingerprint and every setting).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)
# 2: explicit sampling config, only terminated chosen; 3: chunk-seeded sampling; 4: chunks record their seconds
CACHE_VERSION = "4"


def _model_fingerprint(model_path: str) -> dict:
    path = Path(model_path)
    if not path.is_dir():
        return {"model": model_path}
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + [path / "config.json"]
    return {
        "model": str(path.resolve()),
        "files": {f.name: [f.stat().st_size, int(f.stat().st_mtime)] for f in files if f.exists()},
    }


def cache_key(model_path: str, settings: dict) -> str:
    """Hash of the start model (path and checkpoint file stamps) and the settings: the name of a cached result."""
    blob = json.dumps({"v": CACHE_VERSION, **_model_fingerprint(model_path), **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _chunk_seed(seed: int, start: int) -> int:
    """Sampling seed of the chunk that starts at question ``start``: the same whichever rank samples it."""
    return int.from_bytes(hashlib.sha256(f"{seed}-{start}".encode()).digest()[:4], "big")


def sample_records(model_path: str, dataset, chunks, *, num_samples: int = 4, temperature: float = 1.0,
                   max_new_tokens: int = 256, batch_size: int = 64, backend: str = "hf", seed: int = 0,
                   done=None):
    """Sample and verify ``num_samples`` completions for the questions of each ``(start, end)`` chunk of ``dataset``,
    the model loaded once; each chunk is seeded by ``(seed, start)``, so a chunk gives the same records on any rank
    and in any run. Yields ``(chunk, records)``; chunks for which ``done(chunk)`` is true are skipped."""
    from trl_ext.eval import _use_vllm, evaluate, load_model
    from trl_ext.recipe.distributed import zero3_init_disabled

    todo = [c for c in chunks if done is None or not done(c)]
    if not todo:
        return
    with zero3_init_disabled():
        if _use_vllm(backend):
            from transformers import AutoTokenizer

            model, tokenizer = None, AutoTokenizer.from_pretrained(model_path)
        else:
            model, tokenizer = load_model(model_path)
        for start, end in todo:
            _, records = evaluate(
                model, tokenizer, dataset.select(range(start, end)), num_samples=num_samples, temperature=temperature,
                max_new_tokens=max_new_tokens, batch_size=batch_size, progress=False, model_path=model_path,
                seed=_chunk_seed(seed, start),
            )
            yield (start, end), records
    del model


def chunk_bounds(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(0, c), (c, 2c), ...]`` over ``n`` questions: the unit of sharding (rank r samples chunks r, r+W, ...) and
    of resuming (a finished chunk is on disk)."""
    return [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


def default_cache_dir() -> Path:
    from trl_ext.models.tiny import default_cache_dir as root

    return root() / "dpo_pairs"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def publish(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` to ``final`` atomically, unless another process (a concurrent run with the
    same cache key: the comparison runs several at once) published the same result first."""
    if final.exists():
        return
    try:
        os.replace(tmp, final)
    except OSError:
        if not final.exists():
            raise


def shared_records(model_path: str, dataset, parts: Path, *, rank: int = 0, world_size: int = 1,
                   chunk_size: int = 256, poll_seconds: float = 0.5, **sample_settings) -> tuple[list[dict], float]:
    """Verified samples of every question of ``dataset``, sampled by all ranks: rank ``r`` samples chunks ``r, r + W,
    ...`` (``sample_records``) and writes each finished chunk to ``parts`` atomically, skipping chunks already there
    (a killed run resumes; a rerun with the same ``parts`` samples nothing); then every rank waits *on the files* for
    the others' chunks (no collective, so no ``ddp_timeout`` can expire). Returns all records in question order and
    the sampling's wall time: each chunk file keeps the seconds it took (a rank's first chunk includes loading the
    model), and the ranks sample in parallel, so the time is the largest per-rank sum. A rerun that finds every chunk
    on disk reports the time the sampling took when it was done: it is part of what the data cost."""
    parts.mkdir(parents=True, exist_ok=True)
    chunks = chunk_bounds(len(dataset), chunk_size)

    def part(chunk) -> Path:
        return parts / f"chunk-{chunk[0]:08d}-{chunk[1]:08d}.json"

    started = time.time()
    for chunk, records in sample_records(model_path, dataset, chunks[rank::world_size],
                                         done=lambda c: part(c).exists(), **sample_settings):
        _write_atomically(part(chunk), json.dumps({"seconds": time.time() - started, "records": records}))
        started = time.time()
    waited, last_log = time.time(), time.time()
    while missing := [c for c in chunks if not part(c).exists()]:
        if time.time() - last_log > 60:
            logger.warning("sampling: rank %d waits for %d chunks of other ranks (%.0f s)", rank, len(missing),
                           time.time() - waited)
            last_log = time.time()
        time.sleep(poll_seconds)
    stored = [json.loads(part(c).read_text()) for c in chunks]
    per_rank = [sum(s["seconds"] for s in stored[r::world_size]) for r in range(world_size)]
    return [r for s in stored for r in s["records"]], max(per_rank, default=0.0)
