"""Compile librosa's numba kernels once, in one process, before anything runs in parallel.

librosa caches its numba-compiled kernels on disk (``cache=True``, beside its sources). On a
fresh install, several processes compiling the same kernel at once (pytest-xdist workers,
torchrun ranks, data-cache workers) can leave a corrupt cache that makes every later call
segfault (seen on a fresh venv here). Warming the cache from a single process first avoids
that race; afterwards processes only read it.

    python -m cqtml_env.warmup
"""

from __future__ import annotations

import time

import numpy as np


def warm_numba_caches() -> float:
    """Run every librosa path CQTML uses once on a short signal; returns the seconds spent."""
    t0 = time.perf_counter()
    from cqtml_env.features.cqt import CQTProcessor
    from cqtml_env.gold.scorer import GoldScorer

    processor = CQTProcessor(max_duration=1.0)
    sr = processor.sample_rate
    t = np.arange(sr) / sr
    clicks = (np.sin(2 * np.pi * 220 * t) * (np.mod(t, 0.25) < 0.05)).astype(np.float32)
    cqt = processor(clicks, sample_rate=sr)  # librosa.cqt (+ resampling kernels)
    processor(clicks[::2], sample_rate=sr // 2)
    rng = np.random.default_rng(0)
    actions = rng.random((2, 4, cqt.shape[-1])).astype(np.float32)
    GoldScorer().score(cqt, actions)  # onset strength, peak picking, beat tracking
    return time.perf_counter() - t0


def main() -> None:
    print(f"cqtml_env: numba kernels warm ({warm_numba_caches():.1f} s)")


if __name__ == "__main__":
    main()
