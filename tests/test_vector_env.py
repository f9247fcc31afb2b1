"""Native vector env: make_vec wiring, equivalence with SyncVectorEnv over the single env,
batched scoring (one proxy pass, one gold pass, per-clip caches), GRPO grouping options, infos.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from test_env import T_SHORT, TinyClips, ToyRewardModel, small_kwargs

from cqtml_env.env.vector import CQTMLVectorEnv
from cqtml_env.gold.scorer import GoldScorer

N = 8


class CountingGold(GoldScorer):
    """The real gold scorer, recording (rows, distinct clips) of each batch call and how often
    per-clip features are computed."""

    def __init__(self) -> None:
        super().__init__(num_devices=4)
        self.batches: list[tuple[int, int]] = []
        self.feature_calls = 0

    def features(self, cqt: Any) -> Any:
        self.feature_calls += 1
        return super().features(cqt)

    def score_components_batch(self, cqts: Any = None, actions: Any = None, features: Any = None) -> dict:
        self.batches.append((int(np.shape(actions)[0]), len({id(f) for f in features})))
        return super().score_components_batch(cqts, actions, features)


class PerClipGold:
    """A gold scorer without the batch API (only score/score_components): scored per clip."""

    def __init__(self) -> None:
        self.inner = GoldScorer(num_devices=4)
        self.calls = 0

    def score(self, cqt: Any, actions: Any) -> Any:
        return self.inner.score(cqt, actions)

    def score_components(self, cqt: Any, actions: Any) -> dict:
        self.calls += 1
        return self.inner.score_components(cqt, actions)


def make_native(num_envs: int = N, **over: Any) -> CQTMLVectorEnv:
    env = gym.make_vec("CQTML-v0", num_envs=num_envs, **small_kwargs(**over))
    assert isinstance(env, CQTMLVectorEnv)
    return env


def batch_actions(env: gym.vector.VectorEnv, seed: int) -> np.ndarray:
    env.action_space.seed(seed)
    return env.action_space.sample()


def test_make_vec_returns_native_vector_env_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make_vec("CQTML-v1", num_envs=N, **small_kwargs())  # the latest: no warning
    assert isinstance(env, CQTMLVectorEnv) and env.num_envs == N
    assert env.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert env.single_observation_space.shape == (2, 84, T_SHORT)
    assert env.observation_space.shape == (N, 2, 84, T_SHORT)
    assert env.action_space.shape == (N, 4, T_SHORT)
    disc = make_native(action_bins=4)
    assert disc.action_space.shape == (N, 4 * T_SHORT)
    # make_vec's num_envs/max_episode_steps are accepted by the constructor directly too
    CQTMLVectorEnv(num_envs=2, max_episode_steps=1, **small_kwargs())


def _assert_infos_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert set(a) == set(b), (sorted(a), sorted(b))
    for key in a:
        if isinstance(a[key], dict):
            _assert_infos_equal(a[key], b[key])
        elif key == "final_obs":
            for x, y in zip(a[key], b[key]):
                np.testing.assert_array_equal(x, y)
        elif a[key].dtype == object or a[key].dtype == np.bool_ or key == "clip_index":
            assert list(a[key]) == list(b[key]), key
        else:
            np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)


@pytest.mark.parametrize("action_bins", [None, 6])
def test_equivalent_to_sync_vector_env_on_same_seeds(action_bins: int | None) -> None:
    native = make_native(action_bins=action_bins)
    sync = gym.make_vec(
        "CQTML-v0",
        num_envs=N,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        **small_kwargs(action_bins=action_bins),
    )
    assert isinstance(sync, gym.vector.SyncVectorEnv)
    on, info_n = native.reset(seed=11)
    os_, info_s = sync.reset(seed=11)
    np.testing.assert_array_equal(on, os_)
    _assert_infos_equal(info_n, info_s)
    seen = set(info_n["clip_index"])
    for step in range(3):
        actions = batch_actions(native, step)
        rn = native.step(actions)
        rs = sync.step(actions)
        np.testing.assert_array_equal(rn[0], rs[0])
        np.testing.assert_allclose(rn[1], rs[1], atol=1e-6)
        np.testing.assert_array_equal(rn[2], rs[2])
        np.testing.assert_array_equal(rn[3], rs[3])
        assert rn[2].all() and not rn[3].any()
        _assert_infos_equal(rn[4], rs[4])
        seen |= set(rn[4]["clip_index"])
    assert len(seen) > 2  # sub-envs really draw different clips


def test_one_proxy_pass_and_one_gold_pass_per_step() -> None:
    rm, gold = ToyRewardModel(), CountingGold()
    env = make_native(reward=rm, gold=gold)
    env.reset(seed=0, options={"clips": [0, 0, 0, 0, 1, 1, 1, 1]})
    rm.calls.clear()
    env.step(batch_actions(env, 0))
    assert len(rm.calls) == 1 and rm.calls[0][1] == (N, 4, T_SHORT)
    assert gold.batches == [(N, 2)]  # all rows in one call, each clip's features once
    # one clip for everybody: the CQT is passed once and broadcast over the actions
    env.reset(options={"clip": 2})
    rm.calls.clear()
    gold.batches.clear()
    env.step(batch_actions(env, 1))
    assert rm.calls == [((2, 84, T_SHORT), (N, 4, T_SHORT))] and gold.batches == [(N, 1)]
    # eight different clips: still one gold call
    gold.batches.clear()
    env.reset(options={"clips": list(range(N))})
    env.step(batch_actions(env, 2))
    assert gold.batches == [(N, N)]


def test_gold_features_are_cached_per_clip() -> None:
    gold = CountingGold()
    env = make_native(gold=gold, cache_size=3)
    for clips in ([0, 0, 1, 1, 2, 2, 0, 1], [2, 1, 0, 0, 0, 1, 2, 2]):
        env.reset(options={"clips": clips})
        env.step(batch_actions(env, 0))
    assert gold.feature_calls == 3  # clips 0, 1, 2 once each over both steps
    env.reset(options={"clip": 3})  # a fourth clip evicts the least recently used (LRU)
    env.step(batch_actions(env, 1))
    assert gold.feature_calls == 4 and env.core.scoring.cache_info()["gold"] == 3
    env.close()
    assert env.core.scoring.cache_info() == {"gold": 0, "proxy": 0}


def test_gold_without_batch_api_scores_per_clip_with_the_same_results() -> None:
    per_clip = PerClipGold()
    a, b = make_native(gold=per_clip), make_native()
    clips = [3, 3, 5, 5, 5, 5, 0, 1]
    a.reset(options={"clips": clips})
    b.reset(options={"clips": clips})
    act = batch_actions(a, 0)
    ia, ib = a.step(act)[4]["final_info"], b.step(act)[4]["final_info"]
    assert per_clip.calls == 4  # once per distinct clip
    for key in ib:
        if key.startswith("gold"):
            np.testing.assert_array_equal(ia[key], ib[key], err_msg=key)


def test_reset_options_clips_clip_and_groups() -> None:
    env = make_native()
    ds = env.dataset
    clips = [3, 3, 5, 5, 5, 5, 0, 1]
    obs, info = env.reset(seed=0, options={"clips": clips})
    assert list(info["clip_index"]) == clips
    assert list(info["clip_id"]) == [ds.clip_info(c)["clip_id"] for c in clips]
    for i, c in enumerate(clips):
        np.testing.assert_array_equal(obs[i], ds[c])
    _, info = env.reset(options={"clip": 6})
    assert list(info["clip_index"]) == [6] * N

    _, info = env.reset(seed=1, options={"group_size": 4})
    idx = info["clip_index"]
    assert len(set(idx[:4])) == 1 and len(set(idx[4:])) == 1
    # the grouping holds for the autoresets that follow this reset
    for step in range(4):
        _, _, _, _, info = env.step(batch_actions(env, step))
        idx = info["clip_index"]
        assert len(set(idx[:4])) == 1 and len(set(idx[4:])) == 1
        assert list(info["final_info"]["clip_index"][:4]) == [info["final_info"]["clip_index"][0]] * 4
    # a reset without groups goes back to independent clips (constructor default)
    env.reset(seed=2)
    drawn = [env.step(batch_actions(env, s))[4]["clip_index"] for s in range(3)]
    assert any(len(set(d[:4])) > 1 for d in drawn)


def test_constructor_groups_apply_to_every_draw() -> None:
    env = make_native(group_size=2)
    _, info = env.reset(seed=0)
    idx = info["clip_index"].reshape(-1, 2)
    assert (idx[:, 0] == idx[:, 1]).all()


def test_grouped_draws_are_seeded() -> None:
    a, b = make_native(), make_native()
    ia = a.reset(seed=4, options={"group_size": 2})[1]["clip_index"]
    ib = b.reset(seed=4, options={"group_size": 2})[1]["clip_index"]
    np.testing.assert_array_equal(ia, ib)
    act = batch_actions(a, 0)
    np.testing.assert_array_equal(a.step(act)[1], b.step(act)[1])
    firsts = {tuple(a.reset(seed=s, options={"group_size": 2})[1]["clip_index"]) for s in range(6)}
    assert len(firsts) > 1


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"group_size": 3}, "divide"),
        ({"group_size": 0}, "positive"),
        ({"clips": [0, 1]}, "8 entries"),
        ({"clips": [0] * 7 + [8]}, r"\[0, 8\)"),
        ({"clip": -1}, r"\[0, 8\)"),
        ({"clip": 0, "clips": [0] * N}, "either"),
        ({"clip_index": 0}, "unknown reset option"),
    ],
)
def test_bad_reset_options_raise(options: dict[str, Any], match: str) -> None:
    env = make_native()
    with pytest.raises(ValueError, match=match):
        env.reset(options=options)


def test_bad_batched_actions_raise() -> None:
    env = make_native()
    env.reset(seed=0)
    good = np.full((N, 4, T_SHORT), 0.5, np.float32)
    with pytest.raises(ValueError, match=rf"shape \({N}, 4, {T_SHORT}\)"):
        env.step(good[:-1])
    bad = good.copy()
    bad[3, 0, 0] = 1.5
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        env.step(bad)
    with pytest.raises(RuntimeError, match="reset"):
        make_native().step(good)


def test_infos_follow_the_vector_convention() -> None:
    env = make_native()
    _, info = env.reset(seed=0)
    _, _, _, _, step_info = env.step(batch_actions(env, 0))
    for d in (info, step_info, step_info["final_info"]):
        for key, value in d.items():
            if key.startswith("_"):
                continue
            assert f"_{key}" in d and d[f"_{key}"].dtype == np.bool_ and d[f"_{key}"].all()
            assert isinstance(value, dict) or len(value) == N
    fi = step_info["final_info"]
    assert {"clip_index", "clip_id", "proxy_score", "gold_score"} <= set(fi)
    assert any(k.startswith("gold/") for k in fi)
    assert fi["gold_score"].dtype == np.float64


def test_final_obs_is_the_scored_clip_and_obs_the_next() -> None:
    env = make_native()
    obs0, _ = env.reset(seed=0)
    obs1, _, _, _, info = env.step(batch_actions(env, 0))
    for i in range(N):
        np.testing.assert_array_equal(info["final_obs"][i], obs0[i])
        np.testing.assert_array_equal(obs1[i], env.dataset[int(info["clip_index"][i])])


def test_observations_are_served_from_the_cache() -> None:
    ds = TinyClips(num_clips=5)
    env = CQTMLVectorEnv(num_envs=N, dataset=ds, reward=ToyRewardModel())
    env.reset(seed=0)
    for s in range(6):
        env.step(np.full((N, 4, T_SHORT), 0.1 * (s % 5), np.float32))
    assert ds.loads <= 5  # each clip loaded at most once over 7 x 8 episodes


def test_vector_render() -> None:
    env = make_native(num_envs=2, render_mode="rgb_array")
    env.reset(seed=0)
    frames = env.render()
    assert isinstance(frames, tuple) and len(frames) == 2
    env.step(np.ones((2, 4, T_SHORT), np.float32))
    after = env.render()
    for f0, f1 in zip(frames, after):
        assert f1.dtype == np.uint8 and f1.ndim == 3 and f1.shape == f0.shape
    assert not np.array_equal(frames[0], after[0])


def test_vector_close_is_idempotent() -> None:
    env = make_native()
    env.reset(seed=0)
    env.close()
    env.close()
    assert env.closed


def test_reward_model_batch_matches_its_own_per_pair_scores() -> None:
    """The vector env's one-pass scoring (each distinct clip encoded once) must equal what
    RewardModel.score gives pair by pair."""
    rm_mod = pytest.importorskip("cqtml_env.reward.model")
    import torch

    torch.manual_seed(0)
    rm = rm_mod.RewardModel().eval()  # random weights: same code path as the shipped ones
    env = make_native(reward=rm)
    ds = env.dataset
    # groups of 4, groups of 2 with a clip in two groups, unequal runs, no runs, one clip
    for clips in ([0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 2, 2], [1, 1, 1, 2, 2, 2, 3, 3],
                  [5, 2, 7, 2, 0, 3, 3, 6], [4] * N):
        env.reset(options={"clips": clips})
        actions = batch_actions(env, sum(clips))
        _, rewards, _, _, _ = env.step(actions)
        expected = [float(rm.score(ds[c], actions[i][None])[0]) for i, c in enumerate(clips)]
        np.testing.assert_allclose(rewards, expected, rtol=1e-5, atol=1e-6)


def test_prefetch_fills_the_cache_and_rejects_overflow() -> None:
    env = make_native(cache_size=4)
    core = env.core
    calls: list[int] = []
    original = core.dataset.__getitem__.__func__ if hasattr(core.dataset.__getitem__, "__func__") else None
    env.prefetch([0, 1, 2])
    assert set(core._cache) == {0, 1, 2}
    if original is not None:  # afterwards, those observations are served without the data set
        core.dataset.__class__.__getitem__ = lambda self, i: calls.append(i) or original(self, i)
        try:
            env.reset(options={"clips": [0, 1, 2, 0, 1, 2, 0, 1]})
        finally:
            core.dataset.__class__.__getitem__ = original
        assert calls == []
    with pytest.raises(ValueError, match="cache_size"):
        env.prefetch([0, 1, 2, 3, 4])


def test_reward_model_encodings_are_cached_per_clip_until_its_weights_change() -> None:
    rm_mod = pytest.importorskip("cqtml_env.reward.model")
    import torch

    torch.manual_seed(0)
    rm = rm_mod.RewardModel().eval()
    encoded: list[int] = []
    original = rm.encode_clip

    def counting(cqt: Any) -> Any:
        encoded.append(int(cqt.shape[0]))
        return original(cqt)

    rm.encode_clip = counting
    env = make_native(reward=rm)
    ds = env.dataset
    clips = [5, 2, 7, 2, 0, 3, 3, 6]
    act = batch_actions(env, 0)
    for _ in range(2):
        env.reset(options={"clips": clips})
        before = env.step(act)[1]
    assert encoded == [1] * 6  # six distinct clips, each encoded alone and only once
    with torch.no_grad():
        rm.gate.add_(0.05)  # new weights: the cached encodings are stale
    env.reset(options={"clips": clips})
    after = env.step(act)[1]
    assert encoded == [1] * 12
    expected = [float(rm.score(ds[c], act[i][None])[0]) for i, c in enumerate(clips)]
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(after - before).max() > 1e-3


def _masked_equal(a: dict[str, Any], b: dict[str, Any], mask: np.ndarray) -> None:
    """Infos of a partial reset: equal on the reset sub-envs, which are the ones marked."""
    assert set(a) == set(b)
    for key in a:
        if key.startswith("_"):
            np.testing.assert_array_equal(a[key], mask, err_msg=key)
            np.testing.assert_array_equal(b[key], mask, err_msg=key)
        else:
            assert list(a[key][mask]) == list(b[key][mask]), key


def test_disabled_autoreset_matches_sync_vector_env() -> None:
    """autoreset_mode=DISABLED: step returns the scored episode (no next clips, no final_*),
    a second step before a reset raises, and reset_mask resets only the selected sub-envs,
    all as SyncVectorEnv does over the single env."""
    native = make_native(autoreset_mode="disabled")
    assert native.metadata["autoreset_mode"] is AutoresetMode.DISABLED
    assert type(native).metadata["autoreset_mode"] is AutoresetMode.SAME_STEP  # class default untouched
    sync = gym.make_vec("CQTML-v0", num_envs=N, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED}, **small_kwargs())
    on, _ = native.reset(seed=5)
    os_, _ = sync.reset(seed=5)
    np.testing.assert_array_equal(on, os_)
    actions = batch_actions(native, 0)
    rn, rs = native.step(actions), sync.step(actions)
    assert rn[0] is on  # the scored episode's observation: the one reset returned
    np.testing.assert_array_equal(rn[0], rs[0])
    np.testing.assert_allclose(rn[1], rs[1], atol=1e-6)
    assert rn[2].all() and not rn[3].any()
    assert "final_info" not in rn[4] and "gold_score" in rn[4]
    _assert_infos_equal(rn[4], rs[4])
    with pytest.raises(RuntimeError, match=r"DISABLED.*reset"):
        native.step(actions)

    mask = np.array([True, False, False, True, True, False, True, False])
    on2, in2 = native.reset(options={"reset_mask": mask})
    os2, is2 = sync.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(on2, os2)
    np.testing.assert_array_equal(on2[~mask], on[~mask])  # the others keep their clip
    assert on is not on2 and np.array_equal(rn[0], os_)  # the earlier arrays are not edited
    _masked_equal(in2, is2, mask)
    with pytest.raises(RuntimeError, match=r"sub-envs \[1, 2, 5, 7\]"):
        native.step(actions)
    native.reset(options={"reset_mask": ~mask})
    sync.reset(options={"reset_mask": ~mask})
    actions = batch_actions(native, 1)
    rn, rs = native.step(actions), sync.step(actions)
    np.testing.assert_allclose(rn[1], rs[1], atol=1e-6)
    _assert_infos_equal(rn[4], rs[4])


def test_reset_mask_in_same_step_mode_and_with_groups() -> None:
    env = make_native(group_size=2)
    _, info = env.reset(seed=0)
    before = info["clip_index"].copy()
    mask = np.array([False, False, True, True, False, False, False, False])
    obs, info = env.reset(options={"reset_mask": mask, "clips": [7] * N})
    assert list(info["clip_index"]) == [*before[:2], 7, 7, *before[4:]]
    np.testing.assert_array_equal(obs[2], env.dataset[7])
    _, info = env.reset(options={"reset_mask": mask})  # a drawn clip for the whole group
    assert info["clip_index"][2] == info["clip_index"][3]
    with pytest.raises(ValueError, match="whole groups"):
        env.reset(options={"reset_mask": np.array([True] + [False] * (N - 1))})
    env.step(batch_actions(env, 0))  # SAME_STEP: stepping never needs a reset


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        ([True] * N, "numpy bool array"),
        (np.ones(N, dtype=np.int64), "numpy bool array"),
        (np.ones(N - 1, dtype=np.bool_), r"shape \(8,\)"),
        (np.zeros(N, dtype=np.bool_), "at least one"),
    ],
)
def test_bad_reset_masks_raise(mask: Any, match: str) -> None:
    env = make_native()
    with pytest.raises(RuntimeError, match="first reset"):
        env.reset(options={"reset_mask": np.ones(N, dtype=np.bool_)})
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.reset(options={"reset_mask": mask})


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (AutoresetMode.DISABLED, AutoresetMode.DISABLED),
        ("Disabled", AutoresetMode.DISABLED),
        ("DISABLED", AutoresetMode.DISABLED),
        ("same_step", AutoresetMode.SAME_STEP),
    ],
)
def test_autoreset_mode_accepts_enum_value_and_name(mode: Any, expected: AutoresetMode) -> None:
    assert make_native(autoreset_mode=mode).metadata["autoreset_mode"] is expected


@pytest.mark.parametrize(("mode", "match"), [(AutoresetMode.NEXT_STEP, "every other step"), ("later", "one of")])
def test_unsupported_autoreset_modes_raise(mode: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_native(autoreset_mode=mode)
