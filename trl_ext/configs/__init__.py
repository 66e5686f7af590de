"""The YAML files shipped with the package: recipe configs and accelerate launch configs.

::

    trl_ext/configs/
      recipes/                  recipe YAMLs (``--config``), with ``base:`` inheritance inside this tree
        embedded/<algo>.yaml    the no-argument CPU testbed of each algorithm
        gsm8k/<model>/<algo>.yaml
      accelerate/<name>.yaml    ``accelerate launch --config_file`` (zero3, zero2, multi_gpu, fsdp2, single_device)

In a checkout ``recipes/configs`` and ``accelerate_configs`` are relative symlinks to these folders, so the paths in
the docs (``recipes/configs/gsm8k/qwen2.5-0.5b-instruct/dapo.yaml``, ``accelerate_configs/zero3.yaml``) work there;
``resolve_config`` makes the same names work from an installed wheel in any directory. No torch/trl import here.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_ROOT = Path(__file__).resolve().parent
RECIPE_CONFIGS = CONFIG_ROOT / "recipes"
ACCELERATE_CONFIGS = CONFIG_ROOT / "accelerate"
KINDS = {"recipe": RECIPE_CONFIGS, "accelerate": ACCELERATE_CONFIGS}
# checkout-relative prefixes of the documented paths, looked up in the package when the path does not exist here
_CHECKOUT_PREFIXES = {"recipe": ("recipes/configs/", "configs/recipes/"), "accelerate": ("accelerate_configs/",)}


class ConfigNotFoundError(FileNotFoundError):
    """A config name is neither an existing path nor a shipped config."""


def _candidates(name: str, kind: str) -> list[Path]:
    text = name.replace("\\", "/")
    for prefix in _CHECKOUT_PREFIXES[kind]:
        if prefix in text:  # e.g. recipes/configs/gsm8k/... or /some/old/checkout/accelerate_configs/zero3.yaml
            text = text.split(prefix, 1)[1]
            break
    text = text.lstrip("/")
    names = [text] if text.endswith((".yaml", ".yml")) else [text, text + ".yaml"]
    return [KINDS[kind] / n for n in names]


def resolve_config(name, kind: str | None = None) -> Path:
    """A config file: ``name`` itself when that path exists, else the shipped config of that name.

    Shipped names are relative to ``trl_ext/configs/recipes`` (``embedded/dapo.yaml``,
    ``gsm8k/qwen2.5-0.5b-instruct/dapo.yaml``) or ``trl_ext/configs/accelerate`` (``zero3.yaml`` or ``zero3``); the
    checkout paths of the docs (``recipes/configs/...``, ``accelerate_configs/...``) resolve too. ``kind``:
    ``"recipe"``, ``"accelerate"`` or None (either). Raises ``ConfigNotFoundError`` listing the shipped names.
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path
    kinds = [kind] if kind else list(KINDS)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)} or None, got {k!r}")
        for candidate in _candidates(str(name), k):
            if candidate.is_file():
                return candidate
    shipped = [n for k in kinds for n in shipped_configs()[k]]
    raise ConfigNotFoundError(
        f"config {str(name)!r} is not a file and not a shipped {' or '.join(kinds)} config; shipped: {', '.join(shipped)}"
    )


def shipped_configs() -> dict[str, list[str]]:
    """``{"recipe": [...], "accelerate": [...]}``: the names ``resolve_config`` accepts, sorted."""
    return {kind: sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml")) for kind, root in KINDS.items()}
