"""SB3 adapter: the vectorised distribution agrees with SB3's, and PPO runs, saves and loads
with CategoricalSB3Policy (CNN and ViT backbones) on a tiny stub env with the env's spaces."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.distributions import MultiCategoricalDistribution  # noqa: E402

from cqtml_policy import PolicyModel  # noqa: E402
from cqtml_policy.sb3 import CategoricalSB3Policy, FrameCategoricalDistribution  # noqa: E402

N_BINS, FRAMES, DEVICES, LEVELS = 24, 44, 2, 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class BandStubEnv(gym.Env):
    """One-step episodes: a random CQT; reward = -mean |activation - band energy|."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0.0, 1.0, (2, N_BINS, FRAMES), np.float32)
        self.action_space = spaces.MultiDiscrete([LEVELS] * DEVICES * FRAMES)
        self._obs = np.zeros(self.observation_space.shape, np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._obs = self.np_random.random(self.observation_space.shape, dtype=np.float32)
        return self._obs, {}

    def step(self, action):
        act = np.asarray(action).reshape(DEVICES, FRAMES) / (LEVELS - 1)  # row-major [D, T]
        bands = np.array_split(self._obs.mean(axis=0), DEVICES, axis=0)
        target = np.stack([b.mean(axis=0) for b in bands])
        return self._obs, float(-np.abs(act - target).mean()), True, False, {}


def test_distribution_matches_sb3_multicategorical() -> None:
    torch.manual_seed(0)
    batch, dims, bins = 5, 30, 6
    logits = torch.randn(batch, dims * bins)
    ours = FrameCategoricalDistribution(dims, bins).proba_distribution(logits)
    ref = MultiCategoricalDistribution([bins] * dims).proba_distribution(logits)
    actions = torch.randint(0, bins, (batch, dims))
    assert torch.allclose(ours.log_prob(actions), ref.log_prob(actions), atol=1e-5)
    assert torch.allclose(ours.log_prob(actions.float()), ref.log_prob(actions), atol=1e-5)
    assert torch.allclose(ours.entropy(), ref.entropy(), atol=1e-5)
    assert torch.equal(ours.mode(), ref.mode())
    sample = ours.sample()
    assert sample.shape == (batch, dims) and sample.dtype == torch.long
    assert sample.min() >= 0 and sample.max() < bins


def test_distribution_samples_follow_the_probabilities() -> None:
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    logits = probs.clamp_min(1e-12).log().repeat(4000, 1).view(1, -1)
    dist = FrameCategoricalDistribution(4000, 4).proba_distribution(logits)
    counts = torch.bincount(dist.sample().flatten(), minlength=4).float() / 4000
    assert counts[1] == 0  # zero-probability bins are never drawn
    assert torch.allclose(counts, probs, atol=0.03)


@pytest.mark.parametrize(
    ("backbone", "model_kwargs"),
    [("cnn", {"hidden": 32, "distribution_size": LEVELS}), ("vit", {"patch_size": 8})],
)
def test_ppo_runs_saves_and_loads(backbone: str, model_kwargs: dict, tmp_path) -> None:
    env = BandStubEnv()
    model = PPO(
        CategoricalSB3Policy,
        env,
        n_steps=8,
        batch_size=8,
        n_epochs=1,
        policy_kwargs=dict(backbone=backbone, model_kwargs=model_kwargs),
        seed=0,
        device="cpu",
    )
    assert isinstance(model.policy.action_dist, FrameCategoricalDistribution)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(total_timesteps=16)
    after = model.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # PPO updated the weights

    model.save(tmp_path / "ppo")
    loaded = PPO.load(tmp_path / "ppo", env=env, device="cpu")
    obs, _ = env.reset(seed=1)
    a1, _ = model.predict(obs, deterministic=True)
    a2, _ = loaded.predict(obs, deterministic=True)
    assert a1.shape == (DEVICES * FRAMES,) and np.array_equal(a1, a2)
    values = [m.policy.predict_values(torch.as_tensor(obs)[None]) for m in (model, loaded)]
    assert torch.allclose(values[0], values[1])

    # the actor is usable through the PolicyModel protocol, with the same greedy actions
    actor = loaded.policy.policy_model()
    assert isinstance(actor, PolicyModel)
    greedy = actor.greedy_actions(torch.as_tensor(obs)[None])[0]
    assert np.array_equal(torch.round(greedy * (LEVELS - 1)).long().flatten().numpy(), a2)


def test_policy_rejects_unsupported_spaces() -> None:
    obs = spaces.Box(0.0, 1.0, (2, N_BINS, FRAMES), np.float32)
    lr = lambda _: 1e-3  # noqa: E731
    with pytest.raises(ValueError, match="MultiDiscrete"):
        CategoricalSB3Policy(obs, spaces.Box(0.0, 1.0, (DEVICES, FRAMES), np.float32), lr)
    with pytest.raises(ValueError, match="num_devices"):
        CategoricalSB3Policy(obs, spaces.MultiDiscrete([LEVELS] * (DEVICES * FRAMES + 1)), lr)
    with pytest.raises(ValueError, match="backbone"):
        CategoricalSB3Policy(obs, spaces.MultiDiscrete([LEVELS] * DEVICES * FRAMES), lr, backbone="mlp")
    with pytest.raises(ValueError, match="distribution_size"):
        CategoricalSB3Policy(
            obs,
            spaces.MultiDiscrete([LEVELS] * DEVICES * FRAMES),
            lr,
            backbone="cnn",
            model_kwargs={"distribution_size": LEVELS + 1},
        )
    with pytest.raises(ValueError, match="net_arch"):
        CategoricalSB3Policy(obs, spaces.MultiDiscrete([LEVELS] * DEVICES * FRAMES), lr, net_arch=[64])
