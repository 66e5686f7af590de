"""The GPU check's machinery, on CPU (fast, no torch): the pin file, the requirement checker on synthetic METADATA (and
on the real carried wheels when `bash .ci/gpu_check.sh prepare` has left them in .whl/), the archive a device call
carries, the run's plan and time boxes, the time box of a part, and the summary (one file + one archive)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / ".ci" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gc = load_gpu_check()
MARKERS = dict(gc.DEVICE_MARKERS)


def make_wheel(folder: Path, name: str, version: str, requires=(), requires_python=None, extras=()) -> Path:
    """A minimal valid wheel of a one-module package (METADATA, WHEEL, RECORD with hashes)."""
    dist_info = f"{name.replace('-', '_')}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Python: {requires_python}"] if requires_python else []
    metadata += [f"Provides-Extra: {e}" for e in extras] + [f"Requires-Dist: {r}" for r in requires]
    files = {
        f"{name.replace('-', '_')}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist_info}/METADATA": "\n".join(metadata) + "\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join(record + [f"{dist_info}/RECORD,,"]) + "\n"
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def world_of(wheels: list[Path], image_lines: str, tmp_path: Path) -> tuple[dict, list]:
    pins_file = tmp_path / "pins.txt"
    pins_file.write_text(image_lines)
    pins = gc.read_pins(pins_file)
    world = {d.name: d for d in map(gc.wheel_dist, wheels)}
    for name, dist in gc.image_dists(pins).items():
        world.setdefault(name, dist)
    return world, pins


# -- the pin file -----------------------------------------------------------------------------------------------------
def test_the_pin_file_pins_every_carried_package_exactly_and_says_why():
    pins = gc.read_pins()
    carried = [p for p in pins if p.kind != "image"]
    assert {p.name for p in carried} >= {"trl", "datasets", "deepspeed", "pyarrow"}
    # transformers: the image's 5.17.0 meets pyproject's floor, so it is an image line, not carried
    assert [p.kind for p in pins if p.name == "transformers"] == ["image"]
    assert all("==" in p.requirement and p.comment for p in pins if p.kind != "image")
    assert {p.name for p in pins if p.kind == "build"} == {"deepspeed"}  # an sdist only
    assert not any(p.name in ("trl-ext", "trl_ext") for p in pins)  # run tests the checkout, never a wheel of it


@pytest.mark.parametrize("line, message", [
    ("wheel trl==1.16.0\n", "no comment"),
    ("wheel trl>=1.16  # a range\n", "one exact version"),
    ("carry trl==1.16.0  # why\n", "expected"),
    ("wheel trl==1.16.0  # a\nwheel TRL==1.16.0  # b\n", "carried twice: trl"),
])
def test_a_malformed_pin_file_is_refused(tmp_path, line, message):
    (tmp_path / "pins.txt").write_text(line)
    with pytest.raises(gc.PinError, match=message):
        gc.read_pins(tmp_path / "pins.txt")


# -- the requirement check ------------------------------------------------------------------------------------------
def test_an_unsatisfied_requirement_fails_naming_package_and_requirement(tmp_path):
    wheel = make_wheel(tmp_path, "alpha", "1.0", requires=["beta>=2.0", "gamma"])
    world, _ = world_of([wheel], "image beta==1.5  # read there\nimage gamma  # there\n", tmp_path)
    result = gc.check_requirements(world, [("root", "alpha==1.0")], MARKERS)
    assert not result.ok
    assert result.problems == ["alpha 1.0 requires 'beta>=2.0': the image has beta 1.5"]


def test_requirements_met_by_carried_wheels_and_image_lines_pass(tmp_path):
    wheels = [
        make_wheel(tmp_path, "alpha", "1.0", requires=[
            "beta>=2.0,<3", "delta[fast]", 'tomli>=1; python_version < "3.11"', 'winreg; sys_platform == "win32"']),
        make_wheel(tmp_path, "delta", "0.5", requires=['epsilon>=2.2.2; extra == "fast"', 'zeta; extra == "slow"'],
                   extras=("fast", "slow")),
    ]
    image = "image beta==2.4.0  # read\nimage epsilon>=2.3,<3  # implied by a package read there\n"
    world, _ = world_of(wheels, image, tmp_path)
    result = gc.check_requirements(world, [("root", "alpha")], MARKERS)
    # the markers of Python 3.12 on linux drop tomli and winreg; the extra [fast] pulls epsilon, [slow] is not asked
    assert result.ok, result.problems
    assert result.used == {"alpha", "beta", "delta", "epsilon"}


def test_a_version_not_read_satisfies_only_what_its_known_range_implies(tmp_path):
    wheel = make_wheel(tmp_path, "alpha", "1.0", requires=["pandas>=2.1.1", "regex>=2026.1", "jinja2>=3"])
    image = "image pandas>=2.2.2  # numpy 2\nimage regex>=2025.10.22  # implied\nimage jinja2  # there\n"
    world, _ = world_of([wheel], image, tmp_path)
    problems = gc.check_requirements(world, [("root", "alpha")], MARKERS).problems
    assert problems == [
        "alpha 1.0 requires 'regex>=2026.1': the image has regex at a version not read (known: >=2025.10.22)",
        "alpha 1.0 requires 'jinja2>=3': the image has jinja2 at a version not read",
    ]


@pytest.mark.parametrize("known, required, ok", [
    (">=2.2.2", ">=2.1.1", True), (">=2.2.2", ">2.2.2", False), (">2.2.2", ">2.2.2", True),
    (">=0.23,<1", "<1.0.0", True), (">=0.23,<1", "<=0.99", False), (">=0.23,<=1", "<1", False),
    (">=0.23,<1", "!=0.20", True), (">=0.23,<1", "!=0.25", False), (">=1", "==1.5", False), ("", "", True),
    ("", ">=0", False),
])
def test_range_implication(known, required, ok):
    from packaging.specifiers import SpecifierSet

    assert gc.range_satisfies(known, SpecifierSet(required)) is ok


def test_missing_packages_python_and_the_image_own_mismatches(tmp_path):
    wheels = [make_wheel(tmp_path, "alpha", "1.0", requires=["omega"], requires_python=">=3.13")]
    world, _ = world_of(wheels, "image numpy==2.5.2  # read\n", tmp_path)
    world["torch"] = gc.Dist("torch", "installed", version="2.11.0", requires=["numpy<2"])  # the image's own problem
    result = gc.check_requirements(world, [("root", "alpha"), ("root", "numpy>=1.26")], MARKERS)
    assert result.problems == [
        "alpha 1.0 (carried (alpha-1.0-py3-none-any.whl)) requires Python >=3.13, the device has 3.12.3",
        "alpha 1.0 requires 'omega': omega is neither carried nor on the image",
    ]
    assert gc.check_requirements(world, [("root", "torch")], MARKERS).notes == [
        "torch 2.11.0 requires 'numpy<2': the image has numpy 2.5.2"]  # not carried on either side: a note


def test_the_wheel_set_must_match_the_pins(tmp_path):
    folder = tmp_path / "whl"
    folder.mkdir()
    make_wheel(folder, "alpha", "1.0")
    make_wheel(folder, "beta", "2.0")
    (tmp_path / "pins.txt").write_text("wheel alpha==1.1  # why\nwheel gamma==1.0  # why\n")
    _, set_problems = gc.check_wheels(folder, gc.read_pins(tmp_path / "pins.txt"))
    assert set_problems == [
        "alpha: pinned alpha==1.1 (line 1), wheel is 1.0",
        f"carried (beta-2.0-py3-none-any.whl): not in {gc.PINS.name} (remove it, or pin it with a reason)",
        "gamma==1.0 (line 2): no wheel in " + str(folder),
    ]


def test_the_real_carried_set_resolves():
    wheel_dir = REPO / ".whl"
    if not any(wheel_dir.glob("*.whl")):
        pytest.skip(".whl/ has no wheels: `bash .ci/gpu_check.sh prepare` (needs PyPI) downloads them")
    result, set_problems = gc.check_wheels(wheel_dir, gc.read_pins())
    assert not set_problems and result.ok, set_problems + result.problems


# -- the archive and the install ----------------------------------------------------------------------------------------
def test_packed_wheels_install_offline_and_the_installed_check_reads_them(tmp_path):
    folder = tmp_path / "whl"
    folder.mkdir()
    make_wheel(folder, "alpha", "1.0", requires=["numpy>=999"])
    archive = tmp_path / "carry" / "wheels.tar.xz"
    assert gc.pack(folder, archive, preset=0) == 0
    with tarfile.open(archive, "r:xz") as tar:
        [member] = tar.getmembers()
        with zipfile.ZipFile(io.BytesIO(tar.extractfile(member).read())) as wheel:
            assert {i.compress_type for i in wheel.infolist()} == {zipfile.ZIP_STORED}  # xz sees the raw bytes
    site = tmp_path / "site"
    assert gc.install(archive, site, []) == 0
    assert (site / "alpha" / "__init__.py").read_text() == "VERSION = '1.0'\n"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{site}"}
    proc = subprocess.run([sys.executable, str(REPO / ".ci" / "gpu_check.py"), "check-installed", "--carried",
                           str(site)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL carried alpha requires 'alpha==1.0'" not in proc.stdout
    assert "alpha 1.0 requires 'numpy>=999'" in proc.stdout


# -- the run: plan, time boxes, summary ---------------------------------------------------------------------------------
def test_the_time_boxes_fit_the_eight_minutes():
    assert sum(gc.WAVE_BOXES.values()) <= gc.RUN_LIMIT_S <= 8 * 60
    assert sum(gc.WAVE_BOXES.values()) < 8 * 60


def planned(tmp_path, **facts):
    run = gc.Run(tmp_path / "out", tmp_path / "work", gc.ARCHIVE, 1.0)
    run.facts.update(facts)
    return run, gc.first_parts(run) + gc.train_parts(run)


def test_the_plan_covers_every_recipe_and_each_part_has_a_box(tmp_path):
    from trl_ext.recipe.algorithms import algorithm_names

    run, parts = planned(tmp_path, gpus=1, vllm=None)
    names = [p.name for p in parts]
    assert len(names) == len(set(names))
    assert {p.wave for p in parts} <= set(gc.WAVE_BOXES)
    assert [n for n in names if n.startswith("recipe-")] == [f"recipe-{a}" for a in algorithm_names(controls=False)]
    assert {"install", "deps", "setup", "zero3-dapo", "zero3-ppo", "resume-dapo", "bench-scale"} <= set(names)
    by_name = {p.name: p for p in parts}
    assert all("--bf16" in by_name[f"recipe-{a}"].steps[0] for a in algorithm_names(controls=False))
    # one GPU: one ZeRO-3 process (NCCL refuses two ranks on one device); vLLM absent: SKIP with the reason
    assert by_name["zero3-dapo"].steps[0][by_name["zero3-dapo"].steps[0].index("--num_processes") + 1] == "1"
    assert "not importable" in by_name["vllm-dapo"].skip and "not importable" in by_name["vllm-ppo"].skip
    # the checkout first on PYTHONPATH, the carried packages after it, in a folder whose path says "site-packages"
    # (else dill pickles pyarrow by value and every datasets.Dataset fails to fingerprint)
    assert run.env()["PYTHONPATH"].split(os.pathsep)[:2] == [str(REPO), str(run.site)]
    assert run.site.name == "site-packages"
    # two GPUs and vLLM: two processes, vLLM colocate runs
    _, parts = planned(tmp_path, gpus=2, vllm="0.30.0")
    by_name = {p.name: p for p in parts}
    assert by_name["zero3-ppo"].steps[0][by_name["zero3-ppo"].steps[0].index("--num_processes") + 1] == "2"
    assert by_name["vllm-ppo"].skip is None and "colocate" in by_name["vllm-ppo"].steps[0]
    # CPU (the rehearsal): the same commands without the bf16 flag
    _, parts = planned(tmp_path, gpus=0, vllm=None)
    assert "--bf16" not in {p.name: p for p in parts}["recipe-dapo"].steps[0]


def test_a_part_is_killed_at_its_time_box_and_a_failed_step_stops_its_part(tmp_path):
    run = gc.Run(tmp_path / "out", tmp_path / "work", "none", 1.0)
    run.logs.mkdir(parents=True)
    slow = gc.Part("slow", "train", [["bash", "-c", f"sleep 30 & echo $! > {tmp_path}/child; wait"]])
    failing = gc.Part("failing", "train", [["bash", "-c", "echo boom; exit 3"], ["touch", str(tmp_path / "never")]])
    missing = gc.Part("missing", "train", [[str(tmp_path / "no-such-program")]])
    start = time.monotonic()
    results = gc.run_wave(run, [slow, failing, missing], box=2)
    assert time.monotonic() - start < 10
    assert [(r.status, r.detail) for r in results][:2] == [("FAIL", "timed out after 2 s (box)"), ("FAIL", "exit 3")]
    assert results[2].status == "FAIL" and "no-such-program" in results[2].detail
    child = int((tmp_path / "child").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    assert not (tmp_path / "never").exists()
    assert "boom" in (run.logs / "failing.log").read_text()


def test_the_summary_is_one_file_and_the_logs_one_archive(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "good.log").write_text("fine\n")
    (logs / "bad.log").write_text("".join(f"line {i}\n" for i in range(1, 51)) + "Traceback: boom\n")
    results = [
        gc.Result("good", "PASS", 12.0, 180, "steps=2 losses=0.1,0.2", logs / "good.log"),
        gc.Result("bad", "FAIL", 3.0, 180, "exit 1", logs / "bad.log"),
        gc.Result("vllm-dapo", "SKIP", 0.0, 180, "vllm is not importable", None),
    ]
    out = tmp_path / "out"
    archive = [(logs / "good.log", "logs/good.log"), (logs / "bad.log", "logs/bad.log"), (logs / "gone", "x")]
    summary, tarball = gc.write_summary(out, results, ["# header"], ["## extra", "", "table"], archive)
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "summary.md"]
    text = summary.read_text()
    assert "**1 PASS, 1 FAIL, 1 SKIP**" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| result")]
    assert [r.split(" | ")[:2] for r in rows] == [["| PASS", "good"], ["| FAIL", "bad"], ["| SKIP", "vllm-dapo"]]
    assert "Traceback: boom" in text and "line 22" in text and "line 21\n" not in text  # the last 30 lines
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == ["logs/bad.log", "logs/good.log", "summary.md"]


def test_the_scripts_parse():
    subprocess.run(["bash", "-n", str(REPO / ".ci/gpu_check.sh")], check=True)
