"""Clip data sets sharing one interface (see :mod:`cqtml_env.datasets.base`).

Names load lazily so importing one data set does not import the others' dependencies
(pandas for FMA).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ClipDataset": "cqtml_env.datasets.base",
    "FileClipDataset": "cqtml_env.datasets.base",
    "SyntheticMusic": "cqtml_env.datasets.synthetic",
    "AudioFolder": "cqtml_env.datasets.folder",
    "FreeMusic": "cqtml_env.datasets.fma",
    "MusicNet": "cqtml_env.datasets.musicnet",
    "make_dataset": "cqtml_env.datasets.spec",
    "Windowing": "cqtml_env.datasets.windowing",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cqtml_env.datasets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
