"""Reward scoring cost: ms per 256 (clip, action) pairs on CPU, and the gold scorer's.

    python bench/bench_reward.py [--repeats 20] [--threads 1]

Cases: the shipped reward model with one clip broadcast over 256 actions (GRPO: G actions
of one clip; the clip is encoded once), 256 distinct clips with one action each (a vector
env step), the per-clip encoding alone, and the gold scorer on 256 actions of one clip
(features cached, as in preference generation). Reports the median over repeats.
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
    from cqtml_env.reward.model import RewardModel

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = args.batch
    model = RewardModel.load_default()
    one_clip = torch.from_numpy(rng.random((1, 2, 84, 216), dtype=np.float32) * 0.8)
    clips = torch.from_numpy(rng.random((n, 2, 84, 216), dtype=np.float32) * 0.8)
    actions = torch.from_numpy(rng.random((n, 4, 216), dtype=np.float32))
    print(f"reward model: {model.num_parameters()} parameters, torch threads {args.threads}")
    with torch.no_grad():
        ms = median_ms(lambda: model(one_clip, actions), args.repeats)
        print(f"  1 clip x {n} actions      {ms:8.2f} ms per {n}")
        ms = median_ms(lambda: model(clips, actions), max(3, args.repeats // 4))
        print(f"  {n} clips x 1 action each  {ms:8.2f} ms per {n}")
        ms = median_ms(lambda: model.encode_clip(clips), max(3, args.repeats // 4))
        print(f"  encode {n} clips only      {ms:8.2f} ms")
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
