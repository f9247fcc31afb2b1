"""``cqtml-reward train-default --gold-version``: the seeded recipe labels its pairs with the
named gold scorer and measures its figures against it (the shipped weights stay gold-v1's)."""

from __future__ import annotations

import numpy as np
import pytest

from cqtml_env import GoldScorer, RewardModel
from cqtml_env.cli.reward import main as reward_cli
from cqtml_env.preferences.store import PreferenceDataset
from cqtml_env.reward.default import train_default


@pytest.mark.usefixtures("one_torch_thread")
def test_a_gold_v5_recipe_labels_with_gold_v5_and_says_so(tmp_path):
    model = train_default(out=tmp_path / "out", work=tmp_path / "work", clips=4, epochs=5,
                          progress=False, gold_version="gold-v5")
    m = model.config.metrics
    assert m["gold_version"] == "gold-v5" and m["command"].endswith("--gold-version gold-v5")
    # its figures are measured (above chance after five short epochs on 4 clips: ~0.75)
    assert m["fresh_synthetic"]["acc_gold_all_pairs"] > 0.65
    assert m["record_like_transfer"]["acc_gold_all_pairs"] > 0.65
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "MODEL_CARD-gold-v5.md", "gold-v5.json", "gold-v5.safetensors"]
    saved = RewardModel.from_pretrained(tmp_path / "out" / "gold-v5.safetensors")
    assert saved.config.metrics["gold_version"] == "gold-v5"
    assert saved.config.gold_version == "gold-v5"  # its features follow gold-v5's rules
    # the stored gold of each candidate is gold-v5's, and the oracle labels follow it
    arrays = PreferenceDataset(tmp_path / "work" / "prefs-gold-v5-seed0").load()
    v5, v1 = GoldScorer(version="gold-v5"), GoldScorer()
    rows = np.arange(0, len(arrays.gold), 7)[:24]
    cqts = arrays.cqt[arrays.cand_clip[rows]].astype(np.float32)
    acts = arrays.action_floats(rows)
    s5 = np.array([float(np.mean(v5.score(c, a))) for c, a in zip(cqts, acts)])
    s1 = np.array([float(np.mean(v1.score(c, a))) for c, a in zip(cqts, acts)])
    assert np.abs(s5 - arrays.gold[rows]).max() < 0.01 < np.abs(s1 - arrays.gold[rows]).max()
    a, b = arrays.pairs[:, 0], arrays.pairs[:, 1]
    clear = np.abs(arrays.gold[a] - arrays.gold[b]) > 1e-6
    assert clear.sum() > 100
    assert np.array_equal(arrays.label[clear] > 0.5, (arrays.gold[a] > arrays.gold[b])[clear])


def test_an_unknown_gold_version_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown gold version 'gold-v9'"):
        train_default(out=tmp_path / "out", work=tmp_path / "work", gold_version="gold-v9",
                      progress=False)
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unknown gold version"):
        reward_cli(["train-default", "--out", str(tmp_path / "o"), "--work", str(tmp_path / "w"),
                    "--gold-version", "gold-v9", "--quiet"])
