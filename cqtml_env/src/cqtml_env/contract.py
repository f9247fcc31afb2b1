"""The observation/action contract: the one place its facts live (``docs/CONTRACT.md``).

Every component that reasons about frames, devices or levels — CQT, gold scorer, reward
model, env, renderer, show export, device outputs — takes them from a :class:`Contract`
(usually ``Contract.from_processor(processor, num_devices=...)``), never from literals.
``cqtml_policy.contract`` holds the same facts for the policy side (the two packages never
import each other); ``tests/test_contract.py`` checks that the two agree.

Example:
    >>> from cqtml_env import CQTProcessor
    >>> c = Contract.from_processor(CQTProcessor(hop_length=256), num_devices=4)
    >>> round(c.frame_rate, 2), c.bands[0], float(c.level_grid()[-1])
    (86.13, (0, 21), 1.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# CQT defaults (librosa's): the frame rate of every default component is SAMPLE_RATE / HOP_LENGTH
SAMPLE_RATE = 22050
HOP_LENGTH = 512
N_BINS = 84
CHANNELS = 2
MAX_DURATION = 5.0
DEFAULT_FRAME_RATE = SAMPLE_RATE / HOP_LENGTH  # 43.07 frames/s
DEFAULT_NUM_DEVICES = 4
DEFAULT_LEVELS = 32  # K: level i means activation i / (K - 1)


def device_bands(n_bins: int, num_devices: int) -> list[tuple[int, int]]:
    """Device ``d`` follows bins ``[floor(d·n/D), floor((d+1)·n/D))``, lowest band first."""
    if n_bins <= 0 or num_devices <= 0:
        raise ValueError(f"n_bins and num_devices must be > 0, got {n_bins}, {num_devices}")
    if num_devices > n_bins:
        raise ValueError(f"num_devices ({num_devices}) must be <= n_bins ({n_bins})")
    return [
        (d * n_bins // num_devices, (d + 1) * n_bins // num_devices) for d in range(num_devices)
    ]


def level_grid(levels: int = DEFAULT_LEVELS) -> np.ndarray:
    """The ``K`` activation levels ``i / (K - 1)`` (float32), the discrete action grid."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    return (np.arange(levels) / (levels - 1)).astype(np.float32)


def quantise(activations: Any, levels: int = DEFAULT_LEVELS) -> np.ndarray:
    """Snap activations to the ``levels``-level grid (float32)."""
    k = int(levels) - 1
    return (np.round(np.clip(np.asarray(activations), 0, 1) * k) / k).astype(np.float32)


@dataclass(frozen=True)
class Contract:
    """Shapes, frame rate, device bands and level grid shared by everything downstream."""

    n_bins: int = N_BINS
    num_frames: int = 1 + int(round(MAX_DURATION * SAMPLE_RATE)) // HOP_LENGTH
    frame_rate: float = DEFAULT_FRAME_RATE
    num_devices: int = DEFAULT_NUM_DEVICES
    levels: int = DEFAULT_LEVELS
    channels: int = CHANNELS

    def __post_init__(self) -> None:
        if not self.frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0 frames/s, got {self.frame_rate}")
        if self.num_frames < 1 or self.channels < 1:
            raise ValueError("num_frames and channels must be >= 1")
        device_bands(self.n_bins, self.num_devices)  # validates n_bins / num_devices
        level_grid(self.levels)

    @classmethod
    def from_processor(
        cls, processor: Any, *, num_devices: int = DEFAULT_NUM_DEVICES, levels: int = DEFAULT_LEVELS
    ) -> Contract:
        """The contract of the CQT a processor makes (its frame rate, bins and frames)."""
        return cls(
            n_bins=int(processor.n_bins),
            num_frames=int(processor.num_frames),
            frame_rate=float(processor.frame_rate),
            num_devices=int(num_devices),
            levels=int(levels),
            channels=int(processor.shape[0]),
        )

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.n_bins, self.num_frames)

    @property
    def action_shape(self) -> tuple[int, int]:
        return (self.num_devices, self.num_frames)

    @property
    def bands(self) -> list[tuple[int, int]]:
        return device_bands(self.n_bins, self.num_devices)

    def level_grid(self) -> np.ndarray:
        return level_grid(self.levels)

    def frames(self, seconds: float) -> int:
        """The number of frames (at least 1) closest to ``seconds``: windows, delays, gaps."""
        return max(1, int(round(float(seconds) * self.frame_rate)))

    def seconds(self, frames: Any) -> Any:
        """Frame index (or indices) -> time in seconds."""
        return np.asarray(frames) / self.frame_rate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Contract:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown contract keys {sorted(unknown)}")
        return cls(**d)


DEFAULT_CONTRACT = Contract()

__all__ = [
    "Contract",
    "DEFAULT_CONTRACT",
    "DEFAULT_FRAME_RATE",
    "DEFAULT_LEVELS",
    "DEFAULT_NUM_DEVICES",
    "HOP_LENGTH",
    "MAX_DURATION",
    "N_BINS",
    "SAMPLE_RATE",
    "device_bands",
    "level_grid",
    "quantise",
]
