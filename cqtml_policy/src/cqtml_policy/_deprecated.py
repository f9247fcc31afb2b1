"""Old public names kept for one release: looking one up returns the new object itself (so
``isinstance`` and pickles by reference keep working) and warns ``DeprecationWarning``."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

REMOVED_IN = "cqtml-policy 0.3"


def alias_getattr(
    module: str, aliases: dict[str, tuple[str, str]]
) -> Callable[[str], Any]:
    """A PEP 562 ``__getattr__`` for ``module``: ``old -> (new module, new name)``."""

    def __getattr__(name: str) -> Any:
        target = aliases.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new_module, new_name = target
        warnings.warn(
            f"{module}.{name} is deprecated: use {new_module}.{new_name} (the same class); "
            f"the old name goes away in {REMOVED_IN}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new_module), new_name)

    return __getattr__
