"""Which GRPO knobs matter: short CNN runs at equal environment steps, one knob changed each.

    python agents/sweep_knobs.py --iterations 300 --out runs/sweep

Every run sees iterations x 256 scored actions (B x G = 256) and is evaluated on the same 32
held-out clips. Prints (and writes ``<out>/knobs.md``) a table of held-out gold (greedy) at
the end and its best value, normalised against random (0) and the band-follower (1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from agents import grpo
from agents.common import normalized_score
from agents.compare import read_scalars

VARIANTS: dict[str, dict] = {
    "default (G=32, B=8, group std, beta=0, T=1, proxy reward)": {},
    "G=8, B=32": {"num_generations": 8, "clips_per_iteration": 32},
    "G=64, B=4": {"num_generations": 64, "clips_per_iteration": 4},
    "scale_rewards=batch": {"scale_rewards": "batch"},
    "scale_rewards=none (Dr. GRPO)": {"scale_rewards": "none"},
    "beta=0.04 (KL to reference)": {"beta": 0.04},
    "temperature=0.7": {"temperature": 0.7},
    "temperature=1.5": {"temperature": 1.5},
    "reward=gold (no proxy)": {"reward": "gold"},
    "update_epochs=2 (mu=2)": {"update_epochs": 2},
}


@dataclass
class Args:
    iterations: int = 300
    """iterations per run (x 256 env steps)"""
    out: str = "runs/sweep"
    """where runs and knobs.md go"""
    only: list[str] = field(default_factory=list)
    """run only variants whose name contains one of these strings"""
    seed: int = 1
    """seed shared by all runs"""


def main(args: Args) -> str:
    out = Path(args.out)
    rows = []
    for name, over in VARIANTS.items():
        if args.only and not any(s in name for s in args.only):
            continue
        run_dir = out / name.split(" ")[0].replace("=", "").replace(",", "")
        kw = dict(iterations=args.iterations, eval_every=50, checkpoint_every=0, image_every=0,
                  run_dir=str(run_dir), progress=False, final_report=False, seed=args.seed, **over)
        metrics = grpo.train(grpo.Args(**kw))
        curve = read_scalars(run_dir, ("eval/gold_greedy", "charts/SPS"))["eval/gold_greedy"]
        band, rnd = metrics["eval/gold_band_follow"], metrics["eval/gold_random"]
        best = max(v for _, v in curve)
        rows.append((name, curve[-1][1], normalized_score(curve[-1][1], rnd, band),
                     normalized_score(best, rnd, band), metrics["charts/SPS"]))
        (out / "knobs.json").write_text(json.dumps(rows, indent=1))
    lines = ["| variant | held-out gold (end) | normalised (end) | normalised (best) | env steps/s |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {g:.3f} | {a:.2f} | {b:.2f} | {s:.0f} |" for n, g, a, b, s in rows]
    table = "\n".join(lines)
    (out / "knobs.md").write_text(table + "\n")
    print(table)
    return table


if __name__ == "__main__":
    import tyro

    main(tyro.cli(Args))
