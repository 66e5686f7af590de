#!/usr/bin/env python3
"""The GPU check of trl-ext: carried wheels, their dependency check, and the time-boxed run that writes one summary.

    python3 .ci/gpu_check.py pins wheel|build      # the pin file's NAME==VERSION lines of that kind (for prepare)
    python3 .ci/gpu_check.py check-wheels .whl     # here: carried wheels + the image satisfy every requirement
    python3 .ci/gpu_check.py pack .whl ARCHIVE     # here: the wheels, stored uncompressed, in one .tar.xz
    python3 .ci/gpu_check.py install ARCHIVE SITE [PIP OPTIONS]   # unpack, pip install --no-index --target SITE
    python3 .ci/gpu_check.py check-installed       # there: the requirement check against the importable metadata
    python3 .ci/gpu_check.py run [--out DIR] [--carried ARCHIVE|none] [--only PART,...] [--box-scale F]

`bash .ci/gpu_check.sh prepare|run` wraps these; docs/gpu_check.md says how to use them and what `run` prints.
The runner uses the standard library only (the dependency check also needs `packaging`, which the image has): it must
start before anything is installed. Every part runs, whatever happened before it; each has a time box after which its
whole process group is killed; the parts of one wave run at the same time. `run` writes OUT/summary.md (one line per
part, the tail of each failed part's log inline) and OUT/logs.tar.gz (every log and the runs' summaries), and exits
with the number of failed parts.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from email.parser import HeaderParser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PINS = REPO / ".ci" / "gpu_wheels.txt"
PIN_KINDS = ("wheel", "build", "image")
ARCHIVE = ".gpu_carry/wheels.tar.xz"  # what a device call carries (git-ignored), relative to the checkout
MAX_CARRIED_MIB = 60  # a device call carries at most 64 MiB, the checkout (about 2 MiB) included

# The device's interpreter, for markers and Requires-Python (the pin file's `image python==` line overrides the version)
DEVICE_MARKERS = {
    "implementation_name": "cpython", "implementation_version": "3.12.3", "os_name": "posix",
    "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
    "platform_system": "Linux", "platform_version": "", "python_full_version": "3.12.3", "python_version": "3.12",
    "sys_platform": "linux",
}

# Time boxes, in seconds: the one place they are set. The parts of a wave run in parallel, the waves one after the
# other, so the run takes at most the sum of the boxes (plus the summary, a second): under the 8 minutes it has.
WAVE_BOXES = {"install": 45, "setup": 60, "train": 180, "bench": 180}
RUN_LIMIT_S = 480
TAIL_LINES = 30  # lines of a failed part's log in the summary
BENCH_ARGS = ["--algos", "grpo,dapo,gspo,ppo", "--warmup", "2", "--steps", "4", "--completion_length", "32"]
VLLM_ALGOS = ("dapo", "ppo")


# =====================================================================================================================
# The pin file
# =====================================================================================================================
@dataclasses.dataclass(frozen=True)
class Pin:
    kind: str  # wheel | build | image
    requirement: str  # "trl==1.16.0", "httpx>=0.23.0,<1", "jinja2"
    comment: str
    line: int

    @property
    def name(self) -> str:
        return canonical(re.split(r"[<>=!~ ;\[]", self.requirement, maxsplit=1)[0])


class PinError(ValueError):
    pass


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = PINS) -> list[Pin]:
    """The pin file's lines; ``PinError`` for an unknown kind, a line without its ``# why`` or a carried package that
    is not pinned to one exact version."""
    pins = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        body, _, comment = text.partition("#")
        parts = body.split()
        if len(parts) != 2 or parts[0] not in PIN_KINDS:
            raise PinError(f"{path}:{number}: expected '<{'|'.join(PIN_KINDS)}> <requirement>  # why', got {raw!r}")
        if not comment.strip():
            raise PinError(f"{path}:{number}: {parts[1]} has no comment saying why")
        pin = Pin(parts[0], parts[1], comment.strip(), number)
        if pin.kind != "image" and not re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+!-]+", pin.requirement):
            raise PinError(f"{path}:{number}: a carried package needs one exact version (NAME==VERSION), got "
                           f"{pin.requirement!r}")
        pins.append(pin)
    names = [p.name for p in pins if p.kind != "image"]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PinError(f"{path}: carried twice: {', '.join(duplicates)}")
    return pins


# =====================================================================================================================
# Distributions and the requirement check
# =====================================================================================================================
@dataclasses.dataclass
class Dist:
    """One package the device would import: carried (a wheel, with its metadata), installed (metadata read from the
    environment) or an image line (no metadata: ``version`` when read, else ``spec``, a range or empty)."""

    name: str
    origin: str  # "carried", "image" or "installed" (with where)
    version: str | None = None
    spec: str = ""  # image lines without a version read: the range the version is known to lie in
    requires: list[str] | None = None  # None: not known (an image line)
    requires_python: str | None = None
    carried: bool = False


def parse_metadata(text: str, origin: str, carried: bool = False) -> Dist:
    message = HeaderParser().parsestr(text)
    return Dist(name=canonical(message["Name"]), origin=origin, version=message["Version"],
                requires=list(message.get_all("Requires-Dist") or []),
                requires_python=message["Requires-Python"], carried=carried)


def wheel_dist(path: Path) -> Dist:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(names) != 1:
            raise PinError(f"{path.name}: expected one .dist-info/METADATA, found {names}")
        return parse_metadata(archive.read(names[0]).decode("utf-8"), f"carried ({path.name})", carried=True)


def image_dists(pins: list[Pin]) -> dict[str, Dist]:
    out = {}
    for pin in pins:
        if pin.kind != "image":
            continue
        rest = pin.requirement[len(re.split(r"[<>=!~]", pin.requirement, maxsplit=1)[0]):]
        exact = re.fullmatch(r"==([A-Za-z0-9_.+!-]+)", rest)
        out[pin.name] = Dist(pin.name, "image", version=exact.group(1) if exact else None,
                             spec="" if exact else rest)
    return out


def device_markers(pins: list[Pin]) -> dict:
    markers = dict(DEVICE_MARKERS)
    python = next((p for p in pins if p.kind == "image" and p.name == "python"), None)
    if python and "==" in python.requirement:
        full = python.requirement.split("==", 1)[1]
        markers.update(python_full_version=full, implementation_version=full,
                       python_version=".".join(full.split(".")[:2]))
    return markers


def _bounds(spec: str):
    """(lower, lower_inclusive, upper, upper_inclusive) of a range made of >=, >, <=, < clauses; None where open.
    ``None`` for anything else (== or ~= in an image range is not supported: write the exact version)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    lower = upper = None
    lower_inclusive = upper_inclusive = False
    for clause in SpecifierSet(spec):
        version = Version(clause.version)
        if clause.operator in (">=", ">"):
            if lower is None or version > lower:
                lower, lower_inclusive = version, clause.operator == ">="
        elif clause.operator in ("<=", "<"):
            if upper is None or version < upper:
                upper, upper_inclusive = version, clause.operator == "<="
        else:
            return None
    return lower, lower_inclusive, upper, upper_inclusive


def range_satisfies(known: str, required) -> bool:
    """Whether every version in the range ``known`` (">=0.23.0,<1"; "" for a version not read) satisfies the
    ``required`` SpecifierSet. Conservative: False where it cannot tell."""
    from packaging.version import Version

    bounds = _bounds(known)
    if bounds is None:
        return False
    lower, lower_inclusive, upper, upper_inclusive = bounds
    for clause in required:
        version = Version(clause.version.rstrip(".*")) if clause.operator != "===" else None
        op = clause.operator
        if op == ">=":
            ok = lower is not None and lower >= version
        elif op == ">":
            ok = lower is not None and (lower > version or (lower == version and not lower_inclusive))
        elif op == "<=":
            ok = upper is not None and upper <= version
        elif op == "<":
            ok = upper is not None and (upper < version or (upper == version and not upper_inclusive))
        elif op == "!=" and not clause.version.endswith(".*"):
            ok = ((upper is not None and (upper < version or (upper == version and not upper_inclusive)))
                  or (lower is not None and (lower > version or (lower == version and not lower_inclusive))))
        else:  # ==, ~=, ===, wildcards: only an exact version can be checked against them
            ok = False
        if not ok:
            return False
    return True


def satisfies(dist: Dist, required) -> bool:
    if dist.version is not None:
        from packaging.version import InvalidVersion, Version

        try:
            return required.contains(Version(dist.version), prereleases=True)
        except InvalidVersion:
            return False
    return range_satisfies(dist.spec, required)


@dataclasses.dataclass
class CheckResult:
    problems: list[str]  # each names the requiring package, the requirement and what was found
    notes: list[str]  # problems among packages that were not carried (the image's own), not counted as failures
    used: set[str]  # names reached from the roots

    @property
    def ok(self) -> bool:
        return not self.problems


def check_requirements(world: dict[str, Dist], roots: list[tuple[str, str]], markers: dict) -> CheckResult:
    """Walk the requirements from ``roots`` (``(who, requirement)``: pyproject's dependencies, every carried wheel)
    through ``world`` (name -> Dist; the first of a name is the one imported). A requirement is met when its package
    is in ``world`` at a version (or within a range) that satisfies it; a Dist's own requirements are walked when its
    metadata is known. Problems that touch a carried package (either side) or a root fail the check; the image's own
    mismatches are notes."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet

    problems, notes, used = [], [], set()
    python_version = markers["python_full_version"]
    for dist in world.values():
        if dist.carried and dist.requires_python and not SpecifierSet(dist.requires_python).contains(
                python_version, prereleases=True):
            problems.append(f"{dist.name} {dist.version} ({dist.origin}) requires Python {dist.requires_python}, "
                            f"the device has {python_version}")
    queue = [(who, text, None, True) for who, text in roots]  # (who, requirement, requiring dist, counts)
    walked: set[tuple[str, frozenset]] = set()
    while queue:
        who, text, requirer, is_root = queue.pop(0)
        try:
            req = Requirement(text)
        except InvalidRequirement as err:
            problems.append(f"{who}: unreadable requirement {text!r} ({err})")
            continue
        extras = requirer[1] if requirer else frozenset()
        if req.marker is not None and not any(req.marker.evaluate({**markers, "extra": e}) for e in extras | {""}):
            continue
        name = canonical(req.name)
        used.add(name)
        target = world.get(name)
        carried_side = is_root or (requirer is not None and requirer[0].carried) or (target is not None and target.carried)
        sink = problems if carried_side else notes
        if target is None:
            sink.append(f"{who} requires {text!r}: {req.name} is neither carried nor on the image")
            continue
        if not satisfies(target, req.specifier):
            found = target.version if target.version is not None else (
                f"at a version not read{' (known: ' + target.spec + ')' if target.spec else ''}")
            sink.append(f"{who} requires {text!r}: the {target.origin} has {req.name} {found}")
            continue
        if req.extras and target.requires is None:
            sink.append(f"{who} requires {text!r}: the extras of {req.name} ({target.origin}) cannot be checked")
            continue
        key = (name, frozenset(req.extras))
        if target.requires is not None and key not in walked:
            walked.add(key)
            label = f"{target.name} {target.version}" + (f" [{','.join(sorted(req.extras))}]" if req.extras else "")
            queue.extend((label, r, (target, frozenset(req.extras)), False) for r in target.requires)
    return CheckResult(problems, notes, used)


def pyproject_roots(pyproject: Path = REPO / "pyproject.toml", extras=("deepspeed",)) -> list[tuple[str, str]]:
    """trl-ext's own requirements (dependencies and the named extras) as check roots."""
    import tomllib

    project = tomllib.loads(pyproject.read_text())["project"]
    roots = [("trl-ext (pyproject.toml)", r) for r in project["dependencies"]]
    for extra in extras:
        roots += [(f"trl-ext[{extra}] (pyproject.toml)", r) for r in project["optional-dependencies"][extra]]
    return roots


def check_wheels(wheel_dir: Path, pins: list[Pin]) -> tuple[CheckResult, list[str]]:
    """Here: the wheels in ``wheel_dir`` are exactly the pinned ones, and they, with the image lines, meet every
    requirement of trl-ext and of each carried wheel on the device's Python. Returns the check and the problems with
    the set itself (a missing, unpinned or differently versioned wheel)."""
    from packaging.utils import parse_wheel_filename
    from packaging.version import Version

    set_problems = []
    dists = []
    for path in sorted(Path(wheel_dir).glob("*.whl")):
        name, version, _, _ = parse_wheel_filename(path.name)
        dist = wheel_dist(path)
        if canonical(name) != dist.name or Version(dist.version) != version:
            set_problems.append(f"{path.name}: its METADATA says {dist.name} {dist.version}")
        dists.append(dist)
    carried_pins = {p.name: p for p in pins if p.kind != "image"}
    by_name: dict[str, list[Dist]] = {}
    for dist in dists:
        by_name.setdefault(dist.name, []).append(dist)
    for name, found in sorted(by_name.items()):
        if len(found) > 1:
            set_problems.append(f"{name}: {len(found)} wheels ({', '.join(d.origin for d in found)}); pip --target "
                                "would install both")
        pin = carried_pins.get(name)
        if pin is None:
            set_problems.append(f"{found[0].origin}: not in {PINS.name} (remove it, or pin it with a reason)")
        elif Version(pin.requirement.split("==", 1)[1]) != Version(found[0].version):
            set_problems.append(f"{name}: pinned {pin.requirement} (line {pin.line}), wheel is {found[0].version}")
    for name, pin in sorted(carried_pins.items()):
        if name not in by_name:
            set_problems.append(f"{pin.requirement} (line {pin.line}): no wheel in {wheel_dir}")
    print(f"{len(dists)} carried wheels, {sum(p.stat().st_size for p in Path(wheel_dir).glob('*.whl')) / 2**20:.1f} "
          "MiB as downloaded")
    world = {d.name: d for d in dists}
    for name, dist in image_dists(pins).items():
        world.setdefault(name, dist)  # a carried package shadows the image's
    roots = pyproject_roots() + [(f"carried {d.name}", f"{d.name}=={d.version}") for d in dists]
    return check_requirements(world, roots, device_markers(pins)), set_problems


def installed_world(carried_dir: str | None) -> dict[str, Dist]:
    """What this interpreter imports: the first distribution of each name along sys.path; those under
    ``carried_dir`` are the carried ones."""
    from importlib.metadata import distributions

    world: dict[str, Dist] = {}
    carried_root = str(Path(carried_dir).resolve()) if carried_dir else None
    for entry in sys.path:
        if not entry or not Path(entry).is_dir():
            continue
        for dist in distributions(path=[entry]):
            text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
            if not text:
                continue
            carried = carried_root is not None and str(Path(entry).resolve()) == carried_root
            record = parse_metadata(text, f"{'carried' if carried else 'installed'} ({entry})", carried=carried)
            world.setdefault(record.name, record)
    return world


def report_check(result: CheckResult, set_problems: list[str], pins: list[Pin] | None = None) -> int:
    for line in set_problems + result.problems:
        print(f"FAIL {line}")
    for line in result.notes:
        print(f"note (the image's own, not counted) {line}")
    if pins is not None:
        unused = sorted(p.name for p in pins if p.kind == "image" and p.name not in result.used | {"python"})
        if unused:
            print(f"image lines no requirement reached (may go): {', '.join(unused)}")
    failed = len(set_problems) + len(result.problems)
    print(f"dependency check: {'PASS' if not failed else f'FAIL ({failed} problem(s))'}; {len(result.used)} "
          "packages reached")
    return 1 if failed else 0


def pack(wheel_dir: Path, archive: Path, preset: int = 6) -> int:
    """The wheels of ``wheel_dir`` in one xz-compressed tar, each re-zipped without compression (the same files and
    RECORD, a valid wheel; deflate inside each wheel would hide the redundancy from xz: 70 MiB of wheels become about
    42 MiB). Fails above MAX_CARRIED_MIB."""
    import lzma

    wheels = sorted(Path(wheel_dir).glob("*.whl"))
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    with lzma.open(partial, "wb", preset=preset) as stream, tarfile.open(fileobj=stream, mode="w") as tar:
        for path in wheels:
            buffer = io.BytesIO()
            with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as stored:
                for info in source.infolist():
                    stored.writestr(info, source.read(info), compress_type=zipfile.ZIP_STORED)
            info = tarfile.TarInfo(path.name)
            info.size, info.mtime = buffer.tell(), int(path.stat().st_mtime)
            buffer.seek(0)
            tar.addfile(info, buffer)
    partial.replace(archive)
    size = archive.stat().st_size
    print(f"{archive}: {len(wheels)} wheels, {size / 2**20:.1f} MiB (limit {MAX_CARRIED_MIB} MiB)")
    if size >= MAX_CARRIED_MIB * 2**20:
        print(f"FAIL {archive} is over the {MAX_CARRIED_MIB} MiB a device call can carry beside the checkout")
        return 1
    return 0


def install(archive: Path, site: Path, pip_options: list[str]) -> int:
    """Unpack the archive's wheels beside ``site`` and install them with pip, offline, without dependencies (the
    check decided them), into ``site`` (a folder that then goes on PYTHONPATH)."""
    wheels = site.parent / f"{site.name}-wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    with tarfile.open(archive, "r:xz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and "/" not in m.name and m.name.endswith(".whl")]
        for member in members:
            with tar.extractfile(member) as source, open(wheels / member.name, "wb") as target:
                shutil.copyfileobj(source, target)
    print(f"unpacked {len(members)} wheels from {archive}", flush=True)
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--disable-pip-version-check", "--upgrade", "--target", str(site), *pip_options,
               *sorted(str(p) for p in wheels.glob("*.whl"))]
    code = subprocess.call(command)
    shutil.rmtree(wheels, ignore_errors=True)
    if code == 0:
        print(f"installed into {site}")
    return code


# =====================================================================================================================
# The run: parts, waves, time boxes
# =====================================================================================================================
@dataclasses.dataclass
class Part:
    name: str
    wave: str
    steps: list  # argv lists run one after the other, or callables (log) -> None
    validate: object = None  # callable(part, log_text) -> (ok, key numbers); None: exit status only
    skip: str | None = None  # a reason: the part is reported SKIP without running
    env: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Result:
    name: str
    status: str  # PASS | FAIL | SKIP
    seconds: float
    box: float
    detail: str
    log: Path | None = None


class Run:
    """Paths and facts of one `run`: WORK holds logs and outputs, SITE the carried packages."""

    def __init__(self, out: Path, work: Path, carried: str, box_scale: float):
        self.out, self.work, self.box_scale = out, work, box_scale
        self.carried = None if carried == "none" else (REPO / carried).resolve()
        # The folder's name must contain "site-packages": dill (datasets' fingerprint hasher) pickles a module by
        # reference only when its path lies under sys.prefix or contains "site-packages"; from any other folder
        # datasets pickles pyarrow by value and every Dataset fails ("Can't pickle <class 'MonthDayNano'>", seen in a
        # Python 3.12 rehearsal of the install).
        self.site = None if self.carried is None else work / "site-packages"
        self.logs = work / "logs"
        self.model = work / "tiny_model"
        self.facts: dict = {}
        self.start = time.monotonic()
        self.port = 29600

    def next_port(self) -> str:
        self.port += 1
        return str(self.port)

    def env(self) -> dict:
        paths = [str(REPO), *([str(self.site)] if self.site else []), str(REPO / "tests")]
        existing = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([existing] if existing else [])),
               "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled",
               "TRL_EXT_CACHE": str(self.work / "cache"), "OMP_NUM_THREADS": "2"}
        if self.site:
            env["PATH"] = f"{self.site / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def remaining(self) -> float:
        return RUN_LIMIT_S * self.box_scale - (time.monotonic() - self.start)


def accelerate(run: Run, config: str, script: str, args: list[str], processes: int | None = None) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(REPO / "accelerate_configs" / f"{config}.yaml"),
            *(["--num_processes", str(processes)] if processes else []),
            "--main_process_port", run.next_port(), str(REPO / script), *args]


def recipe_summary(output_dir: Path) -> dict | None:
    path = output_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def describe_recipe(summary: dict) -> str:
    losses = summary.get("losses") or []
    peak = (summary.get("peak_memory") or {}).get("cuda_max_allocated_mb")
    before, after = summary.get("before") or {}, summary.get("after") or {}
    strict = [f"{e['strict']['accuracy']:.2f}" for e in (before, after) if e.get("strict")]
    return (f"world_size={summary.get('world_size')} steps={summary.get('global_step')} "
            f"losses={','.join(f'{x:.4g}' for x in losses)} train_s={summary.get('train_seconds', 0):.1f} "
            f"peak_cuda_MiB={'-' if peak is None else f'{peak:.0f}'} eval_strict={'->'.join(strict) or '-'} "
            f"({before.get('num_problems', '-')} problems); {summary.get('hardware')}")


def recipe_validator(output_dir: Path, steps: int, processes: int | None, needs: str | None = None,
                     prefix: str = ""):
    """A recipe run passes when its summary.json says it ran ``steps`` optimizer steps with finite losses on
    ``processes`` processes (on CUDA where the machine has a GPU), and its log holds ``needs``."""

    def validate(run: Run, log: str):
        summary = recipe_summary(output_dir)
        if summary is None:
            return False, f"no {output_dir.name}/summary.json"
        problems = []
        if summary.get("global_step") != steps:
            problems.append(f"global_step {summary.get('global_step')} != {steps}")
        if not summary.get("losses_finite", False):
            problems.append("non-finite loss")
        if processes is not None and summary.get("world_size") != processes:
            problems.append(f"world_size {summary.get('world_size')} != {processes} processes launched")
        if run.facts.get("gpus") and not str(summary.get("hardware", "")).startswith("CUDA"):
            problems.append("ran without CUDA")
        if needs and needs not in log:
            problems.append(f"{needs!r} not in the log")
        text = prefix + describe_recipe(summary)
        return not problems, ("; ".join(problems) + " | " if problems else "") + text

    return validate


def tiny_args(algo: str, output_dir: Path, model: Path) -> list[str]:
    """The CPU suite's tiny recipe arguments (tests/helpers/configs.py: 2 optimizer steps on a random tiny model, an
    8-problem evaluation, the length reward for the online recipes)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from helpers.configs import tiny_recipe_args
    finally:
        sys.path.remove(str(REPO / "tests"))
    return [str(a) for a in tiny_recipe_args(algo, str(model), str(output_dir))]


def algorithms() -> list[str]:
    """The compared algorithms of the package's table (the SFT control left out)."""
    sys.path.insert(0, str(REPO))
    try:
        from trl_ext.recipe.algorithms import algorithm_names
    finally:
        sys.path.remove(str(REPO))
    return algorithm_names(controls=False)


def precision_flags(run: Run) -> list[str]:
    """bf16 on a GPU; on a CPU nothing (the recipes switch themselves to fp32 there)."""
    return ["--bf16", "true"] if run.facts.get("gpus") else []


def multi_processes(run: Run) -> tuple[int, str]:
    """Processes of the ZeRO-3 parts: 2, except on a machine with one GPU, where NCCL refuses two ranks on one
    device ("Duplicate GPU detected"; accelerate would also put rank 1 on a cuda:1 that does not exist)."""
    gpus = run.facts.get("gpus") or 0
    if gpus == 1:
        return 1, "1 process: one GPU (NCCL refuses two ranks on one device)"
    return 2, f"2 processes ({'NCCL' if gpus else 'gloo, CPU'})"


SETUP_CODE = r"""
import importlib, importlib.metadata, importlib.util, json, sys, pathlib
repo, site, model = pathlib.Path(sys.argv[1]).resolve(), sys.argv[2], sys.argv[3]
import torch
facts = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
         "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0}
if facts["gpus"]:
    facts["gpu"] = torch.cuda.get_device_name(0)
    facts["bf16_supported"] = torch.cuda.is_bf16_supported()
    facts["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
spec = importlib.util.find_spec("vllm")
facts["vllm"] = None if spec is None else importlib.metadata.version("vllm")
for name in ["trl_ext", "trl", "transformers", "datasets", "deepspeed", "peft", "accelerate", "huggingface_hub",
             "tokenizers", "pyarrow", "pandas", "numpy"]:
    module = importlib.import_module(name)
    where = pathlib.Path(module.__file__).resolve()
    origin = ("checkout" if where.is_relative_to(repo) else
              "carried" if site != "none" and where.is_relative_to(pathlib.Path(site).resolve()) else "environment")
    facts[name] = f"{getattr(module, '__version__', '?')} ({origin})"
    print(f"{name:16s} {getattr(module, '__version__', '?'):14s} {where}")
import trl_ext
assert pathlib.Path(trl_ext.__file__).resolve().is_relative_to(repo), f"trl_ext from {trl_ext.__file__}, not {repo}"
from trl_ext.models.tiny import build_tiny_model
build_tiny_model(model)
print("GPU_CHECK_FACTS " + json.dumps(facts))
"""


def setup_validator(run: Run, log: str):
    found = [line for line in log.splitlines() if line.startswith("GPU_CHECK_FACTS ")]
    if not found:
        return False, "no facts line"
    run.facts.update(json.loads(found[-1][len("GPU_CHECK_FACTS "):]))
    keys = ["gpu", "gpus", "gpu_memory_gib", "bf16_supported", "torch", "cuda", "python", "vllm", "trl_ext", "trl",
            "transformers", "datasets", "deepspeed", "peft", "accelerate", "huggingface_hub", "pyarrow"]
    return True, " ".join(f"{k}={run.facts[k]}" for k in keys if k in run.facts)


def first_parts(run: Run) -> list[Part]:
    """The install and setup waves: what the training wave's plan depends on."""
    parts = []
    if run.carried is None:
        parts.append(Part("install", "install", [], skip="--carried none: the environment's own packages"))
    elif not run.carried.is_file():
        parts.append(Part("install", "install", [], validate=lambda run, log: (
            False, f"no {run.carried} (run `bash .ci/gpu_check.sh prepare` first and carry it)")))
    else:
        parts.append(Part("install", "install", [
            [sys.executable, str(Path(__file__).resolve()), "install", str(run.carried), str(run.site)]],
            validate=lambda run, log: (True, f"{run.carried.name} ({run.carried.stat().st_size / 2**20:.1f} MiB) "
                                             f"into {run.site}")))
    parts.append(Part("deps", "setup", [[sys.executable, str(Path(__file__).resolve()), "check-installed",
                                         "--carried", str(run.site) if run.site else "none"]]))
    parts.append(Part("setup", "setup", [[sys.executable, "-c", SETUP_CODE, str(REPO), str(run.site or "none"),
                                          str(run.model)]], validate=setup_validator))
    return parts


def train_parts(run: Run) -> list[Part]:
    """The training wave: every recipe, the ZeRO-3 runs, the resume, vLLM colocate; then the benchmark."""
    parts, runs = [], run.work / "runs"
    flags = precision_flags(run)
    for algo in algorithms():
        out = runs / f"recipe-{algo}"
        parts.append(Part(f"recipe-{algo}", "train", [
            accelerate(run, "single_device", f"recipes/{algo}_math.py", tiny_args(algo, out, run.model) + flags)],
            validate=recipe_validator(out, 2, 1)))
    processes, why = multi_processes(run)
    for algo in ("dapo", "ppo"):
        out = runs / f"zero3-{algo}"
        parts.append(Part(f"zero3-{algo}", "train", [
            accelerate(run, "zero3", f"recipes/{algo}_math.py", tiny_args(algo, out, run.model) + flags, processes)],
            validate=recipe_validator(out, 2, processes, prefix=f"{why}; ")))
    parts.append(resume_part(run, runs, flags))
    vllm = run.facts.get("vllm")
    for algo in VLLM_ALGOS:
        out = runs / f"vllm-{algo}"
        skip = None if vllm and run.facts.get("gpus") else (
            "vllm is not importable on this machine (a GPU vLLM wheel is hundreds of MB: it cannot be carried)"
            if not vllm else "no GPU: vLLM colocate needs CUDA")
        args = tiny_args(algo, out, run.model) + flags + ["--use_vllm", "true", "--vllm_mode", "colocate",
                                                        "--vllm_gpu_memory_utilization", "0.15"]
        parts.append(Part(f"vllm-{algo}", "train", [accelerate(run, "single_device", f"recipes/{algo}_math.py", args)],
                          validate=recipe_validator(out, 2, 1, needs="vLLM colocate"), skip=skip))
    table = run.work / "bench_scale.md"
    parts.append(Part("bench-scale", "bench", [
        [sys.executable, str(REPO / "benchmarks" / "bench_scale.py"), *BENCH_ARGS, "--output", str(table)]],
        validate=bench_validator(table)))
    return parts


def resume_part(run: Run, runs: Path, flags: list[str]) -> Part:
    """DAPO saves a checkpoint at each of its 2 steps; a second run starts from a copy of checkpoint-1 and must
    finish step 2 from it. The step-2 metrics of both are reported side by side."""
    first, resumed = runs / "resume-uninterrupted", runs / "resume-from-step1"
    extra = ["--save_strategy", "steps", "--save_steps", "1", "--eval_before", "false", "--eval_after", "false"]

    def copy_checkpoint(log):
        shutil.rmtree(resumed, ignore_errors=True)
        resumed.mkdir(parents=True)
        shutil.copytree(first / "checkpoint-1", resumed / "checkpoint-1")
        log.write(f"copied {first / 'checkpoint-1'} to {resumed / 'checkpoint-1'}\n")

    def validate(run: Run, log: str):
        summary = recipe_summary(resumed)
        if summary is None:
            return False, "the resumed run wrote no summary.json"
        problems = []
        if not str(summary.get("resumed_from") or "").endswith("checkpoint-1"):
            problems.append(f"resumed_from={summary.get('resumed_from')}")
        if summary.get("global_step") != 2:
            problems.append(f"global_step {summary.get('global_step')} != 2")

        def step2(folder):
            rows = [json.loads(x) for x in (folder / "history.jsonl").read_text().splitlines() if x.strip()]
            return next((r for r in rows if r.get("step") == 2 and "loss" in r and "train_runtime" not in r), {})

        a, b = step2(first), step2(resumed)
        same = {k: (a.get(k), b.get(k)) for k in ("loss", "grad_norm", "reward") if k in a or k in b}
        text = "step 2 uninterrupted vs resumed: " + ", ".join(f"{k} {x} vs {y}" for k, (x, y) in same.items())
        return not problems, ("; ".join(problems) + " | " if problems else "") + text

    args = tiny_args("dapo", first, run.model) + flags + extra
    return Part("resume-dapo", "train", [
        accelerate(run, "single_device", "recipes/dapo_math.py", args),
        copy_checkpoint,
        accelerate(run, "single_device", "recipes/dapo_math.py",
                   tiny_args("dapo", resumed, run.model) + flags + extra + ["--resume_from_checkpoint", "true"]),
    ], validate=validate)


def bench_validator(table: Path):
    def validate(run: Run, log: str):
        rates = re.findall(r"^(\w+): ([0-9.]+) s/step$", log, flags=re.MULTILINE)
        if not table.is_file():
            return False, "no table written"
        return True, " ".join(f"{algo}={seconds}s/step" for algo, seconds in rates) + f" (table: {table.name})"

    return validate


def run_part(run: Run, part: Part, box: float) -> Result:
    log_path = run.logs / f"{part.name}.log"
    if part.skip:
        log_path.write_text(f"SKIP: {part.skip}\n")
        return Result(part.name, "SKIP", 0.0, box, part.skip, log_path)
    start = time.monotonic()
    if run.remaining() <= 0:
        log_path.write_text("no time left in the run\n")
        return Result(part.name, "FAIL", 0.0, box, f"not started: the run's {RUN_LIMIT_S * run.box_scale:.0f} s were "
                      "used up", log_path)
    deadline = start + min(box, run.remaining())
    status, detail = "PASS", ""
    env = {**run.env(), **part.env}
    with open(log_path, "w", buffering=1) as log:
        for step in part.steps:
            left = deadline - time.monotonic()
            if left <= 0:
                status, detail = "FAIL", f"timed out after {box:.0f} s (box)"
                break
            if callable(step):
                try:
                    step(log)
                except Exception as err:  # a failed file step fails the part, with the reason in the log
                    log.write(f"{type(err).__name__}: {err}\n")
                    status, detail = "FAIL", f"{type(err).__name__}: {err}"
                    break
                continue
            log.write("$ " + " ".join(a if len(a) < 200 and "\n" not in a else "'<code>'" for a in step) + "\n")
            proc = subprocess.Popen(step, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                log.write(f"[killed: time box of {box:.0f} s reached]\n")
                status, detail = "FAIL", f"timed out after {box:.0f} s (box)"
                break
            finally:
                try:  # ranks or helpers a launcher left behind
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            log.write(f"[exit {code} after {time.monotonic() - start:.0f} s]\n")
            if code != 0:
                status, detail = "FAIL", f"exit {code}"
                break
    seconds = time.monotonic() - start
    text = log_path.read_text(errors="replace")
    if part.validate is None and status == "PASS":  # the log's last line says what it did
        detail = next((line.strip() for line in reversed(text.splitlines()) if line.strip()
                       and not line.startswith("[exit ")), "")[:300]
    if part.validate is not None and status == "PASS":
        try:
            ok, numbers = part.validate(run, text)
        except Exception as err:  # a malformed output is a failed check, not a crashed runner
            ok, numbers = False, f"validation raised {type(err).__name__}: {err}"
        if status == "PASS" and not ok:
            status = "FAIL"
        detail = f"{detail}; {numbers}" if detail else numbers
    return Result(part.name, status, seconds, box, detail, log_path)


def run_wave(run: Run, parts: list[Part], box: float) -> list[Result]:
    results: dict[str, Result] = {}

    def worker(part):
        try:
            results[part.name] = run_part(run, part, box)
        except Exception as err:  # e.g. a command that cannot start: the part fails, the run goes on
            results[part.name] = Result(part.name, "FAIL", 0.0, box, f"{type(err).__name__}: {err}",
                                        run.logs / f"{part.name}.log")

    threads = [threading.Thread(target=worker, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[p.name] for p in parts]


def write_summary(out: Path, results: list[Result], header: list[str], sections: list[str],
                  archive: list[tuple[Path, str]]) -> tuple[Path, Path]:
    """OUT/summary.md (the header, one table row per part, ``sections``, the last TAIL_LINES lines of each failed
    part's log) and OUT/logs.tar.gz (``archive``: (file, name in the archive); missing files are left out)."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    lines = [*header, "", f"**{counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['SKIP']} SKIP**", "",
             "| result | part | seconds | box s | key numbers |", "|---|---|---|---|---|"]
    for r in results:
        detail = r.detail.replace("|", "/").replace("\n", " ")
        lines.append(f"| {r.status} | {r.name} | {r.seconds:.0f} | {r.box:.0f} | {detail} |")
    lines += ["", *sections]
    for r in results:
        if r.status == "FAIL" and r.log is not None and r.log.is_file():
            tail = r.log.read_text(errors="replace").splitlines()[-TAIL_LINES:]
            lines += ["", f"### {r.name}: FAIL ({r.detail.splitlines()[0][:200] if r.detail else ''})", "",
                      f"last {len(tail)} lines of {r.log.name}:", "", "```", *tail, "```"]
    summary = out / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    tarball = out / "logs.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for path, name in archive:
            if path.is_file():
                tar.add(path, arcname=name)
        info = tarfile.TarInfo("summary.md")
        data = summary.read_bytes()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return summary, tarball


def archive_files(run: Run) -> list[tuple[Path, str]]:
    files = [(p, f"logs/{p.name}") for p in sorted(run.logs.glob("*.log"))]
    for folder in sorted((run.work / "runs").glob("*")):
        for name in ("summary.json", "history.jsonl"):
            files.append((folder / name, f"runs/{folder.name}/{name}"))
    for name in ("bench_scale.md", "bench_scale.json"):
        files.append((run.work / name, name))
    return files


def command_run(args) -> int:
    out = Path(args.out or os.environ.get("OUT") or "/tmp/trl_ext_gpu_check/out").resolve()
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    run = Run(out, work, args.carried, args.box_scale)
    run.logs.mkdir(parents=True)
    only = set(args.only.split(",")) if args.only else None
    results: list[Result] = []

    def do_wave(wave: str, parts: list[Part]):
        parts = [p for p in parts if p.wave == wave]
        if only is not None:  # always set up: the rest depends on it
            parts = [p for p in parts if p.name in only or p.wave in ("install", "setup")]
        if not parts:
            return
        box = WAVE_BOXES[wave] * run.box_scale
        print(f"--- wave {wave}: {', '.join(p.name for p in parts)} (box {box:.0f} s)", flush=True)
        for result in run_wave(run, parts, box):
            print(f"{result.status} {result.name} ({result.seconds:.0f} s): {result.detail[:300]}", flush=True)
            results.append(result)

    early = first_parts(run)
    do_wave("install", early)
    do_wave("setup", early)
    later = train_parts(run)
    do_wave("train", later)
    do_wave("bench", later)

    facts = run.facts
    header = [
        "# trl-ext GPU check",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{facts.get('gpu', 'no GPU')} x{facts.get('gpus', 0)}, torch {facts.get('torch', '?')} (CUDA "
        f"{facts.get('cuda')}), Python {facts.get('python', '?')}; wall {time.monotonic() - run.start:.0f} s "
        f"(time boxes: {', '.join(f'{w} {b * run.box_scale:.0f} s' for w, b in WAVE_BOXES.items())}; the parts of "
        "a wave run at the same time). Command: `" + " ".join(["bash .ci/gpu_check.sh run", *sys.argv[2:]]) + "`.",
    ]
    sections = []
    table = run.work / "bench_scale.md"
    if table.is_file():
        sections += ["## bench_scale", "", table.read_text().strip(), ""]
    summary, tarball = write_summary(out, results, header, sections, archive_files(run))
    print(summary.read_text())
    print(f"summary: {summary}\nlogs: {tarball}")
    return sum(r.status == "FAIL" for r in results)


# =====================================================================================================================
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pins = sub.add_parser("pins", help="print the pinned NAME==VERSION lines of one kind")
    pins.add_argument("kind", choices=["wheel", "build"])
    wheels = sub.add_parser("check-wheels", help="check the carried wheels against the pins and the image")
    wheels.add_argument("wheel_dir", type=Path)
    packer = sub.add_parser("pack", help="pack the wheels into the archive a device call carries")
    packer.add_argument("wheel_dir", type=Path)
    packer.add_argument("archive", type=Path, nargs="?", default=REPO / ARCHIVE)
    installer = sub.add_parser("install", help="unpack the archive and pip install it into a --target folder")
    installer.add_argument("archive", type=Path)
    installer.add_argument("site", type=Path)
    installer.add_argument("pip_options", nargs=argparse.REMAINDER, help="more pip options (prepare: the device's "
                           "platform)")
    installed = sub.add_parser("check-installed", help="check what this interpreter imports")
    installed.add_argument("--carried", default=None, help="the folder the carried wheels were installed into")
    run = sub.add_parser("run", help="the GPU check")
    run.add_argument("--out", default=None, help="where summary.md and logs.tar.gz go (default: $OUT)")
    run.add_argument("--work", default="/tmp/trl_ext_gpu_check/work", help="logs, runs, the carried packages")
    run.add_argument("--carried", default=ARCHIVE, help="the carried wheels' archive (relative to the checkout), or "
                     "'none' to "
                     "use the environment's own packages (a machine where trl-ext is pip-installed)")
    run.add_argument("--only", default=None, help="comma-separated part names (install and setup always run)")
    run.add_argument("--box-scale", type=float, default=1.0, help="multiply every time box (a slower machine)")
    args = parser.parse_args(argv)
    if args.command == "pins":
        print("\n".join(p.requirement for p in read_pins() if p.kind == args.kind))
        return 0
    if args.command == "pack":
        return pack(args.wheel_dir, args.archive)
    if args.command == "install":
        return install(args.archive, args.site, args.pip_options)
    if args.command == "check-wheels":
        pin_list = read_pins()
        result, set_problems = check_wheels(args.wheel_dir, pin_list)
        return report_check(result, set_problems, pin_list)
    if args.command == "check-installed":
        world = installed_world(None if args.carried in (None, "none") else args.carried)
        carried = [d for d in world.values() if d.carried]
        roots = pyproject_roots() + [(f"carried {d.name}", f"{d.name}=={d.version}") for d in carried]
        from packaging.markers import default_environment

        print(f"{len(world)} distributions importable, {len(carried)} of them carried")
        return report_check(check_requirements(world, roots, default_environment()), [])
    return command_run(args)


if __name__ == "__main__":
    sys.exit(main())
