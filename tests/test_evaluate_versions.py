"""agents/evaluate.py reports normalised gold under every gold version, not only the one scored."""

from __future__ import annotations

import json

import pytest

from agents import evaluate
from agents.common import Evaluator, split_data
from cqtml_env.gold import GOLD_VERSIONS


def test_report_has_normalised_gold_for_every_version(tmp_path):
    split = split_data("synthetic:4", max_duration=2.0, eval_clips=3)
    ev = Evaluator(split.eval, split.eval_indices, gold_version="gold-v3")
    band = evaluate.write_report("band-follow", ev, tmp_path / "bf", plots=0)
    assert set(band["normalized_by_version"]) == set(GOLD_VERSIONS)
    for v, x in band["normalized_by_version"].items():
        assert x == pytest.approx(1.0, abs=1e-9), v  # the band-follower is 1 by definition
    noise = evaluate.write_report("random", ev, tmp_path / "rnd", plots=0)
    saved = json.loads((tmp_path / "rnd" / "report.json").read_text())
    assert saved["normalized_by_version"] == noise["normalized_by_version"]
    # the scored version's entry is the headline normalised score
    assert noise["normalized_by_version"]["gold-v3"] == pytest.approx(noise["normalized_score"])
    assert "gold-v1" in (tmp_path / "rnd" / "report.md").read_text()
