"""bench/sft_grpo_table.py: seeds pooled per label, and --margin against each report's own
band-follower (the per-seed held-out files differ, so their band-followers do)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import load_bench

tbl = load_bench("sft_grpo_table")


def _report(path: Path, norm: float, beat: float, bf_beat: float, flashes: float,
            bf_flashes: float) -> str:
    path.mkdir()
    metrics = {"beat_f": beat, "flashes": flashes}
    bf = {"metrics": {"beat_f": bf_beat, "flashes": bf_flashes}}
    (path / "report.json").write_text(json.dumps({
        "data": "folder:x", "gold_version": "gold-v4", "clips": 3, "normalized_score": norm,
        "metrics": metrics, "normalized_by_version": {},
        "baselines": {"band-follow": bf, "random": {"metrics": {}}}}))
    return str(path)


def test_plain_table_pools_seeds_and_uses_the_first_baselines(tmp_path):
    a = _report(tmp_path / "a", 1.2, 0.50, 0.40, 3.0, 4.0)
    b = _report(tmp_path / "b", 1.1, 0.60, 0.70, 5.0, 4.0)
    out = tbl.table([f"p={a}", f"p={b}"])
    row = next(r for r in out.splitlines() if r.startswith("| beat-peak F"))
    assert row == "| beat-peak F (±50 ms) | 0.400 | — | 0.550 ± 0.050 |"


def test_margin_is_against_each_reports_own_band_follower(tmp_path):
    a = _report(tmp_path / "a", 1.2, 0.50, 0.40, 3.0, 4.0)
    b = _report(tmp_path / "b", 1.1, 0.60, 0.70, 5.0, 4.0)
    out = tbl.table([f"p={a}", f"p={b}"], margin=True).splitlines()
    beat = next(r for r in out if r.startswith("| beat-peak F"))
    assert beat == "| beat-peak F (±50 ms) | +0.000 ± 0.100 (+0.100 / -0.100) |"
    flashes = next(r for r in out if r.startswith("| flashes"))  # fewer flashes is a win: negated
    assert flashes == "| flashes, worst 1 s | +0.000 ± 1.000 (+1.000 / -1.000) |"
    gold = next(r for r in out if r.startswith("| normalised gold |"))
    assert gold == "| normalised gold | +0.150 ± 0.050 (+0.200 / +0.100) |"
    assert not any(r.startswith("| mean brightness") for r in out)
