"""What machine and versions a comparison ran on (for the report; nothing machine-specific beyond names)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

from trl_ext.compare.runner import gpu_names

PACKAGES = ("torch", "trl", "transformers", "accelerate", "deepspeed", "peft", "trl-ext")


def cpuinfo(field: str) -> str | None:
    """The first ``field`` of /proc/cpuinfo (``model name``, ``vendor_id``), or None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ...; the machine name where /proc/cpuinfo has no vendor."""
    return cpuinfo("vendor_id") or platform.machine()


def machine_info() -> dict:
    gpus = gpu_names()
    info = {"cpu": cpu_name(), "cpu cores": os.cpu_count(), "gpu": f"{len(gpus)} x {gpus[0]}" if gpus else "none",
            "os": platform.platform(), "python": platform.python_version()}
    if hasattr(os, "getloadavg"):  # other jobs on a shared machine make the timings noisy
        info["load average (1/5/15 min) when the report was written"] = " / ".join(
            f"{x:.1f}" for x in os.getloadavg())
    for pkg in PACKAGES:
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return info


def machine_line() -> str:
    info = machine_info()
    versions = ", ".join(f"{k} {info[k]}" for k in PACKAGES if k in info)
    return f"{info['cpu cores']} CPU cores ({info['cpu']}), GPU: {info['gpu']}; {versions}"
