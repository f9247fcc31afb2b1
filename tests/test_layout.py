"""The 0.2 layout: old module paths still import (deprecated) and are the new modules."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

from cqtml_env._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_alias_the_new_modules(old: str) -> None:
    if old.endswith("sb3"):
        pytest.importorskip("stable_baselines3")
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(MOVED[old])
    assert mod.__spec__.name == MOVED[old]  # the real module's spec survives the alias
    assert any(issubclass(w.category, DeprecationWarning) and MOVED[old] in str(w.message) for w in caught)


def test_old_names_are_the_same_objects() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from cqtml_env.prefs import PreferenceDataset as Old
        from cqtml_env.reward_model import RewardModel as OldRM
    from cqtml_env import PreferenceDataset, RewardModel

    assert Old is PreferenceDataset and OldRM is RewardModel


@pytest.mark.parametrize(
    "package", ["cqtml_env", "cqtml_env.datasets", "cqtml_env.show", "cqtml_env.labelling"]
)
def test_every_lazy_export_resolves_and_unknown_names_fail(package):
    mod = importlib.import_module(package)
    for name in mod._EXPORTS:
        assert getattr(mod, name) is getattr(importlib.import_module(mod._EXPORTS[name]), name)
    assert set(mod._EXPORTS) <= set(dir(mod))
    with pytest.raises(AttributeError, match=f"{package}.*no_such_name"):
        mod.no_such_name  # noqa: B018
