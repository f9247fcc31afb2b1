"""Whole-song shows for real lights: rig files, the flash limiter, windowed inference,
show files (csv/json/MIDI/overview.png/preview.mp4) and live outputs (sACN, Art-Net, OSC,
MIDI). The policy is an argument (any ``PolicyModel``); this package never imports
``cqtml_policy``. Names load lazily.

Example:
    >>> from cqtml_env.show import make_show, load_rig  # doctest: +SKIP
    >>> show = make_show("song.wav", policy, rig=load_rig("rig.toml"), out="show")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "make_show": "cqtml_env.show.api",
    "Show": "cqtml_env.show.api",
    "Rig": "cqtml_env.show.rig",
    "Device": "cqtml_env.show.rig",
    "RigError": "cqtml_env.show.rig",
    "load_rig": "cqtml_env.show.rig",
    "parse_rig": "cqtml_env.show.rig",
    "default_rig": "cqtml_env.show.rig",
    "FlashLimiter": "cqtml_env.show.limiter",
    "limit_flashes": "cqtml_env.show.limiter",
    "AudioReader": "cqtml_env.show.stream",
    "stream_cqt": "cqtml_env.show.stream",
    "play_show": "cqtml_env.show.player",
    "make_outputs": "cqtml_env.show.outputs",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cqtml_env.show' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
