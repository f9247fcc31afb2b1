"""gold-v7 (docs/GOLD.md): v5 with each band's dark end at its 0.5th percentile over the clip;
selectable beside unchanged gold-v1..v6. Its students' gain features call dark what it does
(``gain_floor``), and a show's song gain takes the range of the version a checkpoint's teacher
had."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_gain_features import swelling_cqt
from test_gold_v4 import three_shows
from test_gold_v6 import PINNED as PINNED_BEFORE_V6

from cqtml_env import CQTProcessor, GoldScorer, SyntheticMusic
from cqtml_env.gold import GOLD_V5, GOLD_V7, GOLD_VERSIONS, GoldConfig
from cqtml_env.show.song_gain import SONG_GAIN_GOLD_VERSION, SongGain, song_gain_version
from cqtml_policy import create_policy, load_policy
from cqtml_policy.inputs import GAIN_FLOOR, GainFeatures

# scores of (flat 0.5, a ramp, the version's own target) on clip 1 of SyntheticMusic(seed=3),
# computed by scorer.py when gold-v7 was added (its v1..v6 code paths unchanged)
PINNED = {
    **PINNED_BEFORE_V6,
    "gold-v6": [0.3467072970966605, 0.47420757606489744, 0.9424509405612044],
}


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    ds = SyntheticMusic(num_clips=4, seed=3)
    return [ds[i] for i in range(4)]


@pytest.mark.parametrize("version", sorted(PINNED))
def test_older_versions_are_bit_identical_after_v7(clips, version):
    s = GoldScorer(version=version)
    assert s.score(clips[1], three_shows(s, clips[1])).tolist() == PINNED[version]


def test_v7_is_v5_with_the_half_percentile_floor():
    assert GOLD_VERSIONS[-1] == "gold-v7"
    assert GOLD_V7 == {**GOLD_V5, "floor_percentile": 0.5} and GOLD_V5["floor_percentile"] == 5.0
    s = GoldScorer(version="gold-v7")
    assert replace(s.config, weights={}) == replace(GoldConfig.v7(), weights={})
    assert (replace(s.config, floor_percentile=5.0, version="gold-v5")
            == GoldScorer(version="gold-v5").config)


def test_v7_dark_end_is_each_bands_half_percentile():
    """On music whose bands stay above the gate, the floor is the band's 0.5th percentile
    (v5: its 5th), so more of each band's quiet end keeps some light."""
    cqt = swelling_cqt(CQTProcessor(max_duration=5.0))
    v5, v7 = GoldScorer(version="gold-v5"), GoldScorer(version="gold-v7")
    level = v7.band_levels(cqt)
    np.testing.assert_array_equal(level, v5.band_levels(cqt))  # the level is v5's
    floor7, ref7 = v7.band_range(level)
    floor5, ref5 = v5.band_range(level)
    want = np.maximum(np.percentile(level, 0.5, axis=1), v7.config.gate)
    np.testing.assert_allclose(floor7, want, rtol=1e-6)
    assert np.all(floor7 <= floor5) and np.any(floor7 < floor5 - 1e-3)
    np.testing.assert_allclose(ref7, np.maximum(ref5, floor7 + v7.config.min_ref_span))
    bed7 = GoldScorer(version="gold-v7", target_decay_s=0.0, target_attack_s=0.0,
                      punch_decay_s=0.0, beat_punch_level=0.0).features(cqt).target
    bed5 = GoldScorer(version="gold-v5", target_decay_s=0.0, target_attack_s=0.0,
                      punch_decay_s=0.0, beat_punch_level=0.0).features(cqt).target
    assert (bed7 == 0).mean() < (bed5 == 0).mean()  # fewer dark frames
    assert bed7.mean() > bed5.mean()


def test_v7_target_is_its_own_optimum(clips):
    v5, v7 = GoldScorer(version="gold-v5"), GoldScorer(version="gold-v7")
    cqt = swelling_cqt(CQTProcessor(max_duration=5.0))
    for c in [*clips, cqt]:
        y7 = v7.features(c).target
        assert y7.min() >= 0.0 and y7.max() <= 1.0
        assert v7.score(c, y7) > v7.score(c, np.clip(y7 + 0.25, 0, 1))  # a brighter copy loses
    y5, y7 = v5.features(cqt).target, v7.features(cqt).target
    assert v7.score(cqt, y7) > v7.score(cqt, y5)  # v5's target is not v7's optimum


def test_gain_features_with_the_v7_floor_are_its_bed():
    """``GainFeatures(floor=0.005)`` is gold-v7's bed before its follower, as the default is
    gold-v5's: one source of truth for the student's level curves."""
    proc = CQTProcessor(max_duration=5.0)
    cqt = swelling_cqt(proc)
    bed = GoldScorer(num_devices=4, version="gold-v7", frame_rate=proc.frame_rate,
                     target_decay_s=0.0, target_attack_s=0.0, punch_decay_s=0.0,
                     beat_punch_level=0.0).features(cqt).target
    out = GainFeatures(4, floor=GOLD_V7["floor_percentile"] / 100)(torch.as_tensor(cqt)[None])[0]
    np.testing.assert_allclose(out.numpy()[0::2], bed, atol=1e-5)
    default = GainFeatures(4)(torch.as_tensor(cqt)[None])[0].numpy()[0::2]
    assert np.abs(default - bed).max() > 0.05  # the v5 floor would misjudge it


@pytest.mark.parametrize("kind", ["cnn-gain", "vit-gain"])
def test_gain_floor_round_trips_and_old_configs_stay(kind, tmp_path):
    torch.manual_seed(0)
    p = create_policy(kind, (2, 84, 216), num_devices=4, device="cpu", gain_floor=0.005).eval()
    p.save_pretrained(tmp_path / "v7")
    assert "gain_floor" in (tmp_path / "v7" / "config.json").read_text()
    q = load_policy(tmp_path / "v7", device="cpu").eval()
    x = torch.rand(2, 2, 84, 216)
    with torch.no_grad():
        assert torch.equal(p._log_probs(x, 1.0), q._log_probs(x, 1.0))
    gains = [m for m in q.modules() if isinstance(m, GainFeatures)]
    assert len(gains) == 1 and gains[0].floor == 0.005
    create_policy(kind, (2, 84, 216), num_devices=4, device="cpu").save_pretrained(tmp_path / "v5")
    assert "gain_floor" not in (tmp_path / "v5" / "config.json").read_text()  # as before
    gains = [m for m in load_policy(tmp_path / "v5", device="cpu").modules()
             if isinstance(m, GainFeatures)]
    assert gains[0].floor == GAIN_FLOOR


def test_sft_student_takes_its_teachers_floor():
    from agents.sft import student_kwargs

    assert student_kwargs("cnn-gain", teacher="gold-target", gold_version="gold-v7") == {
        "gain_floor": 0.005}
    assert student_kwargs("vit-gain", teacher="gold-target", gold_version="gold-v7") == {
        "gain_floor": 0.005}
    for version in ("gold-v5", "gold-v6", "gold-v1"):  # the default floor, or none: as before
        assert student_kwargs("cnn-gain", teacher="gold-target", gold_version=version) == {}
    assert student_kwargs("cnn", teacher="gold-target", gold_version="gold-v7") == {}
    assert student_kwargs("cnn-gain", teacher="band-follow", gold_version="gold-v7") == {}


def test_song_gain_takes_the_version_a_checkpoint_records(tmp_path):
    def ckpt(name: str, extra) -> str:
        d = tmp_path / name
        d.mkdir()
        if extra is not None:
            (d / "trainer.json").write_text(json.dumps({"iteration": 1, "extra": extra}))
        return str(d)

    assert song_gain_version(ckpt("v7", {"gold_version": "gold-v7"})) == "gold-v7"
    assert song_gain_version(ckpt("v6", {"gold_version": "gold-v6"})) == "gold-v6"
    for name, extra in (("bf", {"teacher": "band-follow"}), ("none", None),
                        ("v3", {"gold_version": "gold-v3"}),  # a loudness law: not linear
                        ("odd", {"gold_version": "gold-v99"}), ("bad", ["x"])):
        assert song_gain_version(ckpt(name, extra)) == SONG_GAIN_GOLD_VERSION
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "trainer.json").write_text("{not json")
    assert song_gain_version(tmp_path / "torn") == SONG_GAIN_GOLD_VERSION
    assert song_gain_version(None) == SONG_GAIN_GOLD_VERSION
    cqt = swelling_cqt(CQTProcessor(max_duration=5.0))
    level = SongGain(num_devices=4, gold_version="gold-v7").levels(cqt)
    floor7, _ = SongGain(num_devices=4, gold_version="gold-v7").range(level)
    floor5, _ = SongGain(num_devices=4).range(level)
    assert np.any(floor7 < floor5 - 1e-3)  # the show maps with the range the policy learnt
