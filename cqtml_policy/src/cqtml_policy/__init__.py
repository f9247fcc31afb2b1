"""CQTML policies: read a clip's CQT ``[2, n_bins, T]``, emit device activations ``[devices, T]``.

Everything here depends only on the observation/action contract (shapes, dtypes, ranges),
never on ``cqtml_env``. Public names load lazily so ``import cqtml_policy`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from cqtml_policy._deprecated import alias_getattr
from cqtml_policy._version import __version__

_EXPORTS: dict[str, str] = {
    "PolicyModel": "cqtml_policy.protocol",
    "LogProbabilityHead": "cqtml_policy.heads",
    "CategoricalPolicy": "cqtml_policy.categorical",
    "CQTViTModel": "cqtml_policy.vit",
    "TemporalCNNModel": "cqtml_policy.cnn",
    "BandFollowPolicy": "cqtml_policy.baselines",
    "RandomPolicy": "cqtml_policy.baselines",
    "load_policy": "cqtml_policy.io",
    "create_policy": "cqtml_policy.registry",
    "list_policies": "cqtml_policy.registry",
    "policy_class": "cqtml_policy.registry",
}

# 0.1 names -> (module, new name); looked up with a DeprecationWarning, never cached here
_DEPRECATED: dict[str, tuple[str, str]] = {
    "VanillaCNNModel": ("cqtml_policy.cnn", "TemporalCNNModel"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        return _deprecated_getattr(name)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cqtml_policy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


_deprecated_getattr = alias_getattr("cqtml_policy", _DEPRECATED)
