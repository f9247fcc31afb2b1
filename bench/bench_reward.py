"""Reward scoring cost: ms per 256 (clip, action) pairs on CPU, and the gold scorer's.

    python bench/bench_reward.py [--repeats 20] [--threads 1]

Cases, for each shipped reward model (gold-v1's and gold-v5's, side by side): 256 actions
of one encoded clip (GRPO: G actions of one clip; the env encodes each clip once), encoding a
clip never seen (gold-v5's encoder runs gold-v5's rules on it, beat tracking included), and
256 distinct clips with one action each (a vector env step; the same 256 clips every repeat,
so gold-v5's rule features come from its cache after the warm-up, as they do in the env).
Then the gold scorer (gold-v1) on 256 actions of one clip (features cached, as in preference
generation) and its per-clip features. Reports the median over repeats.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()

    import torch

    from cqtml_env.gold.scorer import GoldScorer
    from cqtml_env.reward.model import SHIPPED_GOLD_VERSIONS, RewardModel

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.batch
    one_clip = torch.from_numpy(rng.random((1, 2, 84, 216), dtype=np.float32) * 0.8)
    clips = torch.from_numpy(rng.random((n, 2, 84, 216), dtype=np.float32) * 0.8)
    actions = torch.from_numpy(rng.random((n, 4, 216), dtype=np.float32))
    models = {v: RewardModel.load_default(v) for v in SHIPPED_GOLD_VERSIONS}
    print(f"shipped reward models, torch threads {args.threads}")
    with torch.no_grad():
        encoded = {}
        for v, m in models.items():
            m.encode_clip(one_clip)  # first call: imports, librosa's beat tracker compiles
            encoded[v] = m.encode_clip(one_clip)
        cases = {  # each repeat times every model in turn: side by side, same machine state
            f"1 encoded clip x {n} actions": lambda v: models[v].score_encoded(encoded[v], actions),
            f"{n} clips x 1 action each": lambda v: models[v](clips, actions),
        }
        for name, fn in cases.items():
            for v in models:
                fn(v)  # warm-up (and gold-v5's rule features of these clips, cached)
            times = {v: [] for v in models}
            for _ in range(args.repeats):
                for v in models:
                    t0 = time.perf_counter()
                    fn(v)
                    times[v].append(time.perf_counter() - t0)
            ms = {v: float(np.median(t) * 1e3) for v, t in times.items()}
            print(f"  {name:28s} " + "  ".join(f"{v} {x:7.2f} ms" for v, x in ms.items())
                  + f"  (ratio {ms['gold-v5'] / ms['gold-v1']:.2f})")
        for v, m in models.items():
            fresh = [torch.from_numpy(rng.random((1, 2, 84, 216), dtype=np.float32) * 0.8)
                     for _ in range(5)]  # new content: the gold rules' cache cannot help
            t0 = time.perf_counter()
            for c in fresh:
                m.encode_clip(c)
            print(f"  encode one new clip, {v}  {(time.perf_counter() - t0) / 5 * 1e3:7.2f} ms "
                  f"({m.num_parameters()} parameters)")
    gold = GoldScorer()
    cqt = one_clip[0].numpy()
    acts = actions.numpy()
    gold.features(cqt)
    ms = median_ms(lambda: gold.score(cqt, acts), args.repeats)
    print(f"gold scorer: 1 clip x {n} actions {ms:8.2f} ms per {n} (clip features cached)")
    fresh = [rng.random((2, 84, 216), dtype=np.float32) * 0.8 for _ in range(5)]
    t0 = time.perf_counter()
    for c in fresh:
        gold.features(c)
    print(f"gold scorer: per-clip features   {(time.perf_counter() - t0) / 5 * 1e3:8.2f} ms/clip")


if __name__ == "__main__":
    main()
