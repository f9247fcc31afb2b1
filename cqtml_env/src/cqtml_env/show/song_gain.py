"""Song gain: each window of a show put back on the song's dynamic range.

Why. The gold target auto-gains every clip: each band's level ``L`` is mapped to
``(L - floor) / (ref - floor)``, with ``floor`` and ``ref`` percentiles of the clip
(:meth:`GoldScorer.band_range`). The policies imitate it, and the band-follower does the same
with its own quantiles. In a whole-song show each window is judged against what the policy
sees, ``[window | song context]`` (:mod:`cqtml_env.show.inference`), half of which is the
window itself. So a quiet verse still fills most of the range and looks nearly as bright as
the chorus. The song's large-scale dynamics are lost: the light's self-similarity over the
song stops following the music's.

How. A window's output ``a`` means the level ``floor_w + a * (ref_w - floor_w)``, with the
window's range taken over exactly what the policy saw. Song gain maps that level onto the
song's range, taken over all of the song's frames: ``(level - floor_s) / (ref_s - floor_s)``,
clipped to [0, 1]. Where a window's range equals the song's, nothing changes. A beat pulse
keeps its height relative to the window's range. The flash limiter runs afterwards, on what
the lights get.

The range is the gold target's: for a checkpoint, that of the gold version its gold-target
teacher had (:func:`song_gain_version`, from what ``agents/sft.py`` records), so each window is
mapped with the range the policy learnt to imitate (gold-v7's dark end is a band's 0.5th
percentile, v5's its 5th); otherwise the latest env's (:data:`SONG_GAIN_GOLD_VERSION`).
Versions with a loudness law (gold-v2, gold-v3) are not linear in the level, so they are
refused.

Fullness. The target's level is the mean of a band's few loudest bins: it hears the notes,
not how full the band is. A tutti and a lone line at the same peak give the same level, so
the song's sections, which differ mostly in how many instruments play, blur together. With
``fullness`` ``f`` (default :data:`SONG_FULLNESS`), the song-level part of each band's level
moves ``f`` of the way to the band's mean over all its bins: the offset
``f · (smooth(mean) - smooth(level))`` (a moving average over ``fullness_s`` seconds) is
added to every frame's level before the mapping, and the song's range is taken over the
offset level. A window's detail (beats, onsets) is still its own; only how bright each
stretch of the song is moves. ``fullness=0`` is the plain inverse of the target's auto-gain.
Measured on whole songs: README, "Results: song gain follows how full each band is".

Example:
    >>> import numpy as np
    >>> sg = SongGain(num_devices=1)
    >>> window = (np.array([0.4]), np.array([0.6]))  # a quiet window's floor and ref
    >>> song = (np.array([0.2]), np.array([0.8]))  # the whole song's
    >>> sg.apply(np.array([[0.0, 0.5, 1.0]]), window, song).round(3)
    array([[0.333, 0.5  , 0.667]], dtype=float32)
    >>> sg.apply(np.array([[0.0, 0.5, 1.0]]), window, song, offset=np.full((1, 3), 0.06)).round(3)
    array([[0.433, 0.6  , 0.767]], dtype=float32)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.contract import DEFAULT_FRAME_RATE, device_bands
from cqtml_env.versions import ENV_GOLD_VERSIONS, LATEST_ENV

SONG_GAIN_GOLD_VERSION = ENV_GOLD_VERSIONS[LATEST_ENV]
SONG_FULLNESS = 0.5  # how far the song-level part of a band's level moves to the band's mean
SONG_FULLNESS_S = 1.0  # seconds: the moving average that takes the song-level part

Range = tuple[np.ndarray, np.ndarray]  # (floor [D], ref [D])


class SongGain:
    """Maps window-relative activations onto the song's range (see the module doc).

    ``levels(cqt)`` gives the band levels of CQT frames and ``fullness_levels(cqt)`` each band's
    mean; ``offset(levels, means)`` the fullness offset over the song; ``range(levels)`` the
    ``(floor, ref)``; and ``apply(actions, window_range, song_range, offset)`` the mapping.
    """

    def __init__(self, *, num_devices: int, gold_version: str = SONG_GAIN_GOLD_VERSION,
                 fullness: float = SONG_FULLNESS, fullness_s: float = SONG_FULLNESS_S,
                 frame_rate: float = DEFAULT_FRAME_RATE) -> None:
        from cqtml_env.gold import GoldScorer

        if not 0.0 <= float(fullness) <= 1.0:
            raise ValueError(f"fullness must be in [0, 1] (0: the loudest notes only), got {fullness!r}")
        if not float(fullness_s) > 0 or not float(frame_rate) > 0:
            raise ValueError(f"fullness_s and frame_rate must be > 0, got {fullness_s!r}, {frame_rate!r}")
        self.fullness, self.fullness_s = float(fullness), float(fullness_s)
        self.frame_rate = float(frame_rate)
        self.gold_version = str(gold_version)
        self.scorer = GoldScorer(num_devices=int(num_devices), version=self.gold_version,
                                 cache_size=0)
        if self.scorer.config.loudness_law:
            raise ValueError(f"song gain needs a target linear in the band level; "
                             f"{gold_version!r} has a loudness law (use gold-v1, or gold-v4 "
                             f"and later)")
        self.num_devices = int(num_devices)

    def levels(self, cqt: np.ndarray) -> np.ndarray:
        """``[num_devices, T]`` band levels of CQT frames ``[2, n_bins, T]``."""
        if cqt.shape[-1] == 0:
            return np.zeros((self.num_devices, 0), np.float32)
        if cqt.shape[-1] == 1:  # the scorer wants two frames; a level is per frame anyway
            return self.scorer.band_levels(np.repeat(cqt, 2, axis=-1))[:, :1]
        return self.scorer.band_levels(np.clip(cqt, 0.0, 1.0))

    def fullness_levels(self, cqt: np.ndarray) -> np.ndarray:
        """``[num_devices, T]``: each band's mean over all its bins (the louder channel, as
        :meth:`levels`), how full the band is."""
        mono = np.clip(np.asarray(cqt, np.float32), 0.0, 1.0).max(axis=0)
        bands = self.scorer.bands or device_bands(mono.shape[0], self.num_devices)
        return np.stack([mono[lo:hi].mean(axis=0) for lo, hi in bands]).astype(np.float32)

    def offset(self, levels: np.ndarray, means: np.ndarray) -> np.ndarray:
        """``[D, T]`` fullness offset over the whole song: ``fullness · (smooth(means) -
        smooth(levels))``, smoothed over ``fullness_s``; zeros with ``fullness=0``."""
        levels = np.asarray(levels, np.float64)
        if self.fullness == 0.0 or levels.shape[-1] == 0:
            return np.zeros_like(levels)
        from scipy.ndimage import uniform_filter1d

        size = max(1, int(round(self.fullness_s * self.frame_rate)))
        diff = np.asarray(means, np.float64) - levels
        return self.fullness * uniform_filter1d(diff, size, axis=-1, mode="nearest")

    def range(self, levels: np.ndarray) -> Range:
        """``(floor, ref)`` of the target's auto-gain over ``levels [D, T]``."""
        return self.scorer.band_range(levels)

    def apply(self, actions: np.ndarray, window: Range, song: Range,
              offset: np.ndarray | None = None) -> np.ndarray:
        """``actions [D, T]`` relative to ``window``'s range -> relative to ``song``'s, with
        the fullness ``offset [D, T]`` of those frames (:meth:`offset`) added to the level."""
        a = np.asarray(actions, np.float64)
        fw, rw = (np.asarray(x, np.float64)[:, None] for x in window)
        fs, rs = (np.asarray(x, np.float64)[:, None] for x in song)
        level = fw + a * (rw - fw)
        if offset is not None:
            level = level + np.asarray(offset, np.float64)
        return np.clip((level - fs) / (rs - fs), 0.0, 1.0).astype(np.float32)

    def describe(self, song: Range | None) -> dict[str, Any]:
        """What ``show.json`` records about the song gain."""
        out: dict[str, Any] = {"enabled": True, "gold_version": self.gold_version,
                               "fullness": self.fullness, "fullness_s": self.fullness_s}
        if song is not None:
            out["song_floor"] = [round(float(x), 4) for x in song[0]]
            out["song_ref"] = [round(float(x), 4) for x in song[1]]
        return out


def song_gain_version(checkpoint: str | os.PathLike | None) -> str:
    """The gold version whose range song gain uses for the policy saved in ``checkpoint``.

    A checkpoint written by ``agents/sft.py`` with ``--teacher gold-target`` records its
    teacher's version (``trainer.json``: ``extra.gold_version``); that version is returned
    when its target is linear in the level (gold-v1, v4 and later). Anything else (no
    checkpoint, another teacher, an unreadable record, gold-v2/v3) gets
    :data:`SONG_GAIN_GOLD_VERSION`.

    Example:
        >>> song_gain_version(None)
        'gold-v5'
    """
    from cqtml_env.gold import GOLD_VERSIONS, GoldScorer

    if checkpoint is None:
        return SONG_GAIN_GOLD_VERSION
    try:
        trainer = json.loads((Path(checkpoint) / "trainer.json").read_text())
        version = trainer["extra"]["gold_version"]
    except (OSError, ValueError, KeyError, TypeError):
        return SONG_GAIN_GOLD_VERSION
    if version not in GOLD_VERSIONS or GoldScorer(version=version).config.loudness_law:
        return SONG_GAIN_GOLD_VERSION
    return str(version)


__all__ = ["SongGain", "SONG_FULLNESS", "SONG_FULLNESS_S", "SONG_GAIN_GOLD_VERSION",
           "song_gain_version"]
