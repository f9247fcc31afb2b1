"""Issue 14 hardening, env side: observations never leave their space, drawn bad clips are
skipped, bf16 actions are accepted."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from cqtml_env import AudioFolder
from cqtml_env.datasets.base import DataWarning
from cqtml_env.env.single import CQTMLEnv
from cqtml_env.env.vector import CQTMLVectorEnv
from cqtml_env.features.audio import BadClipError
from tests.test_env import SHORT, TinyClips

SR = 22050


class PoisonedClips(TinyClips):
    """Clip 2 comes back with values outside the observation space (NaN and 1000)."""

    def __getitem__(self, i: int) -> np.ndarray:
        x = super().__getitem__(i)
        if i == 2:
            x[0, 0, :3] = [np.nan, 1000.0, -5.0]
        return x

    def clip_info(self, i: int) -> dict:
        return {"clip_id": f"tiny-{i}", "source": f"/data/tiny-{i}.wav"}


def test_reset_never_hands_out_an_observation_outside_its_space():
    env = CQTMLEnv(dataset=PoisonedClips(), reward="gold")
    obs, _ = env.reset(options={"clip": 1})
    assert env.observation_space.contains(obs)
    with pytest.raises(ValueError, match=r"clip 2 \(tiny-2, source /data/tiny-2.wav\).*outside"):
        env.reset(options={"clip": 2})


@pytest.fixture
def half_bad_folder(tmp_path):
    t = np.arange(2 * SR) / SR
    for k in range(3):
        sf.write(tmp_path / f"good{k}.wav", (0.5 * np.sin(2 * np.pi * 220 * (k + 1) * t))
                 .astype(np.float32), SR)
        sf.write(tmp_path / f"huge{k}.wav", (3e38 * np.sin(2 * np.pi * 220 * t))
                 .astype(np.float32), SR, subtype="FLOAT")
    return tmp_path


def test_drawn_bad_clips_are_skipped_and_counted(half_bad_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = AudioFolder(half_bad_folder, max_duration=SHORT, validate="header")
        env = CQTMLEnv(dataset=ds, reward="gold")
        seen = set()
        for seed in range(12):
            obs, _ = env.reset(seed=seed)
            assert env.observation_space.contains(obs) and obs.max() > 0.5
            seen.add(ds.clip_info(env.clip)["source"])
        assert all("good" in s for s in seen)
        assert ds.bad_clips and ds.skip_counts().get("too_loud", 0) >= 1
        with pytest.raises(BadClipError, match="huge"):  # an explicit bad clip is an error
            env.reset(options={"clip": next(iter(ds.bad_clips))})
        venv = CQTMLVectorEnv(num_envs=4, dataset=ds, reward="gold")
        obs, info = venv.reset(seed=0)
        assert np.isfinite(obs).all() and obs.reshape(4, -1).max(1).min() > 0.5
        assert all("good" in ds.clip_info(int(c))["source"] for c in info["clip_index"])


def test_bf16_actions_are_accepted():
    env = CQTMLEnv(dataset=TinyClips(), reward="gold")
    env.reset(seed=0)
    a = torch.full(env.action_space.shape, 0.5, dtype=torch.bfloat16)
    _, reward, *_ = env.step(a)
    _, reward32, *_ = env.step(a.float())
    assert reward == pytest.approx(reward32)
