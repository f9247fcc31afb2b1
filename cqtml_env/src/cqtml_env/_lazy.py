"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists its public names in a table ``{name: module}``; the module is imported the first
time the name is used, so ``import cqtml_env`` stays cheap (no torch, librosa or FastAPI until
needed).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` that import each export on first use.

    Example::

        _EXPORTS = {"CQTProcessor": "cqtml_env.features.cqt"}
        __all__ = list(_EXPORTS)
        __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
    """
    names = sorted(namespace.get("__all__", exports))

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__
