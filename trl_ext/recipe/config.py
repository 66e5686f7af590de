"""Recipe YAML files with inheritance, checked against the recipe's dataclasses, handed to ``TrlParser``.

A recipe YAML is a flat mapping of field names of the recipe's dataclasses (script arguments, the trainer config,
``ModelConfig``), plus two reserved keys:

* ``base: <path>`` (relative to the YAML's own directory): load that file first, then apply this one on top;
  chains are allowed, cycles are an error. Mappings (``model_init_kwargs``, ``env``...) are merged key by key.
* ``env: {NAME: value}``: environment variables to set (as ``TrlParser`` does).

Unknown keys fail with the key and the file that set it. The command line overrides the YAML: TRL's
``--config <file>`` convention, but the merged YAML values are set as parser defaults by this module (TrlParser's
own ``--config`` reading knows no ``base``). The hardware adaptation (``trl_ext.recipe.hardware``) applies to the
result, YAML and command line together, so that ``--use_vllm true`` or ``--bf16 true`` on a machine without CUDA
is adapted like the same key in the YAML.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from pathlib import Path

from trl_ext.recipe.hardware import hardware_overrides, log

RESERVED = ("base", "env")


class RecipeConfigError(ValueError):
    """A recipe YAML is malformed or sets a key that none of the recipe's dataclasses has."""


@dataclasses.dataclass(frozen=True)
class ConfigSource:
    """Where the values of one ``parse_recipe_args`` call came from (for the run summary)."""

    config: str | None  # the recipe YAML (--config, else the recipe's default config)
    config_files: list[str]  # every file of its base chain that set a key
    hardware: str  # the hardware adaptation line
    argv: list[str]  # the command-line arguments parsed after the YAML


class RecipeArgs(tuple):
    """What ``parse_recipe_args`` returns: the parser's dataclasses, unpacked like a tuple
    (``script_args, training_args, model_args = parse_recipe_args(...)``), plus ``.source`` (a ``ConfigSource``)."""

    source: ConfigSource

    def __new__(cls, outputs, source: ConfigSource):
        self = super().__new__(cls, outputs)
        self.source = source
        return self


def _read(path: Path) -> dict:
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise RecipeConfigError(f"recipe config {path} does not exist") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeConfigError(f"recipe config {path} must be a YAML mapping, got {type(data).__name__}")
    return data


def load_recipe_yaml(path, _stack: tuple = ()) -> tuple[dict, dict]:
    """Merge ``path`` over its ``base`` chain. Returns ``(values, sources)``: sources maps each key to the file that
    set it last. ``env`` is returned as a merged mapping under the key ``env``."""
    path = Path(path).resolve()
    if path in _stack:
        chain = " -> ".join(str(p) for p in (*_stack, path))
        raise RecipeConfigError(f"recipe config inheritance cycle: {chain}")
    data = _read(path)
    values: dict = {}
    sources: dict = {}
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise RecipeConfigError(f"{path}: 'base' must be a path string, got {base!r}")
        values, sources = load_recipe_yaml(path.parent / base, (*_stack, path))
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            value = {**values[key], **value}
        values[key] = value
        sources[key] = str(path)
    return values, sources


def find_recipe_config(name) -> Path:
    """``name`` if that file exists, else the shipped recipe config of that name (``embedded/dapo.yaml``,
    ``gsm8k/<model>/<algo>.yaml``, or a documented checkout path ``recipes/configs/...``)."""
    from trl_ext.configs import ConfigNotFoundError, resolve_config

    try:
        return resolve_config(name, "recipe")
    except ConfigNotFoundError as err:
        raise RecipeConfigError(str(err)) from None


def _field_names(dataclass_types) -> dict[str, str]:
    return {f.name: dc.__name__ for dc in dataclass_types for f in dataclasses.fields(dc)}


def check_keys(values: dict, sources: dict, dataclass_types) -> None:
    """Raise ``RecipeConfigError`` for keys that are no field of the recipe's dataclasses."""
    fields = _field_names(dataclass_types)
    names = ", ".join(dc.__name__ for dc in dataclass_types)
    for key in values:
        if key in RESERVED or key in fields:
            continue
        close = difflib.get_close_matches(key, list(fields), n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise RecipeConfigError(
            f"unknown key {key!r} in recipe config {sources.get(key, '?')}: it is not a field of {names}{hint}"
        )


_UNSET = object()


def _command_line_values(parser, args: list[str], fields: set[str]) -> dict:
    """The fields that ``args`` sets, with the values the parser converts them to (defaults left out).

    Every field starts as a placeholder in the namespace, which argparse then leaves alone unless an argument sets
    it. Arguments that are no field fail as ``parse_args_into_dataclasses`` would."""
    placeholders = argparse.Namespace(**dict.fromkeys(fields, _UNSET))
    namespace, unknown = parser.parse_known_args(args=args, namespace=placeholders)
    if unknown:
        raise ValueError(f"Some specified arguments are not used by the HfArgumentParser: {unknown}")
    return {key: value for key, value in vars(namespace).items() if value is not _UNSET}


def parse_recipe_args(parser, default_config=None, args=None):
    """Parse ``--config <yaml>`` (with ``base`` inheritance) and the command line into the parser's dataclasses.

    ``parser`` is a ``trl.TrlParser`` (or ``HfArgumentParser``) built from the recipe's dataclasses. Without
    ``--config`` the recipe's ``default_config`` is used (the embedded CPU testbed). Either is a path or the name of
    a shipped config (``trl_ext.configs.resolve_config``). Hardware settings are applied to the merged values, YAML
    and command line (see ``trl_ext.recipe.hardware``), and reported in one log line. Returns a ``RecipeArgs``: the
    dataclasses as a tuple, with ``.source`` (config, its files, the hardware line) for ``RecipeRun``'s summary.
    """
    args = list(sys.argv[1:] if args is None else args)
    config_path = default_config
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            raise RecipeConfigError("--config needs a path")
        config_path = args[i + 1]
        del args[i : i + 2]
    if config_path is not None:
        config_path = find_recipe_config(config_path)
    values, sources = ({}, {}) if config_path is None else load_recipe_yaml(config_path)
    dataclass_types = list(parser.dataclass_types)
    check_keys(values, sources, dataclass_types)
    env = values.pop("env", None) or {}
    if not isinstance(env, dict):
        raise RecipeConfigError(f"'env' in {sources.get('env')} must be a mapping")
    for key, value in env.items():
        os.environ[str(key)] = str(value)
    values.pop("base", None)
    fields = set(_field_names(dataclass_types))
    remaining = parser.set_defaults_with_config(**values)
    if remaining:  # check_keys makes this unreachable; kept as a guard against parser changes
        raise RecipeConfigError(f"recipe config {config_path}: keys not consumed by the parser: {remaining}")
    values, hardware_line = hardware_overrides({**values, **_command_line_values(parser, args, fields)}, fields)
    log(hardware_line)
    # YAML, command line and hardware settings merged: they are the defaults now, and nothing is left to parse
    parser.set_defaults_with_config(**values)
    outputs = parser.parse_args_into_dataclasses(args=[])
    source = ConfigSource(config=None if config_path is None else str(config_path),
                          config_files=sorted(set(sources.values())), hardware=hardware_line, argv=args)
    return RecipeArgs(outputs, source)
