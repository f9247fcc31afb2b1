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
    """Run every librosa path CQTML uses once; returns the seconds spent.

    The clip is 5 s: the gold scorer only tracks beats on clips of 2 s or more, and the beat
    tracker's kernels are the ones that crashed xdist workers when first compiled in parallel.
    Every gold version, both envelope dtypes of the beat tracker (the gold scorer's float64,
    the independent metrics' float32) and the show's tempo estimate are run."""
    t0 = time.perf_counter()
    import librosa

    from cqtml_env.features.cqt import CQTProcessor
    from cqtml_env.gold.scorer import GOLD_VERSIONS, GoldScorer
    from cqtml_env.show.export import detect_tempo

    processor = CQTProcessor(max_duration=5.0)
    sr = processor.sample_rate
    t = np.arange(5 * sr) / sr
    clicks = (np.sin(2 * np.pi * 220 * t) * (np.mod(t, 0.5) < 0.05)).astype(np.float32)
    cqt = processor(clicks, sample_rate=sr)  # librosa.cqt (+ resampling kernels)
    processor(clicks[::2], sample_rate=sr // 2)
    rng = np.random.default_rng(0)
    actions = rng.random((2, 4, cqt.shape[-1])).astype(np.float32)
    for version in GOLD_VERSIONS:  # onset strength, peak picking, beat tracking
        GoldScorer(version=version).score(cqt, actions)
    hop = processor.hop_length
    onset = librosa.onset.onset_strength(y=clicks, sr=sr, hop_length=hop)
    for env in (onset.astype(np.float32), onset.astype(np.float64)):
        librosa.beat.beat_track(onset_envelope=env, sr=sr, hop_length=hop, units="frames")
    detect_tempo(onset, processor.frame_rate)
    return time.perf_counter() - t0


def main() -> None:
    print(f"cqtml_env: numba kernels warm ({warm_numba_caches():.1f} s)")


if __name__ == "__main__":
    main()
