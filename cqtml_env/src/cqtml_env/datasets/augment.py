"""Level augmentation: the same music played back quieter, for training policies that must
work at any recording level (real recordings are rarely as hot as synthetic mixes)."""

from __future__ import annotations

from typing import Any

import numpy as np


class LevelAugmented:
    """Wrap a data set so clip ``i`` is attenuated by a fixed, seeded ``0..max_cut_db`` dB.

    On the processor's absolute dB scale a gain change is a shift of the normalised CQT
    (``cut_db / top_db``) with values under the floor clipped to 0 (they fall below -80 dB),
    so this costs nothing and matches re-computing the CQT of attenuated audio up to the
    clipping at the floor. ``output_format="audio"`` data sets get their audio scaled instead.
    Same interface as the wrapped data set (``len``, ``[i]``, ``get_many``, ``clip_info``).
    """

    def __init__(self, dataset: Any, max_cut_db: float = 24.0, seed: int = 0) -> None:
        if max_cut_db < 0:
            raise ValueError(f"max_cut_db must be >= 0 dB, got {max_cut_db}")
        self.dataset = dataset
        self.max_cut_db = float(max_cut_db)
        self.seed = int(seed)
        self.processor = dataset.processor

    def __len__(self) -> int:
        return len(self.dataset)

    def cut_db(self, i: int) -> float:
        """The attenuation of clip ``i`` (deterministic in seed and index)."""
        return float(np.random.default_rng([self.seed, int(i), 0x1E7E1]).uniform(0.0, self.max_cut_db))

    def _apply(self, i: int, x: np.ndarray) -> np.ndarray:
        cut = self.cut_db(i)
        if getattr(self.dataset, "output_format", "cqt") == "audio":
            return (x * 10 ** (-cut / 20)).astype(np.float32)
        shift = cut / self.processor.config.top_db
        return np.clip(x - shift, 0.0, 1.0).astype(np.float32)

    def __getitem__(self, i: int) -> np.ndarray:
        return self._apply(i, self.dataset[i])

    def get_many(self, indices) -> np.ndarray:
        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        base = self.dataset.get_many(idx) if hasattr(self.dataset, "get_many") else np.stack(
            [self.dataset[i] for i in idx]
        )
        return np.stack([self._apply(i, x) for i, x in zip(idx, base)]) if idx else base

    def clip_info(self, i: int) -> dict[str, Any]:
        info = dict(self.dataset.clip_info(i))
        info["level_cut_db"] = self.cut_db(i)
        return info
