"""Simulated labellers (B-Pref style): who prefers which of two shows, from their gold scores.

``oracle`` prefers the higher gold score (0.5 on an exact tie); ``bt`` samples
``P(first) = sigmoid((g1 - g2) / temperature)``; ``mistake`` is the oracle flipped with
probability ``epsilon``. ``human`` labels come from people (the labelling page).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABELLERS = ("oracle", "bt", "mistake", "human")


def label_pairs(
    gold_first: np.ndarray,
    gold_second: np.ndarray,
    mode: str = "oracle",
    rng: np.random.Generator | None = None,
    temperature: float = 0.02,
    epsilon: float = 0.1,
) -> np.ndarray:
    """Labels ``P(first preferred)`` in {0, 0.5, 1} from gold scores (see module docs)."""
    g1 = np.asarray(gold_first, dtype=np.float64)
    g2 = np.asarray(gold_second, dtype=np.float64)
    if g1.shape != g2.shape:
        raise ValueError(f"gold arrays differ in shape: {g1.shape} vs {g2.shape}")
    diff = g1 - g2
    oracle = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    if mode == "oracle":
        return oracle.astype(np.float32)
    rng = rng if rng is not None else np.random.default_rng()
    if mode == "bt":
        if temperature <= 0:
            raise ValueError(f"bt temperature must be > 0, got {temperature}")
        p = 1.0 / (1.0 + np.exp(-np.clip(diff / temperature, -50, 50)))
        return (rng.random(diff.shape) < p).astype(np.float32)
    if mode == "mistake":
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"mistake epsilon must be in [0, 1], got {epsilon}")
        flip = rng.random(diff.shape) < epsilon
        return np.where(flip, 1.0 - oracle, oracle).astype(np.float32)
    raise ValueError(f"unknown labeller {mode!r}; expected one of oracle, bt, mistake")


@dataclass
class LabellerSpec:
    mode: str = "oracle"
    temperature: float = 0.02
    epsilon: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in ("oracle", "bt", "mistake"):
            raise ValueError(f"unknown labeller {self.mode!r}; expected oracle, bt or mistake")


__all__ = ["LABELLERS", "LabellerSpec", "label_pairs"]
