"""Whole-song shows for real lights: rig files, the flash limiter, windowed inference,
show files (csv/json/MIDI/overview.png/preview.mp4) and live outputs (sACN, Art-Net, OSC,
MIDI). The policy is an argument (any ``PolicyModel``); this package never imports
``cqtml_policy``. Names load lazily.

Example:
    >>> from cqtml_env.show import make_show, load_rig  # doctest: +SKIP
    >>> show = make_show("song.wav", policy, rig=load_rig("rig.toml"), out="show")  # doctest: +SKIP
"""

from __future__ import annotations

from cqtml_env._lazy import lazy_exports

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
    "reduce_flashes": "cqtml_env.show.limiter",
    "AudioReader": "cqtml_env.show.stream",
    "stream_cqt": "cqtml_env.show.stream",
    "play_show": "cqtml_env.show.player",
    "make_outputs": "cqtml_env.show.outputs",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
