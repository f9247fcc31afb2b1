"""What a gold version's *target* does on real music, by the independent metrics, and how well
the scorer hears the beat: the bench behind docs/GOLD.md's gold-v5 tables.

    python bench/gold_targets.py --data folder:TUNE --clips 120 --targets gold-v4,gold-v5 \
        "gold-v4:beat_flux_lag=2;beat_punch_level=0.1" --cache-dir runs/.feature-cache

On ``N`` clips (the seeded pick of ``agents/evaluate.py`` / ``bench/gold_ranking.py``) each
target spec (``gold-vN`` or ``gold-vN:key=json;key=json``, config overrides as in
gold_ranking) is quantised to the contract's level grid, as a policy's actions are, and scored
by agents/metrics.py beside the band-follower. Two beat diagnostics per spec:
- the scorer's own beats (``ClipFeatures.beat_frames``) against the beats librosa tracks on the
  audio: recall and precision within the metrics' ±50 ms;
- at every audio beat, the target's rig brightness: a peak of the metric's prominence or more
  within ±50 ms ("hit"), only a smaller peak ("low"), or no peak ("none").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

COLUMNS = ("novelty_corr", "beat_f", "beat_recall", "loudness_corr", "band_corr", "flashes",
           "flash_safe", "mean_brightness")


def peak_categories(rig: np.ndarray, beats: np.ndarray, frame_rate: float) -> dict[str, int]:
    """At each beat time: does ``rig [T]`` have a peak of ``PEAK_PROMINENCE`` within tolerance?"""
    from scipy.signal import find_peaks

    from agents.metrics import BEAT_TOLERANCE_S, PEAK_PROMINENCE

    b = np.concatenate([[-1.0], rig, [-1.0]])  # as agents.metrics.light_peaks pads
    peaks, props = find_peaks(b, prominence=0.0)
    times = (peaks - 1) / frame_rate
    out = {"hit": 0, "low": 0, "none": 0}
    for t in beats:
        near = np.abs(times - t) <= BEAT_TOLERANCE_S
        if not near.any():
            out["none"] += 1
        else:
            out["hit" if props["prominences"][near].max() >= PEAK_PROMINENCE else "low"] += 1
    return out


def run(data: str, clips: int, seed: int, specs: list[str], cache_dir: str | None = None) -> dict:
    import torch
    from gold_ranking import make_scorer

    import cqtml_policy as P
    from agents.metrics import (
        BEAT_TOLERANCE_S,
        audio_features,
        match_events,
        metrics_batch,
        summarise,
    )
    from cqtml_env import CQTProcessor, make_dataset
    from cqtml_env.contract import quantise

    proc = CQTProcessor(max_duration=5.0)
    ds = make_dataset(data, processor=proc, **({"cache": cache_dir} if cache_dir else {}))
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:clips])
    cqts = [np.asarray(ds.get_cqt(int(i))) for i in idx]
    feats = [audio_features(ds.get_audio(int(i)), processor=proc, num_devices=4) for i in idx]
    fr = proc.frame_rate
    follower = P.BandFollowPolicy(num_devices=4, frame_rate=fr)
    with torch.no_grad():
        bf = np.stack([follower.generate_actions(torch.as_tensor(c[None]), 1, temperature=0.0)[0][0]
                       .float().numpy() for c in cqts])
    rows = {"band-follower": summarise(metrics_batch(bf, feats))}
    beats: dict[str, dict] = {}
    for spec in specs:
        scorer = make_scorer(spec)
        cf = [scorer.features(c) for c in cqts]
        targets = np.stack([quantise(f.target) for f in cf]).astype(np.float32)
        rows[spec] = summarise(metrics_batch(targets, feats))
        hits = n_audio = n_gold = 0
        cats = {"hit": 0, "low": 0, "none": 0}
        for f, a, t in zip(cf, feats, targets):
            gold_beats = f.beat_frames / fr
            hits += match_events(a.beats, gold_beats, BEAT_TOLERANCE_S)
            n_audio, n_gold = n_audio + len(a.beats), n_gold + len(gold_beats)
            for k, v in peak_categories(t.mean(axis=0), a.beats, fr).items():
                cats[k] += v
        total = max(1, sum(cats.values()))
        beats[spec] = {"beat_recall": hits / max(1, n_audio), "beat_precision": hits / max(1, n_gold),
                       **{f"peak_{k}": v / total for k, v in cats.items()}}
    return {"data": data, "clips": len(idx), "seed": seed, "metrics": rows, "beats": beats}


def markdown(res: dict) -> str:
    lines = [f"{res['clips']} clips of `{res['data']}`, seed {res['seed']}; targets quantised", "",
             "| show | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, m in res["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.3f}" for c in COLUMNS) + " |")
    lines += ["", "| target | scorer's beats: recall of the audio's | precision | audio beats with a "
              "target peak >= prominence | a smaller peak | no peak |", "|---|---|---|---|---|---|"]
    for name, b in res["beats"].items():
        lines.append(f"| {name} | {b['beat_recall']:.3f} | {b['beat_precision']:.3f} | "
                     f"{b['peak_hit']:.3f} | {b['peak_low']:.3f} | {b['peak_none']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a data spec, e.g. folder:runs/.music/tune")
    ap.add_argument("--clips", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", default="gold-v4,gold-v5",
                    help="comma-separated specs; more specs (with ';' overrides) as arguments")
    ap.add_argument("extra", nargs="*", help="more target specs")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    specs = [s for s in args.targets.split(",") if s] + list(args.extra)
    print(markdown(run(args.data, args.clips, args.seed, specs, args.cache_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
