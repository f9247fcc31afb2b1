"""LevelAugmented: a seeded per-clip attenuation that equals re-computing the CQT of quieter audio."""

from __future__ import annotations

import numpy as np
import pytest

from cqtml_env import CQTProcessor, LevelAugmented, SyntheticMusic


@pytest.fixture(scope="module")
def synth():
    return SyntheticMusic(num_clips=3, seed=0, max_duration=1.0)


def test_shift_matches_cqt_of_attenuated_audio(synth):
    aug = LevelAugmented(synth, max_cut_db=24.0, seed=5)
    i = 1
    cut = aug.cut_db(i)
    assert 0.0 <= cut <= 24.0
    audio = SyntheticMusic(num_clips=3, seed=0, max_duration=1.0, output_format="audio")[i]
    quieter = CQTProcessor(max_duration=1.0)(audio * 10 ** (-cut / 20))
    got = aug[i]
    loud = quieter > 0.05  # away from the floor, where the shift clips
    assert loud.mean() > 0.3
    np.testing.assert_allclose(got[loud], quieter[loud], atol=2e-3)
    assert got.dtype == np.float32 and got.min() >= 0 and got.max() <= 1


def test_seeded_deterministic_and_interface(synth):
    a, b = LevelAugmented(synth, seed=1), LevelAugmented(synth, seed=1)
    assert [a.cut_db(i) for i in range(3)] == [b.cut_db(i) for i in range(3)]
    assert [a.cut_db(i) for i in range(3)] != [LevelAugmented(synth, seed=2).cut_db(i) for i in range(3)]
    assert len(a) == 3 and a.processor is synth.processor
    np.testing.assert_array_equal(a.get_many([2, 0]), np.stack([a[2], a[0]]))
    assert a.clip_info(0)["level_cut_db"] == a.cut_db(0)
    assert a.clip_info(0)["clip_id"] == synth.clip_info(0)["clip_id"]
    assert (a[0] <= synth[0] + 1e-7).all()
    with pytest.raises(ValueError, match="max_cut_db"):
        LevelAugmented(synth, max_cut_db=-1)
