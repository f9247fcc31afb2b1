"""Feature cache payoff: time to get a clip's CQT fresh vs from the on-disk cache.

    python bench/bench_cache.py [--clips 32] [--max-duration 5]

Two sources: SyntheticMusic (synthesis + CQT) and a temp folder of 44.1 kHz wav files
(decode + resample + CQT). Each is timed for a cold pass (computes and fills the cache)
and a warm pass (new data set object, same cache: only np.load).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def timed_pass(ds) -> float:
    """Mean seconds per clip for one pass over ``ds``."""
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return (time.perf_counter() - t0) / len(ds)


def report(name: str, fresh: float, cached: float) -> None:
    print(f"{name:<24} fresh {fresh * 1e3:8.2f} ms/clip   cached {cached * 1e3:7.3f} ms/clip   "
          f"ratio {fresh / cached:7.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--max-duration", type=float, default=5.0)
    args = ap.parse_args()

    import soundfile as sf

    from cqtml_env import AudioFolder, FeatureCache, SyntheticMusic
    from cqtml_env.datasets.synthetic import generate_clip

    SyntheticMusic(1, max_duration=args.max_duration)[0]  # warm librosa's filter cache / JIT
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(tmp) / "cache"
        kw = {"num_clips": args.clips, "seed": 123, "max_duration": args.max_duration}
        fresh = timed_pass(SyntheticMusic(**kw, cache=FeatureCache(cache_dir)))
        warm = SyntheticMusic(**kw, cache=FeatureCache(cache_dir))
        cached = timed_pass(warm)
        assert warm.cache.hits == args.clips and warm.cache.misses == 0
        report("SyntheticMusic", fresh, cached)

        folder = Path(tmp) / "wav"
        folder.mkdir()
        for i in range(args.clips):
            audio, _ = generate_clip(7, i, args.max_duration, sample_rate=44100)
            sf.write(folder / f"{i:03d}.wav", audio.T, 44100)
        fresh = timed_pass(AudioFolder(folder, max_duration=args.max_duration,
                                       cache=FeatureCache(cache_dir)))
        warm = AudioFolder(folder, max_duration=args.max_duration, cache=FeatureCache(cache_dir))
        cached = timed_pass(warm)
        assert warm.cache.hits == args.clips
        report("AudioFolder (44.1k wav)", fresh, cached)

        entry = next(cache_dir.rglob("*.npy"))
        shape = np.load(entry).shape
        print(f"cache entry: {shape} float32, {entry.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
