"""SB3 VecEnv adapter over the native vector env: SB3 step/reset semantics, seeds and options,
and PPO("MlpPolicy") running on it (continuous and discrete actions).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from test_env import T_SHORT, ToyRewardModel, small_kwargs

pytest.importorskip("stable_baselines3")

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import VecEnv, VecMonitor  # noqa: E402

from cqtml_env.adapters.sb3_vec_env import CQTMLSB3VecEnv  # noqa: E402
from cqtml_env.env.vector import CQTMLVectorEnv  # noqa: E402

N = 4


def make_adapter(num_envs: int = N, **over: Any) -> CQTMLSB3VecEnv:
    return CQTMLSB3VecEnv(gym.make_vec("CQTML-v0", num_envs=num_envs, **small_kwargs(**over)))


def test_adapter_is_an_sb3_vecenv_with_single_spaces() -> None:
    venv = make_adapter()
    assert isinstance(venv, VecEnv) and venv.num_envs == N
    assert venv.observation_space.shape == (2, 84, T_SHORT)
    assert venv.action_space.shape == (4, T_SHORT)
    assert venv.get_attr("render_mode") == [None] * N
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * N


def test_step_has_same_step_autoreset_and_terminal_observation() -> None:
    venv = make_adapter()
    venv.seed(3)
    obs = venv.reset()
    assert obs.shape == (N, 2, 84, T_SHORT) and obs.dtype == np.float32
    first_clips = [ri["clip_index"] for ri in venv.reset_infos]
    actions = np.full((N, 4, T_SHORT), 0.3, np.float32)
    obs2, rewards, dones, infos = venv.step(actions)
    assert rewards.dtype == np.float32 and rewards.shape == (N,)
    assert dones.all() and isinstance(infos, list) and len(infos) == N
    for i, info in enumerate(infos):
        np.testing.assert_array_equal(info["terminal_observation"], obs[i])
        assert info["clip_index"] == first_clips[i]
        assert info["proxy_score"] == pytest.approx(float(rewards[i]), abs=1e-6)
        assert 0.0 <= info["gold_score"] <= 1.0 and info["TimeLimit.truncated"] is False
        # the new observation belongs to the autoreset clip recorded in reset_infos
        np.testing.assert_array_equal(obs2[i], venv.venv.dataset[venv.reset_infos[i]["clip_index"]])


def test_seed_and_options_reach_the_vector_env() -> None:
    venv = make_adapter()
    native = CQTMLVectorEnv(num_envs=N, **small_kwargs())
    venv.seed(5)
    obs = venv.reset()
    ref, _ = native.reset(seed=[5 + i for i in range(N)])
    np.testing.assert_array_equal(obs, ref)
    venv.set_options({"clip": 2})
    venv.reset()
    assert [ri["clip_index"] for ri in venv.reset_infos] == [2] * N
    venv.set_options([{"clip": c} for c in (1, 1, 4, 4)])
    venv.reset()
    assert [ri["clip_index"] for ri in venv.reset_infos] == [1, 1, 4, 4]
    venv.set_options([{"clip": 1}, {"group_size": 2}, {}, {}])
    with pytest.raises(ValueError, match="options"):
        venv.reset()


def test_adapter_rejects_next_step_autoreset() -> None:
    sync = gym.make_vec("CQTML-v0", num_envs=2, vectorization_mode="sync", **small_kwargs())
    with pytest.raises(ValueError, match="SAME_STEP"):
        CQTMLSB3VecEnv(sync)


@pytest.mark.parametrize("action_bins", [None, 4])
def test_ppo_mlp_policy_runs_a_few_steps(action_bins: int | None) -> None:
    rm = ToyRewardModel()
    # SB3 builds one Categorical per MultiDiscrete dimension: keep that count small (2 x 44)
    devices = 4 if action_bins is None else 2
    kw = small_kwargs(reward=rm, action_bins=action_bins, num_devices=devices)
    venv = VecMonitor(CQTMLSB3VecEnv.make(num_envs=N, **kw))
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=4,
        batch_size=8,
        n_epochs=1,
        policy_kwargs={"net_arch": [16]},
        seed=0,
        device="cpu",
    )
    model.learn(total_timesteps=2 * N * 4)
    assert model.num_timesteps >= 2 * N * 4
    # every rollout step was one batched reward-model call for all N envs
    assert len(rm.calls) >= 8 and all(a[0] == N for _, a in rm.calls)
    assert len(model.ep_info_buffer) >= 2 * N * 4  # VecMonitor saw one-step episodes
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == ((N, 4, T_SHORT) if action_bins is None else (N, 2 * T_SHORT))
    venv.close()
