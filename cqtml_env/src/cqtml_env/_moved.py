"""Old module paths of cqtml-env 0.1 that moved in 0.2 (docs/ARCHITECTURE.md), kept importable
for one release: ``import cqtml_env.reward_model`` gives ``cqtml_env.reward.model`` itself
(same objects, so ``isinstance`` and monkeypatching keep working) with a DeprecationWarning.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "cqtml_env.audio": "cqtml_env.features.audio",
    "cqtml_env.cqt": "cqtml_env.features.cqt",
    "cqtml_env.cache": "cqtml_env.features.cache",
    "cqtml_env.candidates": "cqtml_env.preferences.candidates",
    "cqtml_env.prefs": "cqtml_env.preferences",
    "cqtml_env.reward_model": "cqtml_env.reward.model",
    "cqtml_env.reward_train": "cqtml_env.reward.training",
    "cqtml_env.vector_env": "cqtml_env.env.vector",
    "cqtml_env.render": "cqtml_env.env.render",
    "cqtml_env.sb3": "cqtml_env.adapters.sb3_vec_env",
    # 0.2: the adapter module got a specific name (cqtml_policy has its own `sb3` package)
    "cqtml_env.adapters.sb3": "cqtml_env.adapters.sb3_vec_env",
}


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec) -> ModuleType:
        warnings.warn(
            f"{self.old} moved to {self.new}; the old path goes away in cqtml-env 0.3",
            DeprecationWarning,
            stacklevel=4,
        )
        module = importlib.import_module(self.new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system set the alias spec; keep the real one


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedLoader(fullname, new))


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
