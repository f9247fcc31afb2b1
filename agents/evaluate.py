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
    reward_model: str = "model"
    """the proxy reported beside gold: `model` (the shipped reward model) or a saved model's path"""
    gold_version: str = "gold-v1"
    """gold scorer version to score with: gold-v1 ... gold-v5 (docs/GOLD.md)"""
    held_out: bool = False
    """real data: score only the files a training run with this `--seed` and `--clips` as its
    `--eval-clips` held out (agents/common.split_data), all their clips; choose recipes on
    these, not on music you report on"""


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
    refuse_non_finite(policy, policy_spec)
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
        "gold_version": evaluator.gold.config.version,
        # which reward model the proxy column is (None: a custom scorer without a config)
        "proxy_gold_version": getattr(getattr(evaluator.reward_model, "config", None),
                                      "gold_version", None),
        "clips": len(res.gold),
        "skipped_clips": len(evaluator.skipped),
        "skipped_reasons": _count_reasons(evaluator.skipped),
        "skipped": evaluator.skipped,
        "temperature": temperature,
        **summary,
        "win_rate_vs_band_follow": wr["win_rate"],
        "wins_ties_losses_vs_band_follow": [wr["wins"], wr["ties"], wr["losses"]],
        "normalized_score": normalized_score(summary["gold_mean"], float(rnd.gold.mean()), float(band.gold.mean())),
        "components": {k: float(v.mean()) for k, v in res.components.items()},
        "metrics": res.metrics_summary(),
        "normalized_by_version": normalized_by_version(evaluator, actions),
        "baselines": {
            name: {**b.summary(), "components": {k: float(v.mean()) for k, v in b.components.items()},
                   "metrics": b.metrics_summary()}
            for name, b in (("band-follow", band), ("random", rnd))
        },
        "per_clip": {"clip_id": evaluator.clip_ids, "gold": res.gold.tolist(), "proxy": res.proxy.tolist(),
                     **{f"metric_{k}": v.tolist() for k, v in res.metrics.items()}},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(_markdown(report))
    _plot(evaluator, actions, res.gold, band, out, plots)
    return report


def normalized_by_version(evaluator: Evaluator, actions: np.ndarray) -> dict[str, float]:
    """Normalised gold (0 = random, 1 = band-follower) of ``actions`` under every gold version,
    the baselines' actions drawn exactly as :meth:`Evaluator.baseline` draws them."""
    from cqtml_env import GoldScorer
    from cqtml_env.gold import GOLD_VERSIONS

    base = {}
    for name in ("band-follow", "random"):
        torch.manual_seed(0)
        pol = make_policy(name, evaluator.cqts.shape[1:], evaluator.num_devices,
                          frame_rate=evaluator.contract.frame_rate)
        base[name] = policy_actions(pol, evaluator.cqts, temperature=1.0)
    out = {}
    for version in GOLD_VERSIONS:
        gold = GoldScorer(num_devices=evaluator.num_devices, version=version,
                          frame_rate=evaluator.contract.frame_rate)

        def mean(acts: np.ndarray, gold=gold) -> float:
            return float(np.mean([gold.score(c, a) for c, a in zip(evaluator.cqts, acts)]))

        out[version] = normalized_score(mean(actions), mean(base["random"]),
                                        mean(base["band-follow"]))
    return out


class NonFinitePolicyError(ValueError):
    """A policy whose weights hold NaN or inf: its scores would be meaningless."""


def refuse_non_finite(policy, spec: str) -> None:
    """Raise :class:`NonFinitePolicyError` naming the tensors when any weight is NaN/inf."""
    state = policy.state_dict() if hasattr(policy, "state_dict") else {}
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise NonFinitePolicyError(
            f"policy {spec}: non-finite weights (NaN/inf) in {bad[:5]}"
            f"{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}; refusing to evaluate it"
        )


def _count_reasons(skipped: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in skipped:
        out[s["reason"]] = out.get(s["reason"], 0) + 1
    return out


def _markdown(r: dict) -> str:
    b, rnd = r["baselines"]["band-follow"], r["baselines"]["random"]
    w, t, lo = r["wins_ties_losses_vs_band_follow"]
    lines = [
        f"# Evaluation of `{r['policy']}`",
        "",
        f"{r['clips']} clips of `{r['data'] or 'held-out data'}`, temperature {r['temperature']}, "
        f"gold scorer `{r.get('gold_version', 'gold-v1')}`"
        + (f"; proxy: the reward model trained on `{r['proxy_gold_version']}`."
           if r.get("proxy_gold_version") else "."),
        "",
        "| policy | gold (mean ± 95% CI) | proxy |",
        "|---|---|---|",
        f"| **this policy** | {r['gold_mean']:.4f} ± {r['gold_ci95']:.4f} | {r['proxy_mean']:.4f} |",
        f"| band-follower | {b['gold_mean']:.4f} ± {b['gold_ci95']:.4f} | {b['proxy_mean']:.4f} |",
        f"| random | {rnd['gold_mean']:.4f} ± {rnd['gold_ci95']:.4f} | {rnd['proxy_mean']:.4f} |",
        "",
        *_skipped_lines(r),
        f"- normalised score (0 = random, 1 = band-follower): **{r['normalized_score']:.3f}**",
        *(["- normalised score by gold version: " + ", ".join(
            f"{v} {x:.3f}" for v, x in r["normalized_by_version"].items())]
          if r.get("normalized_by_version") else []),
        f"- win rate vs band-follower: **{r['win_rate_vs_band_follow']:.3f}** ({w} wins, {t} ties, {lo} losses)",
        "",
        "## Gold components (mean)",
        "",
        "| component | this policy | band-follower | random |",
        "|---|---|---|---|",
    ]
    for k, v in r["components"].items():
        lines.append(f"| {k} | {v:.4f} | {b['components'].get(k, float('nan')):.4f} | {rnd['components'].get(k, float('nan')):.4f} |")
    if r.get("metrics"):
        lines += _metrics_table(r)
    lines += ["", "![activations](activations.png)", ""]
    return "\n".join(lines)


def _skipped_lines(r: dict) -> list[str]:
    """report.md: how many clips were left out (bad files found at decode time), and why."""
    n = r.get("skipped_clips", 0)
    if not n:
        return ["- skipped clips: 0", ""]
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(r["skipped_reasons"].items()))
    lines = [f"- skipped clips: **{n}** (never scored; {reasons})"]
    lines += [f"  - clip {s['clip']} `{s['path']}`: {s['reason']}" for s in r["skipped"][:20]]
    if n > 20:
        lines.append(f"  - ... {n - 20} more in report.json")
    return [*lines, ""]


METRIC_ROWS = [  # (key, label) of the independent metrics in report.md
    ("mean_brightness", "mean brightness"),
    ("std_time", "std over time (per device)"),
    ("novelty_corr", "novelty correlation (rise in brightness vs onset strength)"),
    ("beat_f", "beat-peak F-measure (±50 ms)"),
    ("beat_precision", "  beat-peak precision"),
    ("beat_recall", "  beat-peak recall"),
    ("loudness_corr", "loudness correlation"),
    ("band_corr", "band-energy correlation (mean over devices)"),
    ("flashes", "flashes in the worst 1 s (mean over clips)"),
    ("flash_safe", "flash-safe clips (<= 3 per s)"),
    ("ssm_corr", "self-similarity correlation (songs only)"),
]


def _metrics_table(r: dict) -> list[str]:
    """Independent metrics (from the audio, not the CQT) next to normalised gold."""
    b, rnd = r["baselines"]["band-follow"]["metrics"], r["baselines"]["random"]["metrics"]
    m = r["metrics"]
    lines = ["", "## Independent metrics (from the audio: librosa loudness, onsets, beats)", "",
             "| measure | this policy | band-follower | random |", "|---|---|---|---|",
             f"| gold, normalised | {r['normalized_score']:.3f} | 1.000 | 0.000 |"]
    for key, label in METRIC_ROWS:
        vals = [d.get(key, float("nan")) for d in (m, b, rnd)]
        if all(v != v for v in vals):  # all NaN (e.g. SSM on short clips)
            continue
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return lines


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
        for k, (lo, hi) in enumerate(evaluator.contract.bands):
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


def clip_indices(split, *, data: str, clips: int, seed: int, held_out: bool) -> np.ndarray:
    """The clips to score: synthetic data and ``held_out`` the split's held-out clips; otherwise
    (a fixed model on real data) ``clips`` of all of them, by a seeded permutation."""
    synthetic = data == "synthetic" or data.startswith("synthetic:")
    if synthetic or held_out:
        return np.asarray(split.eval_indices)
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(len(split.eval))[:clips])


def main(args: Args) -> dict:
    split = split_data(args.data, args.max_duration, eval_clips=args.clips, seed=args.seed, cache_dir=args.cache_dir)
    ds = split.eval
    idx = clip_indices(split, data=args.data, clips=args.clips, seed=args.seed,
                       held_out=args.held_out)
    evaluator = Evaluator(ds, idx, reward=args.reward_model, num_devices=args.num_devices,
                          gold_version=args.gold_version)
    report = write_report(args.policy, evaluator, args.out, args.temperature, args.plots, args.data)
    print(_markdown(report))
    return report


def cli(argv: list[str] | None = None) -> int:
    """Command line; a non-finite policy is refused with a message and exit code 2."""
    import sys

    import tyro

    try:
        main(tyro.cli(Args, args=argv))
    except NonFinitePolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(cli())
