"""Running the comparison's jobs: one recipe launch each, in its own folder, reused when it finished before.

A run's folder holds ``command.json``, ``run.log`` and, when it succeeded, the recipe's ``summary.json`` and
``history.jsonl``. A finished run (its ``summary.json`` exists) is reused unless ``force``; a run that died after
writing checkpoints is resumed from the latest complete one; a failed run returns a record with the most telling
line of its log and does not stop the others.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from trl_ext.recipe.checkpoints import checkpoints


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.lru_cache(maxsize=1)
def gpu_names() -> tuple[str, ...]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(ln.strip() for ln in out.stdout.splitlines() if ln.strip()) if out.returncode == 0 else ()


def build_command(recipe, config, seed, run_dir, extra=(), launch_config=None, num_processes=1) -> list[str]:
    """The recipe command line, through the installed program (``trl_ext.cli train <recipe>``, what
    ``recipes/<recipe>_math.py`` runs too): plain python for one process without a launch config, else
    ``accelerate launch -m``."""
    recipe_args = ["--config", str(config), *map(str, extra), "--seed", str(seed), "--output_dir", str(run_dir)]
    program = ["-m", "trl_ext.cli", "train", recipe, *recipe_args]
    if launch_config is None and num_processes == 1:
        return [sys.executable, *program]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
           "--main_process_port", str(free_port())]
    if launch_config is not None:
        cmd += ["--config_file", str(launch_config)]
    if not gpu_names():
        cmd += ["--mixed_precision", "no"]  # CPU: fp32 (the project configs say bf16)
    return cmd + program


_ERROR_LINE = re.compile(r"^(?:\w+\.)*\w*(?:Error|Exception|Interrupt)\b.*|.*: error: .*|^Killed.*|.*Traceback.*")


def error_from_log(text: str, returncode=None) -> str:
    """The most telling line of a failed run's log: the last exception line (or argparse error), else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    hits = [ln for ln in lines if _ERROR_LINE.match(ln) and not ln.startswith("Traceback")]
    msg = hits[-1] if hits else (lines[-1] if lines else "no output")
    if returncode is not None:
        msg = f"exit {returncode}: {msg}"
    return msg[:500]


def _launch(cmd, log_path: Path, env: dict, timeout) -> int:
    """Run one recipe, stdout and stderr into ``log_path``; returns the exit status (124 on timeout)."""
    with open(log_path, "w") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        try:
            return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            log.write(f"\nTimeoutError: run killed after {timeout} s\n")
            return 124


def _strip_port(command: str) -> str:
    return re.sub(r"--main_process_port \d+", "", command)


def run_one(cmd, run_dir: Path, *, force=False, timeout=None, env=None, dry_run=False) -> dict:
    """Run (or reuse) one job; returns ``{status, error, seconds, summary, command, run_dir, log}``, ``status`` one of
    ok / reused / failed / planned."""
    run_dir = Path(run_dir)
    summary_path, log_path, cmd_path = run_dir / "summary.json", run_dir / "run.log", run_dir / "command.json"
    record = {"run_dir": str(run_dir), "log": str(log_path), "command": shlex.join(cmd), "status": None,
              "error": None, "seconds": None, "summary": None}
    if summary_path.exists() and not force:
        record["status"] = "reused"
        stored = json.loads(cmd_path.read_text()).get("command") if cmd_path.exists() else None
        if stored is not None and _strip_port(stored) != _strip_port(record["command"]):
            record["note"] = "reused a run made with another command (use --force to re-run it)"
        record["summary"] = json.loads(summary_path.read_text())
        return record
    if dry_run:
        record["status"] = "planned"
        return record
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in (summary_path, run_dir / "history.jsonl"):  # a forced re-run that fails must not look finished
        stale.unlink(missing_ok=True)
    # A run that died after writing checkpoints continues from the latest one; --force starts it over, deleting its
    # checkpoints (the folder belongs to the comparison) so that a later resume cannot pick up the abandoned run.
    if force:
        for old in checkpoints(run_dir, complete=False):
            shutil.rmtree(old)
    complete = checkpoints(run_dir)
    record["resumed_from"] = str(complete[-1]) if complete else None
    if complete:
        cmd = [*cmd, "--resume_from_checkpoint", "true"]
    cmd_path.write_text(json.dumps({"command": record["command"]}))
    start = time.time()
    rc = _launch(cmd, log_path, {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}, timeout)
    record["seconds"] = time.time() - start
    if rc == 0 and summary_path.exists():
        record["status"] = "ok"
        record["summary"] = json.loads(summary_path.read_text())
    else:
        record["status"] = "failed"
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        record["error"] = error_from_log(text, rc) if rc != 0 else "exit 0 but no summary.json written"
    return record


def load_history(run_dir) -> list[dict]:
    path = Path(run_dir) / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_correctness(run_dir, tag: str = "after", mode: str = "flexible") -> list[int] | None:
    """Per held-out problem, whether the greedy answer of the ``tag`` evaluation was right (``eval_<tag>``'s
    ``samples.jsonl``, in the split's order)."""
    path = Path(run_dir) / f"eval_{tag}" / "samples.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [int(bool(r[mode][0])) for r in rows]


class Progress:
    """``[compare] k/n runs done, elapsed, estimate of the time left`` from the runs that really ran (reused ones
    take no time and are left out of the rate)."""

    def __init__(self, total: int):
        self.total, self.done, self.ran_seconds, self.ran = total, 0, 0.0, 0
        self.start = time.time()

    def update(self, record: dict) -> str:
        self.done += 1
        if record.get("seconds"):
            self.ran_seconds += record["seconds"]
            self.ran += 1
        left = self.total - self.done
        eta = f", about {left * self.ran_seconds / self.ran / 60:.0f} min left" if self.ran and left else ""
        return f"{self.done}/{self.total} runs done, {(time.time() - self.start) / 60:.1f} min elapsed{eta}"
