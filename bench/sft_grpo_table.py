"""One table from several ``agents/evaluate.py`` reports: gold (each version, normalised) beside the
independent metrics, for the band-follower and each policy (e.g. SFT only, SFT -> GRPO).

    python bench/sft_grpo_table.py sft-cnn=runs/eval-sft-cnn grpo-cnn=runs/eval-grpo-cnn ...

Each argument is ``LABEL=DIR`` (or just ``DIR``) where ``DIR/report.json`` was written by
``agents/evaluate.py``; the band-follower and random columns come from the first report (every
report scores both baselines on the same clips). Several seeds of one configuration: give them
the same label and the table shows mean ± spread (half the range).

``--margin``: each cell is the policy minus the band-follower *of the same report* (mean ±
spread over a label's reports), for seeds scored on different clips (``evaluate.py
--held-out --seed N`` holds out each seed's own files, so their band-followers differ). Flashes
are negated so that a positive margin is a win in every row.

    python bench/sft_grpo_table.py --margin s=runs/s1/ev-tune s=runs/s2/ev-tune s=runs/s3/ev-tune
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROWS = [
    ("normalised gold", "normalized_score"),
    ("normalised gold-v1", "norm:gold-v1"),
    ("normalised gold-v2", "norm:gold-v2"),
    ("normalised gold-v3", "norm:gold-v3"),
    ("normalised gold-v4", "norm:gold-v4"),
    ("normalised gold-v5", "norm:gold-v5"),
    ("mean brightness", "mean_brightness"),
    ("std over time", "std_time"),
    ("novelty corr", "novelty_corr"),
    ("beat-peak F (±50 ms)", "beat_f"),
    ("loudness corr", "loudness_corr"),
    ("band-energy corr", "band_corr"),
    ("flashes, worst 1 s", "flashes"),
    ("flash-safe clips", "flash_safe"),
]


def _fmt(values: list[float], *, signed: bool = False) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "—"
    mean = sum(vals) / len(vals)
    head = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    if len(vals) == 1:
        return head
    tail = " (" + " / ".join(f"{v:+.3f}" for v in vals) + ")" if signed else ""
    return f"{head} ± {(max(vals) - min(vals)) / 2:.3f}{tail}"


LOWER_IS_BETTER = {"flashes"}


def _header(names: list[str]) -> list[str]:
    return ["| measure | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]


def table(specs: list[str], *, margin: bool = False) -> str:
    columns: dict[str, list[dict]] = {}
    first = None
    for spec in specs:
        label, _, path = spec.rpartition("=")
        report = json.loads((Path(path) / "report.json").read_text())
        first = first or report
        columns.setdefault(label or Path(path).name, []).append(report)
    assert first is not None
    base = {"band-follower": first["baselines"]["band-follow"], "random": first["baselines"]["random"]}

    def value(rep: dict, key: str, baseline: str | None = None) -> float:
        if key == "normalized_score" or key.startswith("norm:"):
            if baseline:
                return {"band-follower": 1.0, "random": 0.0}[baseline]
            if key.startswith("norm:"):  # reports without every version leave the cell empty
                return rep.get("normalized_by_version", {}).get(key[5:], float("nan"))
            return rep[key]
        return rep["metrics"].get(key, float("nan"))

    if margin:
        def gap(rep: dict, key: str) -> float:
            if key == "normalized_score" or key.startswith("norm:"):
                return value(rep, key) - 1.0
            d = value(rep, key) - rep["baselines"]["band-follow"]["metrics"].get(key, float("nan"))
            return -d if key in LOWER_IS_BETTER else d

        lines = [f"policy minus its own report's band-follower (flashes negated: > 0 is a win), "
                 f"`{first['data']}`, gold `{first['gold_version']}`", "", *_header(list(columns))]
        for title, key in ROWS:
            if key in ("mean_brightness", "std_time"):
                continue  # not a win or a loss
            cells = [_fmt([gap(r, key) for r in reps], signed=True) for reps in columns.values()]
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    lines = [f"{first['clips']} clips of `{first['data']}`, gold `{first['gold_version']}`", "",
             *_header(list(base) + list(columns))]
    for title, key in ROWS:
        cells = [_fmt([value(b, key, n)]) for n, b in base.items()]
        cells += [_fmt([value(r, key) for r in reps]) for reps in columns.values()]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    argv = sys.argv[1:]
    margin = "--margin" in argv
    argv = [a for a in argv if a != "--margin"]
    if not argv:
        sys.exit(__doc__)
    print(table(argv, margin=margin))
