"""Lazy public names of a package: ``__getattr__ = lazy_getattr(__name__, globals(), {"Name": "pkg.module"})``
imports ``pkg.module`` the first time ``Name`` is read (so importing the package stays cheap: no torch, no trl)."""

from __future__ import annotations

from importlib import import_module


def lazy_getattr(package: str, namespace: dict, names: dict[str, str]):
    """A module-level ``__getattr__`` that loads ``names[name]`` from its module once and caches it in
    ``namespace``."""

    def __getattr__(name):
        if name in names:
            value = getattr(import_module(names[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
