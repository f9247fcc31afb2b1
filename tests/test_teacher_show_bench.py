"""bench/teacher_show.py (docs/GOLD.md, "gold-v7"): a gold spec's target as the policy of a
whole-song show, with song gain on the spec's own range, beside the band-follower."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from conftest import beat_song, load_bench

from cqtml_env import CQTProcessor, GoldScorer
from cqtml_env.contract import quantise
from cqtml_env.show.song_gain import SongGain

teacher_show = load_bench("teacher_show")


def test_target_policy_returns_each_windows_quantised_target():
    rng = np.random.default_rng(0)
    states = [rng.uniform(0, 1, (2, 84, 216)).astype(np.float32) for _ in range(2)]
    gold = GoldScorer(version="gold-v7")
    out = teacher_show.TargetPolicy(gold).generate_actions(states)
    assert len(out) == 2
    for s, (a,) in zip(states, out):
        np.testing.assert_array_equal(a, quantise(gold.features(s).target))


def test_a_spec_song_gain_is_that_specs_range():
    """An override spec maps with its own range: v5 with the 0.5 % floor is gold-v7's."""
    level = SongGain(num_devices=4).levels(np.random.default_rng(1).uniform(
        0.2, 0.9, (2, 84, 300)).astype(np.float32))
    spec = teacher_show.spec_song_gain("gold-v5:floor_percentile=0.5")
    v7 = SongGain(num_devices=4, gold_version="gold-v7")
    for a, b in zip(spec.range(level), v7.range(level)):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(spec.range(level)[0], SongGain(num_devices=4).range(level)[0])
    assert spec.fullness == SongGain(num_devices=4).fullness > 0  # cqtml-show's by default
    assert teacher_show.spec_song_gain("gold-v7", fullness=0.0).fullness == 0.0


def test_run_scores_the_target_and_the_band_follower(tmp_path):
    sr = CQTProcessor().sample_rate
    sf.write(str(tmp_path / "song.wav"), beat_song(12.0, sr), sr)
    res = teacher_show.run([str(tmp_path)], ["gold-v7"])
    rows = res[str(tmp_path)]["rows"]
    assert res[str(tmp_path)]["songs"] == 1
    assert set(rows) == {"gold-v7", "band-follower, song gain on gold-v7"}
    for m in rows.values():
        assert np.isfinite(m["ssm_corr"]) and -1 <= m["ssm_corr"] <= 1  # a 12 s song: defined
        assert m["flash_safe"] == 1.0  # the limiter is on
    assert "| gold-v7 |" in teacher_show.markdown(res)
