"""Compile librosa's numba kernels once, in one process, before anything runs in parallel.

librosa caches its numba-compiled kernels on disk (``cache=True``, beside its sources). On a
fresh install, several processes compiling the same kernel at once (pytest-xdist workers,
torchrun ranks, data-cache workers) can leave a corrupt cache that makes every later call
segfault (seen on a fresh venv here). Warming the cache from a single process first avoids
that race; afterwards processes only read it.

A cache that is already corrupt (another process compiled at the same time as the warm-up:
numba/numba#10128, librosa/librosa#1998) crashes even a single process. So ``main`` then
checks the kernels in a fresh process and, if that process dies, deletes librosa's numba
cache files and warms again (``ensure_warm``).

    python -m cqtml_env.warmup
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

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


# a fresh process that runs the kernels the warm-up compiled: a corrupt cache kills it
_PROBE = """
import numpy as np, librosa
env = np.abs(np.random.default_rng(0).standard_normal(216))
for e in (env.astype(np.float32), env):
    librosa.beat.beat_track(onset_envelope=e, sr=22050, hop_length=512, units="frames")
"""


def probe_kernels(timeout: float = 300.0) -> int:
    """Exit status of a fresh Python process that runs librosa's beat tracker (both envelope
    dtypes): 0 when the cached kernels work, negative (the signal) when they crash it."""
    return subprocess.run([sys.executable, "-c", _PROBE], timeout=timeout,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def librosa_cache_files() -> list[Path]:
    """librosa's numba cache files (``*.nbi`` index, ``*.nbc`` code): beside its sources, and
    under ``NUMBA_CACHE_DIR`` when that is set."""
    import librosa

    roots = [Path(librosa.__file__).parent]
    if os.environ.get("NUMBA_CACHE_DIR"):
        roots.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    files = []
    for root in roots:
        for pattern in ("*.nbi", "*.nbc"):
            files += [p for p in root.rglob(pattern) if "librosa" in str(p)]
    return sorted(set(files))


def ensure_warm(*, warm: Callable[[], float] = warm_numba_caches,
                probe: Callable[[], int] = probe_kernels,
                cache_files: Callable[[], Iterable[Path]] = librosa_cache_files,
                log: Callable[[str], None] = print) -> float:
    """Warm the caches, check them in a fresh process, and once rebuild them if that process
    crashed. Returns the seconds spent; raises ``RuntimeError`` if even a rebuilt cache
    crashes."""
    t0 = time.perf_counter()
    warm()
    rc = probe()
    if rc != 0:
        files = list(cache_files())
        log(f"cqtml_env: librosa's numba cache crashes a fresh process (exit {rc}): a process "
            f"compiled it at the same time as the warm-up; deleting its {len(files)} files "
            "and compiling again")
        for f in files:
            f.unlink(missing_ok=True)
        warm()
        rc = probe()
        if rc != 0:
            raise RuntimeError(f"librosa's numba kernels still crash a fresh process (exit "
                               f"{rc}) after rebuilding the cache; is another process using "
                               "this environment at the same time?")
    return time.perf_counter() - t0


def main() -> None:
    print(f"cqtml_env: numba kernels warm and checked ({ensure_warm():.1f} s)")


if __name__ == "__main__":
    main()
