"""`.ci/run`, the CI script: it runs README's test commands, and a failure of any of them fails CI.

Each test runs the real script in a copy of the checkout's `.ci/run` and README.md, with `pip`, `python` and the vLLM
environment replaced by stand-ins on PATH that record their call and exit with a chosen status (nothing is installed
or tested for real: ~1 s)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def stand_in(path: Path, log: Path, status: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{path.name} $*" >> "{log}"\nexit {status}\n')
    path.chmod(0o755)


def ci_run(tmp_path: Path, pip=0, pytest_=0, vllm_env=0, vllm_pytest=0, readme=None) -> tuple[int, list[str], str]:
    """Exit status of `.ci/run`, the stand-ins called (in order), and its output."""
    repo, bin_dir, log = tmp_path / "repo", tmp_path / "bin", tmp_path / "calls.log"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", repo / ".ci" / "run")
    (repo / "README.md").write_text(readme or (REPO / "README.md").read_text())
    log.touch()
    stand_in(bin_dir / "pip", log, pip)
    stand_in(bin_dir / "python", log, pytest_)
    stand_in(repo / ".ci" / "vllm_env.sh", log, vllm_env)
    stand_in(repo / ".venv-vllm" / "bin" / "python", log, vllm_pytest)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(repo / ".ci" / "run")], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, [line.split()[0] for line in log.read_text().splitlines()], proc.stdout


def test_all_pass_runs_the_suite_then_the_vllm_tier(tmp_path):
    assert ci_run(tmp_path)[:2] == (0, ["pip", "python", "vllm_env.sh", "python"])


@pytest.mark.parametrize("failing", ["pip", "pytest_", "vllm_env", "vllm_pytest"])
def test_any_failing_command_fails_ci(tmp_path, failing):
    # before: `pip install ... && pytest ...` was no longer the script's last line, and under `set -e` a failure
    # inside an && list does not stop the script, so a failed install or suite passed CI whenever the vLLM tier did
    status, calls, _ = ci_run(tmp_path, **{failing: 1})
    assert status != 0, calls


def test_a_readme_whose_commands_differ_fails_ci_before_running_anything(tmp_path):
    readme = (REPO / "README.md").read_text().replace("tests/vllm_tier\n", "tests/vllm_tier -x\n")
    status, calls, out = ci_run(tmp_path, readme=readme)
    assert status != 0 and calls == [] and "differ" in out
