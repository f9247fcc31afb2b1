"""Clip data sets sharing one interface (see :mod:`cqtml_env.datasets.base`).

Names load lazily so importing one data set does not import the others' dependencies
(pandas for FMA).
"""

from __future__ import annotations

from cqtml_env._lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
