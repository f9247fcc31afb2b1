"""One table from several ``agents/evaluate.py`` reports: gold (v1/v2, normalised) beside the
independent metrics, for the band-follower and each policy (e.g. SFT only, SFT -> GRPO).

    python bench/sft_grpo_table.py sft-cnn=runs/eval-sft-cnn grpo-cnn=runs/eval-grpo-cnn ...

Each argument is ``LABEL=DIR`` (or just ``DIR``) where ``DIR/report.json`` was written by
``agents/evaluate.py``; the band-follower and random columns come from the first report (every
report scores both baselines on the same clips). Several seeds of one configuration: give them
the same label and the table shows mean ± spread (half the range).
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
    ("mean brightness", "mean_brightness"),
    ("std over time", "std_time"),
    ("novelty corr", "novelty_corr"),
    ("beat-peak F (±50 ms)", "beat_f"),
    ("loudness corr", "loudness_corr"),
    ("band-energy corr", "band_corr"),
    ("flashes, worst 1 s", "flashes"),
    ("flash-safe clips", "flash_safe"),
]


def _fmt(values: list[float]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "—"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {(max(vals) - min(vals)) / 2:.3f}"


def table(specs: list[str]) -> str:
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

    names = list(base) + list(columns)
    lines = [
        f"{first['clips']} clips of `{first['data']}`, gold `{first['gold_version']}`",
        "",
        "| measure | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for title, key in ROWS:
        cells = [_fmt([value(b, key, n)]) for n, b in base.items()]
        cells += [_fmt([value(r, key) for r in reps]) for reps in columns.values()]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(table(sys.argv[1:]))
