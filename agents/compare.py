"""Plot held-out gold learning curves of several runs against environment steps.

    python agents/compare.py --runs runs/grpo runs/ppo --labels GRPO PPO --out docs/img/grpo_vs_ppo.png

Reads ``eval/gold_greedy`` (and the baselines ``eval/gold_band_follow``/``eval/gold_random``)
from each run's TensorBoard events, recursively, so GRPO runs and SB3 runs (which log into a
sub-folder) plot on one axis: both log env steps (scored actions) as the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Args:
    runs: list[str] = field(default_factory=list)
    """run directories (TensorBoard event files anywhere below)"""
    labels: list[str] = field(default_factory=list)
    """legend labels (default: directory names)"""
    out: str = "docs/img/grpo_vs_ppo.png"
    """output PNG"""
    tag: str = "eval/gold_greedy"
    """scalar to plot"""


def read_scalars(run_dir: str | Path, tags: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    for ev in sorted(Path(run_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(ev), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in tags:
            if tag in acc.Tags()["scalars"]:
                out.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return {k: sorted(v.items()) for k, v in out.items()}


def main(args: Args) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = args.labels or [Path(r).name for r in args.runs]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    baselines: dict[str, float] = {}
    for run, label in zip(args.runs, labels):
        s = read_scalars(run, (args.tag, "eval/gold_band_follow", "eval/gold_random"))
        if args.tag not in s:
            raise ValueError(f"{run}: no {args.tag!r} scalars found")
        steps, vals = zip(*s[args.tag])
        ax.plot(steps, vals, marker="o", ms=3, label=label)
        for name in ("eval/gold_band_follow", "eval/gold_random"):
            if name in s:
                baselines[name] = s[name][-1][1]
    styles = {"eval/gold_band_follow": ("band-follower", "k", "--"), "eval/gold_random": ("random", "grey", ":")}
    for name, value in baselines.items():
        text, colour, ls = styles[name]
        ax.axhline(value, color=colour, ls=ls, lw=1, label=f"{text} ({value:.3f})")
    ax.set_xlabel("environment steps (scored light shows)")
    ax.set_ylabel("held-out gold score (greedy policy)")
    ax.set_title("CQTML-v0, synthetic music, held-out clips")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


if __name__ == "__main__":
    import tyro

    print(main(tyro.cli(Args)))
