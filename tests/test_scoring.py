"""The one scoring path: env, vector env, policy evaluation and the reward model's evaluation
all score through ``ShowScorer`` and the reward protocol, and get the same numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from cqtml_env import GoldScorer, RewardModel, SyntheticMusic
from cqtml_env.reward.protocol import (
    ComponentScorer,
    PerClipComponents,
    RewardFunction,
    ScoreFunctionReward,
    as_reward_function,
)
from cqtml_env.reward.scoring import ShowScorer, group_clips


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    ds = SyntheticMusic(4, seed=11, max_duration=2.0)
    return np.stack([ds[i] for i in range(len(ds))])


def _actions(n: int, t: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 4, t), dtype=np.float32)


def test_reward_model_and_gold_implement_the_protocol() -> None:
    assert isinstance(RewardModel(), RewardFunction)
    assert isinstance(GoldScorer(), ComponentScorer)

    class Plain:
        def score(self, cqt: Any, actions: Any) -> np.ndarray:
            return np.zeros(len(actions))

    wrapped = as_reward_function(Plain())
    assert isinstance(wrapped, ScoreFunctionReward)
    with pytest.raises(TypeError, match="score"):
        as_reward_function(object())


def test_group_clips_finds_equal_runs() -> None:
    np.testing.assert_array_equal(group_clips(np.array([3, 3, 1, 1, 3, 3])), [3, 1, 3])
    np.testing.assert_array_equal(group_clips(np.array([3, 3, 1])), [3, 3, 1])  # unequal runs
    np.testing.assert_array_equal(group_clips(np.array([2, 2, 2])), [2])


def test_show_scorer_equals_scoring_each_clip_alone(clips: np.ndarray) -> None:
    rm, gold = RewardModel.load_default(), GoldScorer()
    scoring = ShowScorer(rm, gold)
    t = clips.shape[-1]
    rows = np.array([0, 0, 0, 2, 2, 2, 1, 1, 1])  # GRPO-like groups of 3
    acts = _actions(len(rows), t)
    s = scoring.score(rows, acts, clips.__getitem__)
    for c in np.unique(rows):
        k = rows == c
        np.testing.assert_allclose(s.proxy[k], rm.score(clips[c], acts[k]), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(s.gold[k], gold.score(clips[c], acts[k]))
        comps = gold.score_components(clips[c], acts[k])
        for name, v in comps.items():
            np.testing.assert_array_equal(s.components[name][k], v.mean(axis=1))
    # ungrouped rows (one clip per row, in any order) give the same scores row by row
    perm = np.random.default_rng(1).permutation(len(rows))
    s2 = ShowScorer(rm, gold).score(rows[perm], acts[perm], clips.__getitem__)
    np.testing.assert_array_equal(s2.gold, s.gold[perm])
    np.testing.assert_allclose(s2.proxy, s.proxy[perm], rtol=1e-6, atol=1e-7)
    assert scoring.cache_info() == {"gold": 3, "proxy": 3}


def test_gold_only_scorers_without_the_batch_api_score_the_same(clips: np.ndarray) -> None:
    class OnlyComponents:
        def __init__(self) -> None:
            self.inner = GoldScorer()

        def score(self, cqt: Any, actions: Any) -> Any:
            return self.inner.score(cqt, actions)

        def score_components(self, cqt: Any, actions: Any) -> dict:
            return self.inner.score_components(cqt, actions)

    rows, acts = np.array([1, 0, 1, 3]), _actions(4, clips.shape[-1], 2)
    batch = ShowScorer(None, GoldScorer()).score(rows, acts, clips.__getitem__)
    per_clip = ShowScorer(None, OnlyComponents())
    assert isinstance(per_clip.gold, PerClipComponents)
    s = per_clip.score(rows, acts, clips.__getitem__)
    np.testing.assert_array_equal(s.gold, batch.gold)
    np.testing.assert_array_equal(s.proxy, batch.gold)  # proxy None: gold is the reward
    for name in batch.components:
        np.testing.assert_array_equal(s.components[name], batch.components[name])


def test_stale_states_are_dropped_when_the_model_changes(clips: np.ndarray) -> None:
    rm = RewardModel.load_default()
    scoring = ShowScorer(rm, GoldScorer(version=rm.config.gold_version))
    rows, acts = np.array([0, 1]), _actions(2, clips.shape[-1], 3)
    before = scoring.score(rows, acts, clips.__getitem__).proxy
    with torch.no_grad():  # the clip encoder's band pooling: the cached encodings are stale
        rm.band_logits.add_(torch.linspace(-1.0, 1.0, rm.band_logits.shape[-1]))
    after = scoring.score(rows, acts, clips.__getitem__).proxy
    np.testing.assert_allclose(after, rm.score(clips[[0, 1]], acts), rtol=1e-6, atol=1e-7)
    assert np.abs(after - before).max() > 1e-4


def test_env_evaluator_and_reward_evaluation_agree(clips: np.ndarray) -> None:
    """The same clips and actions scored by the vector env, by agents' Evaluator and through
    evaluate_fresh's path give the same gold and proxy numbers."""
    from agents.common import Evaluator

    ds = SyntheticMusic(4, seed=11, max_duration=2.0)
    venv = gym.make_vec("CQTML-v0", num_envs=4, dataset=ds, autoreset_mode="disabled")
    venv.reset(seed=0, options={"clips": [0, 1, 2, 3]})
    acts = _actions(4, clips.shape[-1], 4)
    _, reward, _, _, info = venv.step(acts)
    ev = Evaluator(ds, np.arange(4), reward="model", num_devices=4)
    res = ev.score_actions(acts)
    np.testing.assert_array_equal(res.gold, info["gold_score"])
    np.testing.assert_allclose(res.proxy, reward, rtol=1e-6, atol=1e-7)
    for name, v in res.components.items():
        np.testing.assert_array_equal(v, info[f"gold/{name}"])


def test_evaluator_uses_its_num_devices_and_reward_model(tmp_path: Path) -> None:
    """Was: GoldScorer() for 4 devices and the default reward model whatever was asked."""
    from agents.common import Evaluator

    ds = SyntheticMusic(2, seed=5, max_duration=1.0)
    torch.manual_seed(0)
    six = RewardModel(num_devices=6)
    six.save_pretrained(tmp_path, "model")
    ev = Evaluator(ds, np.arange(2), reward=str(tmp_path), num_devices=6)
    assert ev.gold.config.num_devices == 6 and ev.reward_model.config.num_devices == 6
    acts = _actions(2, ds.processor.num_frames, 5)
    acts = np.concatenate([acts, acts[:, :2]], axis=1)  # 6 devices
    res = ev.score_actions(acts)
    np.testing.assert_allclose(res.proxy, six.score(np.stack([ds[0], ds[1]]), acts), rtol=1e-6)
    np.testing.assert_array_equal(res.gold, GoldScorer(num_devices=6).score_batch(np.stack([ds[0], ds[1]]), acts))
    with pytest.raises(ValueError, match="num_devices=6.*num_devices=4"):
        Evaluator(ds, np.arange(2), reward=str(tmp_path), num_devices=4)
