"""Evaluate any checkpoint or baseline on any data source, against the gold scorer.

    python agents/evaluate.py --policy runs/x/checkpoints/best --data synthetic --clips 32 --out eval/

Writes ``report.json`` (gold_mean, gold_ci95, proxy_mean, win_rate_vs_band_follow,
normalized_score, per-component means, baselines), ``report.md`` and PNG plots of the
policy's activations over a few clips' CQTs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agents.common import (
    Evaluator,
    make_policy,
    normalized_score,
    policy_actions,
    split_data,
    win_rate,
)


@dataclass
class Args:
    policy: str = "band-follow"
    """a checkpoint directory, or `band-follow` / `random`"""
    data: str = "synthetic"
    """synthetic | folder:PATH | fma:PATH | musicnet:PATH (synthetic uses the held-out generator seed)"""
    clips: int = 32
    """number of clips to evaluate on"""
    out: str = "eval"
    """output directory for report.json, report.md and plots"""
    max_duration: float = 5.0
    """clip length in seconds"""
    num_devices: int = 4
    """number of devices (must match the checkpoint)"""
    temperature: float = 0.0
    """0 = greedy actions; > 0 samples"""
    plots: int = 3
    """how many clips to plot"""
    seed: int = 0
    """seed for sampling and clip selection"""
    cache_dir: str | None = None
    """feature cache for real data sets"""


def write_report(
    policy_spec: str,
    evaluator: Evaluator,
    out: str | Path,
    temperature: float = 0.0,
    plots: int = 3,
    data: str = "",
) -> dict:
    """Score ``policy_spec`` on the evaluator's clips beside both baselines and write the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    policy = make_policy(policy_spec, evaluator.cqts.shape[1:], evaluator.num_devices, device="cpu")
    if hasattr(policy, "eval"):
        policy.eval()
    torch.manual_seed(0)
    actions = policy_actions(policy, evaluator.cqts, temperature=temperature)
    res = evaluator.score_actions(actions)
    band = evaluator.baseline("band-follow")
    rnd = evaluator.baseline("random")
    wr = win_rate(res.gold, band.gold)
    summary = res.summary()
    report = {
        "policy": policy_spec,
        "data": data,
        "clips": len(res.gold),
        "temperature": temperature,
        **summary,
        "win_rate_vs_band_follow": wr["win_rate"],
        "wins_ties_losses_vs_band_follow": [wr["wins"], wr["ties"], wr["losses"]],
        "normalized_score": normalized_score(summary["gold_mean"], float(rnd.gold.mean()), float(band.gold.mean())),
        "components": {k: float(v.mean()) for k, v in res.components.items()},
        "baselines": {
            name: {**b.summary(), "components": {k: float(v.mean()) for k, v in b.components.items()}}
            for name, b in (("band-follow", band), ("random", rnd))
        },
        "per_clip": {"clip_id": evaluator.clip_ids, "gold": res.gold.tolist(), "proxy": res.proxy.tolist()},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(_markdown(report))
    _plot(evaluator, actions, res.gold, band, out, plots)
    return report


def _markdown(r: dict) -> str:
    b, rnd = r["baselines"]["band-follow"], r["baselines"]["random"]
    w, t, lo = r["wins_ties_losses_vs_band_follow"]
    lines = [
        f"# Evaluation of `{r['policy']}`",
        "",
        f"{r['clips']} clips of `{r['data'] or 'held-out data'}`, temperature {r['temperature']}.",
        "",
        "| policy | gold (mean ± 95% CI) | proxy |",
        "|---|---|---|",
        f"| **this policy** | {r['gold_mean']:.4f} ± {r['gold_ci95']:.4f} | {r['proxy_mean']:.4f} |",
        f"| band-follower | {b['gold_mean']:.4f} ± {b['gold_ci95']:.4f} | {b['proxy_mean']:.4f} |",
        f"| random | {rnd['gold_mean']:.4f} ± {rnd['gold_ci95']:.4f} | {rnd['proxy_mean']:.4f} |",
        "",
        f"- normalised score (0 = random, 1 = band-follower): **{r['normalized_score']:.3f}**",
        f"- win rate vs band-follower: **{r['win_rate_vs_band_follow']:.3f}** ({w} wins, {t} ties, {lo} losses)",
        "",
        "## Gold components (mean)",
        "",
        "| component | this policy | band-follower | random |",
        "|---|---|---|---|",
    ]
    for k, v in r["components"].items():
        lines.append(f"| {k} | {v:.4f} | {b['components'].get(k, float('nan')):.4f} | {rnd['components'].get(k, float('nan')):.4f} |")
    lines += ["", "![activations](activations.png)", ""]
    return "\n".join(lines)


def _plot(evaluator: Evaluator, actions: np.ndarray, gold: np.ndarray, band, out: Path, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(actions))
    if n == 0:
        return
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.6 * n), squeeze=False)
    band_actions = policy_actions(make_policy("band-follow", evaluator.cqts.shape[1:], evaluator.num_devices),
                                  evaluator.cqts[:n])
    for i in range(n):
        ax = axes[i, 0]
        cqt = evaluator.cqts[i].mean(0)
        f_bins, t = cqt.shape
        ax.imshow(cqt, origin="lower", aspect="auto", cmap="magma", extent=(0, t, 0, f_bins), alpha=0.9)
        d = actions.shape[1]
        for k in range(d):
            lo, hi = k * f_bins / d, (k + 1) * f_bins / d
            ax.plot(np.arange(t), lo + actions[i, k] * (hi - lo), color="cyan", lw=1.2,
                    label="policy" if k == 0 else None)
            ax.plot(np.arange(t), lo + band_actions[i, k] * (hi - lo), color="white", lw=0.8, ls="--",
                    alpha=0.7, label="band-follower" if k == 0 else None)
            ax.axhline(lo, color="grey", lw=0.5)
        ax.set_title(f"clip {evaluator.clip_ids[i]} - gold: policy {gold[i]:.3f}, "
                     f"band-follower {band.gold[i]:.3f}", fontsize=9)
        ax.set_ylabel("CQT bin / device")
        ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(out / "activations.png", dpi=90)
    plt.close(fig)


def main(args: Args) -> dict:
    split = split_data(args.data, args.max_duration, eval_clips=args.clips, seed=args.seed, cache_dir=args.cache_dir)
    ds, idx = split.eval, split.eval_indices
    if args.data not in ("synthetic",) and not args.data.startswith("synthetic:"):
        # evaluating a fixed model: every clip of a real data set may be used
        rng = np.random.default_rng(args.seed)
        idx = np.sort(rng.permutation(len(ds))[: args.clips])
    evaluator = Evaluator(ds, idx, num_devices=args.num_devices)
    report = write_report(args.policy, evaluator, args.out, args.temperature, args.plots, args.data)
    print(_markdown(report))
    return report


if __name__ == "__main__":
    import tyro

    main(tyro.cli(Args))
