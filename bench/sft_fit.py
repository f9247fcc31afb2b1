"""How well an SFT student fits the gold target, and what each kind of miss costs.

    python bench/sft_fit.py runs/sft-a runs/sft-b ...          # the held-out fit curves
    python bench/sft_fit.py --error-cost --data folder:TUNE     # what a miss costs gold-v3

Runs: each argument is an ``agents/sft.py --eval-every N`` run directory; its ``eval.json``
(cross-entropy or soft loss, exact levels, level error, the greedy show's std over time beside
the teacher's, normalised gold) becomes one row per evaluation.

``--error-cost``: the quantised gold target of the held-out clips (``agents.common.split_data``,
the split SFT and GRPO hold out for ``--seed``), perturbed the ways a student can miss it (frame
noise of N levels, movement shrunk towards the clip mean, smoothed in time, one frame late),
each scored by normalised gold (0 = random, 1 = band-follower).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def fit_table(runs: list[str]) -> list[str]:
    lines = ["| run | step | minutes | held-out loss | exact levels | level error | show std "
             "| teacher std | normalised gold |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for e in json.loads((Path(run) / "eval.json").read_text()):
            lines.append(
                f"| {Path(run).name} | {e['step']} | {e['minutes']:.1f} | {e['eval/sft_loss']:.3f} "
                f"| {e['eval/teacher_agreement']:.3f} | {e['eval/teacher_level_mae']:.3f} "
                f"| {e['eval/show_std']:.3f} | {e['eval/teacher_std']:.3f} "
                f"| {e['eval/normalized_gold']:.3f} |")
    return lines


def error_cost(data: str, *, seed: int = 1, eval_clips: int = 32, cache_dir: str | None = None,
               gold_version: str = "gold-v3", levels: int = 32) -> list[str]:
    from scipy.ndimage import uniform_filter1d

    from agents import sft
    from agents.common import split_data

    split = split_data(data, 5.0, eval_clips, 256, seed, cache_dir)
    held = np.stack([split.eval[int(i)] for i in split.eval_indices]).astype(np.float32)
    fr = split.processor.frame_rate
    idx = sft.gold_target_levels(held, num_devices=4, levels=levels, frame_rate=fr,
                                 version=gold_version)
    ho = sft.HeldOut(held, idx, num_devices=4, frame_rate=fr, gold_version=gold_version)
    top = levels - 1
    y = idx.float().numpy() / top
    rng = np.random.default_rng(0)

    def snap(a: np.ndarray) -> np.ndarray:
        return np.clip(np.round(a * top), 0, top) / top

    def norm(a: np.ndarray) -> float:
        return (ho._gold(snap(a)) - ho.random) / (ho.band - ho.random)

    mean = y.mean(-1, keepdims=True)
    rows = [("the target (on the level grid)", y)]
    rows += [(f"+ frame noise, {s} levels (std)", y + rng.normal(0, s / top, y.shape))
             for s in (1, 2, 3)]
    rows += [(f"movement shrunk to {k:.0%}", mean + k * (y - mean)) for k in (0.75, 0.5)]
    rows += [(f"smoothed over {w} frames", uniform_filter1d(y, w, axis=-1)) for w in (3, 5, 9)]
    rows += [("one frame late", np.concatenate([y[..., :1], y[..., :-1]], -1))]
    lines = [f"{len(held)} held-out clips of {data}, {gold_version}",
             "| show | normalised gold | std over time |", "|---|---|---|"]
    lines += [f"| {name} | {norm(a):.3f} | {snap(a).std(-1).mean():.3f} |" for name, a in rows]
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="agents/sft.py run directories (with eval.json)")
    ap.add_argument("--error-cost", action="store_true")
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--gold-version", default="gold-v3")
    a = ap.parse_args(argv)
    if a.runs:
        print("\n".join(fit_table(a.runs)))
    if a.error_cost:
        print("\n".join(error_cost(a.data, seed=a.seed, cache_dir=a.cache_dir,
                                   gold_version=a.gold_version)))


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    main()
