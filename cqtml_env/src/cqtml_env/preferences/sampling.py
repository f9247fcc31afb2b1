"""Which candidate pairs of a clip get labelled: half uniform, half close in gold rank."""

from __future__ import annotations

import numpy as np


def sample_pairs(
    gold: np.ndarray, num_pairs: int, rng: np.random.Generator, near_fraction: float = 0.5
) -> np.ndarray:
    """Pairs ``[P, 2]`` of candidate rows: half uniform, half close in gold rank (hard ones)."""
    m = len(gold)
    if m < 2:
        raise ValueError(f"need at least 2 candidates per clip to pair, got {m}")
    n_near = int(round(num_pairs * near_fraction))
    a = rng.integers(0, m, size=num_pairs)
    b = (a + rng.integers(1, m, size=num_pairs)) % m  # uniform over b != a
    if n_near:
        order = np.argsort(gold, kind="stable")
        pos = rng.integers(0, m, size=n_near)
        step = rng.integers(1, max(2, m // 8) + 1, size=n_near) * rng.choice([-1, 1], n_near)
        other = np.clip(pos + step, 0, m - 1)
        other = np.where(other == pos, np.where(pos > 0, pos - 1, pos + 1), other)
        a[:n_near], b[:n_near] = order[pos], order[other]
    return np.stack([a, b], axis=1).astype(np.int32)


__all__ = ["sample_pairs"]
