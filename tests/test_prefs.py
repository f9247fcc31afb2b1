"""Preference pairs: labellers, pair sampling, on-disk format, bad rows, human labels, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from cqtml_env.gold.scorer import GoldScorer
from cqtml_env.preferences import (
    LABELLERS,
    PreferenceDataset,
    PrefsFormatError,
    generate_preferences,
    label_pairs,
    sample_pairs,
)
from cqtml_env.preferences.candidates import (
    CandidateFactory,
    candidates_from_actions,
    smoothed_band_level,
)

T = 216


class TinyClips:
    """Any data source works: len, [i] -> CQT, clip_info(i)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.cqts = []
        for _ in range(n):
            c = np.zeros((2, 84, T), np.float32)
            for _k in range(12):
                b, t = int(rng.integers(0, 84)), int(rng.integers(0, 200))
                length = int(rng.integers(5, 30))
                c[:, b : b + 3, t : t + length] = np.maximum(
                    c[:, b : b + 3, t : t + length], rng.uniform(0.5, 0.95)
                )
            self.cqts.append(c)

    def __len__(self) -> int:
        return len(self.cqts)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.cqts[i]

    def clip_info(self, i: int) -> dict:
        return {"clip_id": f"tiny-{i}"}


@pytest.fixture(scope="module")
def prefs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefs") / "p"
    generate_preferences(
        TinyClips(5),
        root,
        candidates_per_clip=10,
        pairs_per_clip=20,
        clips_per_shard=2,
        seed=3,
        progress=False,
    )
    return root


# -- labellers ------------------------------------------------------------------------
def test_oracle_is_deterministic_with_ties():
    g1 = np.array([0.5, 0.2, 0.7, 0.4])
    g2 = np.array([0.4, 0.3, 0.7, 0.1])
    a = label_pairs(g1, g2, "oracle", np.random.default_rng(0))
    b = label_pairs(g1, g2, "oracle", np.random.default_rng(1))
    assert a.tolist() == b.tolist() == [1.0, 0.0, 0.5, 1.0]


def test_mistake_flip_rate_matches_epsilon():
    rng = np.random.default_rng(0)
    g1, g2 = rng.random(20000), rng.random(20000)
    oracle = label_pairs(g1, g2, "oracle")
    for eps in (0.0, 0.1, 0.3):
        lab = label_pairs(g1, g2, "mistake", np.random.default_rng(1), epsilon=eps)
        assert abs(np.mean(lab != oracle) - eps) < 0.015


def test_bt_flip_rate_matches_temperature():
    rng = np.random.default_rng(0)
    g1, g2 = rng.random(20000), rng.random(20000)
    oracle = label_pairs(g1, g2, "oracle")
    for temp in (0.02, 0.1):
        lab = label_pairs(g1, g2, "bt", np.random.default_rng(2), temperature=temp)
        expected = np.mean(1.0 / (1.0 + np.exp(np.abs(g1 - g2) / temp)))
        assert abs(np.mean(lab != oracle) - expected) < 0.015
    sharp = label_pairs(g1, g2, "bt", np.random.default_rng(3), temperature=1e-6)
    assert np.mean(sharp != oracle) < 0.001


def test_labeller_errors():
    with pytest.raises(ValueError, match="unknown labeller"):
        label_pairs(np.zeros(2), np.zeros(2), "psychic")
    with pytest.raises(ValueError, match="temperature"):
        label_pairs(np.zeros(2), np.zeros(2), "bt", temperature=0)
    with pytest.raises(ValueError, match="epsilon"):
        label_pairs(np.zeros(2), np.zeros(2), "mistake", epsilon=1.5)


def test_sample_pairs_are_valid_and_partly_close():
    rng = np.random.default_rng(0)
    gold = rng.random(64)
    pairs = sample_pairs(gold, 400, rng, near_fraction=0.5)
    assert pairs.shape == (400, 2) and pairs.min() >= 0 and pairs.max() < 64
    assert np.all(pairs[:, 0] != pairs[:, 1])
    rank = np.argsort(np.argsort(gold))
    dist = np.abs(rank[pairs[:, 0]] - rank[pairs[:, 1]])
    assert np.all(dist[:200] <= 8) and dist[200:].mean() > 12


# -- candidates -----------------------------------------------------------------------
def test_candidates_are_diverse_and_in_range():
    cqt = TinyClips(1, seed=4)[0]
    fac = CandidateFactory(cqt)
    acts, names = fac.sample(200, np.random.default_rng(0))
    assert acts.shape == (200, 4, T) and acts.min() >= 0 and acts.max() <= 1
    assert len(set(names)) >= 12 and names[0] == "ideal" and names[1] == "follower"
    gold = GoldScorer().score(cqt, acts)
    assert gold.std() > 0.1  # from noise to near-ideal
    grid = acts * 31
    assert np.mean(np.all(np.isclose(grid, np.round(grid), atol=1e-4), axis=(1, 2))) > 0.3
    assert np.allclose(smoothed_band_level(cqt).shape, (4, T))


def test_candidates_from_actions_validates():
    assert candidates_from_actions(np.zeros((4, T))).shape == (1, 4, T)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        candidates_from_actions(np.full((2, 4, T), 2.0))
    with pytest.raises(ValueError, match="devices"):
        candidates_from_actions(np.zeros((2, 3, T)), num_devices=4)


# -- format ---------------------------------------------------------------------------
def test_format_layout_and_contents(prefs_dir):
    man = json.loads((prefs_dir / "manifest.json").read_text())
    assert man["format"] == "cqtml-prefs" and man["version"] == 1
    assert man["labellers"] == list(LABELLERS)
    assert [s["clips"] for s in man["shards"]] == [2, 2, 1]
    shard = load_file(str(prefs_dir / man["shards"][0]["file"]))
    assert shard["cqt"].dtype == np.float16 and shard["cqt"].shape == (2, 2, 84, T)
    assert shard["actions"].dtype == np.uint8 and shard["actions"].shape == (20, 4, T)
    assert shard["pairs"].dtype == np.int32 and shard["pairs"].shape == (40, 2)
    ds = PreferenceDataset(prefs_dir)
    arr = ds.load()
    assert ds.num_pairs == 100 and len(arr.pairs) == 100 and len(arr.cqt) == 5
    assert arr.clip_ids == [f"tiny-{i}" for i in range(5)]
    # stored gold is the gold of the stored (quantised) actions, labels follow it (oracle)
    scorer = GoldScorer()
    rows = np.flatnonzero(arr.cand_clip == 3)
    gold = scorer.score(arr.cqt[3].astype(np.float32), arr.action_floats(rows))
    assert np.allclose(gold, arr.gold[rows], atol=2e-3)
    gd = arr.gold[arr.pairs[:, 0]] - arr.gold[arr.pairs[:, 1]]
    assert np.all((gd > 0) == (arr.label == 1.0)) and np.all(arr.labeller == 0)
    assert np.all(arr.cand_clip[arr.pairs[:, 0]] == arr.cand_clip[arr.pairs[:, 1]])
    assert ds.validate() == []


def test_generation_is_seeded(tmp_path, prefs_dir):
    other = generate_preferences(
        TinyClips(5),
        tmp_path / "again",
        candidates_per_clip=10,
        pairs_per_clip=20,
        clips_per_shard=2,
        seed=3,
        progress=False,
    ).load()
    ref = PreferenceDataset(prefs_dir).load()
    assert np.array_equal(other.actions, ref.actions) and np.array_equal(other.pairs, ref.pairs)
    with pytest.raises(FileExistsError):
        generate_preferences(TinyClips(1), tmp_path / "again", progress=False)


def test_noisy_labellers_and_policy_hook(tmp_path):
    seen = []

    def policy(cqt, info):
        seen.append(info["clip_id"])
        return np.stack([smoothed_band_level(cqt), np.full((4, T), 0.5, np.float32)])

    ds = generate_preferences(
        TinyClips(3),
        tmp_path / "m",
        candidates_per_clip=12,
        pairs_per_clip=200,
        labeller="mistake",
        epsilon=0.25,
        seed=0,
        policy_actions=policy,
        progress=False,
    )
    arr = ds.load()
    assert seen == ["tiny-0", "tiny-1", "tiny-2"]
    assert "policy" in ds.sources and np.sum(arr.source == ds.sources.index("policy")) == 6
    gd = arr.gold[arr.pairs[:, 0]] - arr.gold[arr.pairs[:, 1]]
    flipped = np.mean((gd > 0) != (arr.label == 1.0))
    assert 0.17 < flipped < 0.33 and np.all(arr.labeller == LABELLERS.index("mistake"))


def test_human_labels_same_schema(tmp_path, prefs_dir):
    import shutil

    root = tmp_path / "h"
    shutil.copytree(prefs_dir, root)
    ds = PreferenceDataset(root)
    name = ds.add_labels(
        "shard-00001.safetensors", np.array([[0, 1], [12, 15]]), np.array([1.0, 0.0])
    )
    arr = PreferenceDataset(root).load()
    human = arr.labeller == LABELLERS.index("human")
    assert human.sum() == 2 and name.startswith("human-")
    base = 20  # shard 0 holds 20 candidates
    assert arr.pairs[human].tolist() == [[base + 0, base + 1], [base + 12, base + 15]]
    with pytest.raises(ValueError, match="mixes two clips"):
        ds.add_labels("shard-00001.safetensors", np.array([[0, 15]]), np.array([1.0]))
    with pytest.raises(ValueError, match="not a data shard"):
        ds.add_labels("nope.safetensors", np.array([[0, 1]]), np.array([1.0]))


def test_bad_rows_are_reported_with_file_and_row(tmp_path, prefs_dir):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(prefs_dir, root)
    path = root / "shard-00001.safetensors"
    arrs = load_file(str(path))
    arrs["pairs"][3] = [0, 999]
    arrs["pairs"][5] = [0, 15]  # candidates 0 and 15 belong to different clips
    arrs["label"][7] = 2.0
    save_file(arrs, str(path))
    problems = PreferenceDataset(root).validate()
    assert any("shard-00001.safetensors row 3" in p and "out of range" in p for p in problems)
    assert any("shard-00001.safetensors row 5" in p and "mixes two clips" in p for p in problems)
    assert any("shard-00001.safetensors row 7" in p and "label" in p for p in problems)
    assert len(problems) == 3
    with pytest.raises(PrefsFormatError, match="row 3"):
        PreferenceDataset(root).load()
    with pytest.warns(UserWarning, match="dropped bad rows"):
        arr = PreferenceDataset(root, strict=False).load()
    assert len(arr.pairs) == 97


def test_missing_or_foreign_directory(tmp_path):
    with pytest.raises(PrefsFormatError, match="no manifest"):
        PreferenceDataset(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "cqtml-prefs", "version": 9}))
    with pytest.raises(PrefsFormatError, match="version 9"):
        PreferenceDataset(tmp_path)


def test_cli_generate_validate_info(tmp_path, capsys):
    from cqtml_env.cli.prefs import main

    out = tmp_path / "cli"
    assert (
        main(
            [
                "generate",
                "--data",
                "synthetic:2",
                "--out",
                str(out),
                "--candidates",
                "6",
                "--pairs",
                "8",
                "--labeller",
                "bt",
                "--temperature",
                "0.05",
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["validate", str(out)]) == 0
    assert main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out.split("ok\n", 1)[1])
    assert info["pairs"] == 16 and info["pairs_by_labeller"] == {"bt": 16}
    csv = tmp_path / "h.csv"
    csv.write_text("shard,first,second,label\nshard-00000.safetensors,0,1,1\n")
    assert main(["add-human", str(out), "--csv", str(csv)]) == 0
    assert PreferenceDataset(out).num_pairs == 17
