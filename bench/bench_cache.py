"""Feature cache payoff: time to get a clip's CQT fresh vs from the on-disk cache.

    python bench/bench_cache.py [--clips 32] [--max-duration 5]

Two sources: SyntheticMusic (synthesis + CQT) and a temp folder of 44.1 kHz wav files
(decode + resample + CQT). Each is timed for a cold pass (computes and fills the cache)
and a warm pass (new data set object, same cache: only np.load). Then the cost of verifying
an entry on read (CRC-32 now, BLAKE2b before, value checks), each against a plain np.load.
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
        verify_costs(FeatureCache(cache_dir), entry)


def _best_us(fn, n: int = 200, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def verify_costs(cache, entry: Path) -> None:
    """One warm entry read every way, side by side (best of 5 x 200 reads, µs per read)."""
    import hashlib
    import io
    import zlib

    from cqtml_env.features.cache import TRAILER_SIZE

    key = entry.stem
    data = entry.read_bytes()
    body = memoryview(data)[:-TRAILER_SIZE]
    arr = np.load(io.BytesIO(body))

    def old_values():  # the previous check: isfinite pass + min + max
        return bool(np.all(np.isfinite(arr))) and (float(arr.min()), float(arr.max()))

    rows = [
        ("np.load(path), no checks", lambda: np.load(entry)),
        ("read bytes + np.load", lambda: np.load(io.BytesIO(entry.read_bytes()))),
        ("  BLAKE2b-128 of the body", lambda: hashlib.blake2b(body, digest_size=16).digest()),
        ("  CRC-32 of the body", lambda: zlib.crc32(body)),
        ("  value check before (isfinite+min+max)", old_values),
        ("  value check now (min+max)", lambda: cache._check_array(arr)),
        ("FeatureCache.get (CRC-32 + checks)", lambda: cache.get(key)),
    ]
    res = {name: _best_us(fn) for name, fn in rows}
    res["FeatureCache.get, BLAKE2b-128 trailer"] = _blake2b_get_us(cache, arr)
    base = res["np.load(path), no checks"]
    print("\nverify cost per warm read (measured side by side in this run):")
    for name, us in res.items():
        print(f"  {name:<42} {us:8.1f} us   {us / base:5.2f}x plain np.load")
    ratio = res["FeatureCache.get, BLAKE2b-128 trailer"] / res["FeatureCache.get (CRC-32 + checks)"]
    print(f"  CRC-32 get is {ratio:.1f}x faster than the BLAKE2b-128 get")


def _blake2b_get_us(cache, arr) -> float:
    """FeatureCache.get with the previous BLAKE2b-128 trailer (module constants swapped)."""
    import hashlib

    from cqtml_env.features import cache as mod

    saved = mod._digest, mod.DIGEST_SIZE, mod.TRAILER_SIZE
    mod._digest = lambda data: hashlib.blake2b(data, digest_size=16).digest()
    mod.DIGEST_SIZE, mod.TRAILER_SIZE = 16, len(mod.TRAILER_MAGIC) + 16
    try:
        key = "b2" * 32
        cache.put(key, arr)
        assert cache.get(key) is not None
        return _best_us(lambda: cache.get(key))
    finally:
        mod._digest, mod.DIGEST_SIZE, mod.TRAILER_SIZE = saved


if __name__ == "__main__":
    main()
