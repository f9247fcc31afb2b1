"""Does the gold scorer rank light shows as the independent metrics (and common sense) do?

    python bench/gold_ranking.py --data folder:/tmp/rm_tune --clips 40 [--policy runs/x/checkpoints/best]

On ``N`` clips of a data set (the same seeded pick as ``agents/evaluate.py``) it builds named
shows per clip: one draw of every ``CandidateFactory`` source, the band-follower policy, the
random policy, flat/bright shows (constant 0.75; the follower squeezed into 0.6..0.85; the gold
target plus 0.25; the target compressed into 0.5..0.9), the gold-v2 ... gold-v5
targets, a punchy show (dark, flashing on the kicks: onset pulses) and, with ``--policy``, a
trained checkpoint. Each show's mean gold-v1 ... gold-v5 and independent metrics
(agents/metrics.py, from the audio) are tabulated, and the rankings of the shows compared: Spearman and Kendall rank correlation between each gold
version and each metric (flashes: fewer is better), and with the mean of the metrics' ranks.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

RANK_METRICS = ("novelty_corr", "beat_f", "loudness_corr", "band_corr", "flash_safe", "std_time")


def shows_for_clip(cqt: np.ndarray, rng: np.random.Generator, policies: dict) -> dict[str, np.ndarray]:
    """Named shows ``[D, T]`` for one clip."""
    import torch

    from cqtml_env.preferences.candidates import (
        CandidateFactory,
        band_follower,
        smooth_attack_decay,
    )

    fac = CandidateFactory(cqt)
    out = {}
    for name in fac.source_names:
        out[f"cand:{name}"] = np.clip(fac.generators[name][1](rng), 0, 1).astype(np.float32)
    follow = band_follower(cqt, fac.num_devices)
    ideal = fac.ideal
    out["flat_bright_0.75"] = np.full_like(ideal, 0.75)
    out["bright_small_dips"] = 0.6 + 0.25 * follow
    out["target_plus_0.25"] = np.clip(ideal + 0.25, 0, 1)
    out["target_compressed"] = 0.5 + 0.4 * ideal
    # punchy: dark baseline, a full flash on every band onset decaying over ~150 ms, plus a
    # dim bed that follows the band
    f = fac.features
    punch = np.zeros_like(ideal)
    for d in range(fac.num_devices):
        imp = np.zeros(ideal.shape[1], np.float32)
        imp[f.onset_frames[d]] = 1.0
        punch[d] = smooth_attack_decay(imp[None], 1.0, 0.25)[0]
    out["punchy_onsets"] = np.clip(np.maximum(punch, 0.3 * follow), 0, 1)
    from cqtml_env import GoldScorer

    out["target_v2"] = GoldScorer(version="gold-v2").features(cqt).target
    out["target_v3"] = GoldScorer(version="gold-v3").features(cqt).target
    out["target_v4"] = GoldScorer(version="gold-v4").features(cqt).target
    out["target_v5"] = GoldScorer(version="gold-v5").features(cqt).target
    with torch.no_grad():
        for name, pol in policies.items():
            acts = pol.generate_actions(torch.as_tensor(cqt[None]), num_actions_per_state=1,
                                        temperature=1.0 if name == "random" else 0.0)
            out[name] = acts[0][0].float().numpy()
    return {k: np.clip(v, 0, 1).astype(np.float32) for k, v in out.items()}


def rank_agreement(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy.stats import kendalltau, spearmanr

    return float(spearmanr(x, y).statistic), float(kendalltau(x, y).statistic)


def make_scorer(spec: str):
    """``gold-v2`` or ``gold-v2:key=value,key=value`` (config overrides, for tuning)."""
    from cqtml_env import GoldScorer

    version, _, rest = spec.partition(":")
    kw = {}
    for item in filter(None, rest.split(";")):
        k, _, v = item.partition("=")
        kw[k] = json.loads(v)
    return GoldScorer(version=version, **kw)


def run(data: str, clips: int, seed: int, policy: str | None, max_duration: float = 5.0,
        cache_dir: str | None = None, versions: tuple[str, ...] = ("gold-v1", "gold-v2", "gold-v3", "gold-v4", "gold-v5")) -> dict:
    import torch

    import cqtml_policy as P
    from agents.metrics import audio_features, metrics_batch
    from cqtml_env import CQTProcessor, make_dataset

    proc = CQTProcessor(max_duration=max_duration)
    ds = make_dataset(data, processor=proc, **({"cache": cache_dir} if cache_dir else {}))
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(ds))[:clips])
    policies = {"band-follow": P.BandFollowPolicy(num_devices=4),
                "random": P.RandomPolicy(num_devices=4)}
    if policy:
        pol = P.load_policy(policy, device="cpu")
        pol.eval()
        policies["trained_policy"] = pol
    scorers = {v: make_scorer(v) for v in versions}
    torch.manual_seed(seed)
    per: dict[str, dict[str, list[float]]] = {}
    t0 = time.perf_counter()
    for i in idx:
        cqt = ds.get_cqt(int(i))
        feats = audio_features(ds.get_audio(int(i)), processor=proc, num_devices=4)
        shows = shows_for_clip(cqt, np.random.default_rng([seed, int(i)]), policies)
        names = list(shows)
        acts = np.stack([shows[k] for k in names])
        scores = {v: s.score(cqt, acts) for v, s in scorers.items()}
        m = metrics_batch(acts, [feats] * len(names))
        for j, name in enumerate(names):
            row = per.setdefault(name, {})
            for v, s in scores.items():
                row.setdefault(v, []).append(float(s[j]))
            for k in RANK_METRICS + ("mean_brightness", "flashes"):
                row.setdefault(k, []).append(float(m[k][j]))
    names = sorted(per)
    table = {n: {k: float(np.mean(v)) for k, v in per[n].items()} for n in names}
    agreement: dict[str, dict[str, list[float]]] = {}
    ranks = []
    from scipy.stats import rankdata

    for k in RANK_METRICS:
        col = np.array([table[n][k] for n in names])
        ranks.append(rankdata(col))
    consensus = np.mean(ranks, axis=0)
    for v in scorers:
        g = np.array([table[n][v] for n in names])
        agreement[v] = {k: list(rank_agreement(g, np.array([table[n][k] for n in names])))
                        for k in RANK_METRICS}
        agreement[v]["mean_metric_rank"] = list(rank_agreement(g, consensus))
    return {"data": data, "clips": int(len(idx)), "seed": seed, "table": table,
            "consensus_rank": dict(zip(names, consensus.tolist())), "agreement": agreement,
            "seconds": round(time.perf_counter() - t0, 1)}


def markdown(res: dict) -> str:
    t = res["table"]
    names = sorted(t, key=lambda n: -t[n]["gold-v1"])
    vs = list(res["agreement"])
    cols = vs + ["mean_brightness", "std_time", "novelty_corr", "beat_f",
            "loudness_corr", "band_corr", "flashes", "flash_safe"]
    v1r = {n: r + 1 for r, n in enumerate(names)}
    v2 = vs[-1]
    v2r = {n: r + 1 for r, n in enumerate(sorted(t, key=lambda n: -t[n][v2]))}
    cr = {n: r + 1 for r, n in enumerate(sorted(t, key=lambda n: -res["consensus_rank"][n]))}
    lines = [f"{res['clips']} clips of `{res['data']}`, seed {res['seed']}", "",
             f"| show | rank v1 | rank {v2} | rank metrics | " + " | ".join(cols) + " |",
             "|---|---|---|---|" + "---|" * len(cols)]
    for n in names:
        lines.append(f"| {n} | {v1r[n]} | {v2r[n]} | {cr[n]} | "
                     + " | ".join(f"{t[n][c]:.3f}" for c in cols) + " |")
    lines += ["", "| rank agreement (Spearman / Kendall) | " + " | ".join(
        list(RANK_METRICS) + ["mean metric rank"]) + " |", "|---|" + "---|" * (len(RANK_METRICS) + 1)]
    for v, ag in res["agreement"].items():
        lines.append(f"| {v} | " + " | ".join(f"{a[0]:.2f} / {a[1]:.2f}" for a in ag.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="folder:/tmp/rm_tune")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy", default=None, help="a trained checkpoint directory to include")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--versions", default="gold-v1,gold-v2,gold-v3,gold-v4,gold-v5",
                    help="gold versions to compare, comma-separated; 'gold-v2:key=json;key=json' "
                         "overrides config fields")
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args(argv)
    res = run(args.data, args.clips, args.seed, args.policy, cache_dir=args.cache_dir,
              versions=tuple(args.versions.split(",")))
    print(markdown(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
