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
    # gold-v3 ships no reward model: the proxy column is the default (gold-v5) model's, and
    # the report says so
    assert saved["proxy_gold_version"] == "gold-v5"
    assert "proxy: the reward model trained on `gold-v5`" in (tmp_path / "rnd" / "report.md").read_text()


def test_held_out_scores_only_the_files_a_training_run_held_out(tmp_path, write_audio):
    for k in range(8):
        write_audio(tmp_path / f"song{k}.wav", seconds=2.2, sr=22050, freq=220.0 + 40 * k)
    spec = f"folder:{tmp_path}"
    split = split_data(spec, max_duration=1.0, eval_clips=3, seed=1)
    held = evaluate.clip_indices(split, data=spec, clips=3, seed=1, held_out=True)
    assert held.tolist() == split.eval_indices.tolist()
    src = [split.eval.clip_info(int(i))["source"] for i in range(len(split.eval))]
    held_files = {src[i] for i in held}
    assert held_files.isdisjoint({src[i] for i in split.train_indices})
    assert all(src[i] in held_files for i in range(len(src)) if i not in set(split.train_indices))
    # without it a fixed model is scored on clips of every file, training files included
    every = evaluate.clip_indices(split, data=spec, clips=16, seed=1, held_out=False)
    assert len(every) == 16 and {src[i] for i in every} - held_files
