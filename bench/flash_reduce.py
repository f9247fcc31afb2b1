"""What making a show flash-safe costs, by the independent metrics: a show as it is, through the
offline ``reduce_flashes`` (smallest swings first) and through the causal ``FlashLimiter``.

    python bench/flash_reduce.py --data folder:runs/.music/check --show gold-v5 \
        --show runs/sft-default/checkpoints/final --show band-follow --cache-dir runs/.feature-cache

``--show`` (repeatable): ``gold-vN`` (that gold version's target, quantised to the contract's
level grid, as ``agents/sft.py --teacher gold-target`` imitates it) or a policy spec for
``agents.common.make_policy`` (a checkpoint directory, ``band-follow``, ...; its greedy show).
Clips: ``N`` of the data set by the seeded pick of ``agents/evaluate.py``. Each row is scored by
agents/metrics.py (from the clips' audio) and by raw gold (``--gold-version``); ``change`` is the
mean absolute change of the levels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLUMNS = ("novelty_corr", "beat_f", "loudness_corr", "band_corr", "flashes", "flash_safe")


def shows(spec: str, cqts: np.ndarray, frame_rate: float) -> np.ndarray:
    """``[N, D, T]`` levels of one ``--show`` spec on ``cqts``."""
    from agents.common import make_policy, policy_actions
    from cqtml_env import GoldScorer
    from cqtml_env.contract import quantise

    if spec.startswith("gold-v"):
        gold = GoldScorer(version=spec, frame_rate=frame_rate)
        return np.stack([quantise(gold.features(c).target) for c in cqts]).astype(np.float32)
    policy = make_policy(spec, cqts.shape[1:], 4, frame_rate=frame_rate, device="cpu")
    if hasattr(policy, "eval"):
        policy.eval()
    return policy_actions(policy, cqts, temperature=0.0)


def run(data: str, specs: list[str], *, clips: int = 60, seed: int = 0,
        gold_version: str = "gold-v5", cache_dir: str | None = None) -> list[dict]:
    from agents.common import split_data
    from agents.evaluate import clip_indices
    from agents.metrics import audio_features, metrics_batch, summarise
    from cqtml_env import GoldScorer
    from cqtml_env.show import limit_flashes, reduce_flashes

    split = split_data(data, 5.0, eval_clips=clips, seed=seed, cache_dir=cache_dir)
    ds = split.eval
    idx = clip_indices(split, data=data, clips=clips, seed=seed, held_out=False)
    cqts = np.stack([np.asarray(ds[int(i)]) for i in idx]).astype(np.float32)
    fr = ds.processor.frame_rate
    feats = [audio_features(ds.get_audio(int(i)), processor=ds.processor, num_devices=4)
             for i in idx]
    gold = GoldScorer(version=gold_version, frame_rate=fr)
    rows = []
    for spec in specs:
        base = shows(spec, cqts, fr)
        for how, levels in (("as it is", base),
                            ("reduce_flashes", np.stack([reduce_flashes(a, frame_rate=fr)
                                                         for a in base])),
                            ("FlashLimiter", np.stack([limit_flashes(a, frame_rate=fr)
                                                       for a in base]))):
            m = summarise(metrics_batch(levels.astype(np.float32), feats))
            rows.append({"show": spec, "how": how, **{c: m[c] for c in COLUMNS},
                         "gold": float(np.mean([gold.score(c, a) for c, a in zip(cqts, levels)])),
                         "change": float(np.abs(levels - base).mean())})
    return rows


def markdown(rows: list[dict], data: str, gold_version: str) -> str:
    lines = [f"`{data}`, {gold_version} raw", "",
             "| show | how | " + " | ".join(COLUMNS) + f" | {gold_version} | change |",
             "|---|---|" + "---|" * (len(COLUMNS) + 2)]
    for r in rows:
        lines.append(f"| {r['show']} | {r['how']} | " + " | ".join(f"{r[c]:.3f}" for c in COLUMNS)
                     + f" | {r['gold']:.4f} | {r['change']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a data spec, e.g. folder:runs/.music/check")
    ap.add_argument("--show", action="append", required=True,
                    help="gold-vN (its target) or a policy spec / checkpoint; repeatable")
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gold-version", default="gold-v5")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    rows = run(args.data, args.show, clips=args.clips, seed=args.seed,
               gold_version=args.gold_version, cache_dir=args.cache_dir)
    print(markdown(rows, args.data, args.gold_version))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
