"""cqtml-env 0.2 names that tell the truth; the 0.1 names still work for one release, warning."""

from __future__ import annotations

import importlib
import sys
import warnings

import numpy as np
import pytest

import cqtml_env
from cqtml_env import CQTMLVectorEnv, SyntheticMusic
from cqtml_env.preferences import candidates


@pytest.fixture(scope="module")
def data():
    return SyntheticMusic(num_clips=8, seed=3, max_duration=1.0)


def test_candidate_smoothed_band_level_and_its_old_name(data):
    cqt = data[0]
    new = candidates.smoothed_band_level(cqt, 4, attack=0.5)
    with pytest.warns(DeprecationWarning, match="smoothed_band_level.*not the BandFollowPolicy"):
        old = candidates.band_follower(cqt, 4, attack=0.5)
    np.testing.assert_array_equal(new, old)
    assert new.shape == (4, cqt.shape[-1]) and new.min() >= 0 and new.max() <= 1
    assert "smoothed_band_level" in candidates.__all__ and "band_follower" not in candidates.__all__
    assert cqtml_env.__version__ == "0.2.0"


def _env(data, **kw) -> CQTMLVectorEnv:
    return CQTMLVectorEnv(num_envs=4, dataset=data, reward="gold", max_duration=1.0, **kw)


def test_vector_env_group_size_and_the_deprecated_groups(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name is silent
        new = _env(data, group_size=2)
        idx_new = new.reset(seed=5)[1]["clip_index"]
        opt_new = new.reset(seed=6, options={"group_size": 4})[1]["clip_index"]
    assert new.group_size == 2 and (idx_new[::2] == idx_new[1::2]).all()
    assert len(set(opt_new)) == 1
    with pytest.warns(DeprecationWarning, match="'groups' is deprecated: it is a group size"):
        old = _env(data, groups=2)
    with pytest.warns(DeprecationWarning, match="group_size"):
        assert old.groups == 2
    np.testing.assert_array_equal(old.reset(seed=5)[1]["clip_index"], idx_new)
    with pytest.warns(DeprecationWarning, match="reset option 'groups'"):
        opt_old = old.reset(seed=6, options={"groups": 4})[1]["clip_index"]
    np.testing.assert_array_equal(opt_old, opt_new)
    with pytest.raises(ValueError, match="pass only group_size"), pytest.warns(DeprecationWarning):
        _env(data, group_size=2, groups=4)
    with pytest.raises(ValueError, match="group_size=3 must divide num_envs=4"):
        new.reset(options={"group_size": 3})


def test_sb3_adapter_module_has_a_specific_name():
    pytest.importorskip("stable_baselines3")
    from cqtml_env.adapters.sb3_vec_env import CQTMLSB3VecEnv

    for old in ("cqtml_env.adapters.sb3", "cqtml_env.sb3"):
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match="cqtml_env.adapters.sb3_vec_env"):
            mod = importlib.import_module(old)
        assert mod.CQTMLSB3VecEnv is CQTMLSB3VecEnv
