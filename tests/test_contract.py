"""One contract per package, and every component takes the frame rate from the CQT it scores.

The defects these tests pin down: at hop 256 (86.1 frames/s) the gold scorer used to assume
43.07 frames/s, so a 5 Hz strobe got a perfect flicker score; the device-band formula was
written in three places; the evaluator ignored its own ``num_devices`` and reward model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import cqtml_env.contract as env_contract
import cqtml_policy.contract as policy_contract
from cqtml_env import CQTProcessor, GoldScorer
from cqtml_env.env.core import CQTMLCore
from cqtml_env.reward.model import RewardModel, RewardModelConfig


def test_the_two_packages_hold_the_same_contract() -> None:
    fields = [f.name for f in dataclasses.fields(env_contract.Contract)]
    assert fields == [f.name for f in dataclasses.fields(policy_contract.Contract)]
    assert env_contract.Contract().to_dict() == policy_contract.Contract().to_dict()
    for name in ("SAMPLE_RATE", "HOP_LENGTH", "N_BINS", "MAX_DURATION", "DEFAULT_FRAME_RATE",
                 "DEFAULT_NUM_DEVICES", "DEFAULT_LEVELS"):
        assert getattr(env_contract, name) == getattr(policy_contract, name), name
    for n_bins in (4, 12, 48, 84, 85, 100):
        for d in range(1, 5):
            assert env_contract.device_bands(n_bins, d) == policy_contract.device_bands(n_bins, d)
    for k in (2, 5, 32):
        np.testing.assert_array_equal(env_contract.level_grid(k), policy_contract.level_grid(k))
    x = np.linspace(0, 1, 97, dtype=np.float32)
    np.testing.assert_array_equal(env_contract.quantise(x, 7), policy_contract.quantise(x, 7))


def test_contract_comes_from_the_processor() -> None:
    c = env_contract.Contract.from_processor(CQTProcessor(hop_length=256, max_duration=2.0), num_devices=3)
    assert c.frame_rate == 22050 / 256 and c.num_frames == CQTProcessor(hop_length=256, max_duration=2.0).num_frames
    assert c.obs_shape == (2, 84, c.num_frames) and c.action_shape == (3, c.num_frames)
    assert c.bands == [(0, 28), (28, 56), (56, 84)]
    assert c.frames(1.0) == 86 and c.frames(0.001) == 1
    assert env_contract.Contract.from_dict(c.to_dict()) == c
    assert CQTProcessor().frame_rate == env_contract.DEFAULT_FRAME_RATE


@pytest.mark.parametrize(
    "bad",
    [dict(frame_rate=0.0), dict(num_devices=0), dict(num_devices=85), dict(levels=1), dict(num_frames=0)],
)
def test_contract_rejects_impossible_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        env_contract.Contract(**bad)
    with pytest.raises(ValueError):
        policy_contract.Contract(**bad)


def _strobe(hz: float, frame_rate: float, frames: int, devices: int = 4) -> np.ndarray:
    t = np.arange(frames) / frame_rate
    on = (np.floor(t * hz * 2) % 2 == 0).astype(np.float32)  # hz full on/off cycles per second
    return np.repeat(on[None, None], devices, axis=1)


@pytest.mark.parametrize("hop", [512, 256])
def test_gold_flicker_of_a_5hz_strobe_does_not_depend_on_the_hop(hop: int) -> None:
    core = CQTMLCore(dataset="synthetic:1", cqt={"hop_length": hop, "max_duration": 3.0}, reward="gold")
    assert core.gold.config.frame_rate == core.processor.frame_rate == core.contract.frame_rate
    strobe = _strobe(5.0, core.processor.frame_rate, core.num_frames)
    flicker = core.score(np.array([0]), strobe).components["flicker"][0]
    # 5 flashes/s against a limit of 3: the same penalty at either frame rate (was 1.000 at hop 256)
    assert flicker < 0.6
    reference = CQTMLCore(dataset="synthetic:1", cqt={"max_duration": 3.0}, reward="gold")
    ref = reference.score(np.array([0]), _strobe(5.0, reference.processor.frame_rate, reference.num_frames))
    assert flicker == pytest.approx(ref.components["flicker"][0], abs=0.08)


def test_a_gold_scorer_at_the_wrong_frame_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="frames/s"):
        CQTMLCore(dataset="synthetic:1", cqt={"hop_length": 256, "max_duration": 1.0}, reward="gold",
                  gold=GoldScorer())


def test_gold_time_constants_scale_with_the_frame_rate() -> None:
    slow, fast = GoldScorer().config, GoldScorer(frame_rate=2 * env_contract.DEFAULT_FRAME_RATE).config
    assert slow.window_frames == (-1, 3) and fast.window_frames == (-2, 6)
    assert fast.sigma_frames == 2 * slow.sigma_frames
    assert fast.frames(slow.silence_release) == 2 * slow.silence_release


def test_reward_model_counts_flashes_over_one_second_of_its_frame_rate() -> None:
    """The model's flash window is one second at its configured frame rate; a model built for
    another rate is refused by the env instead of scoring with the wrong window."""
    import torch

    torch.manual_seed(0)
    fast = RewardModel(RewardModelConfig(frame_rate=2 * env_contract.DEFAULT_FRAME_RATE))
    slow = RewardModel(RewardModelConfig())
    slow.load_state_dict(fast.state_dict())
    cqt = torch.rand(1, 2, 84, 216)
    pulses = torch.zeros(1, 4, 216)
    pulses[..., ::8] = 1.0  # one-frame pulses: ~2.7 flashes per 43 frames, ~5.4 per 86
    enc_s, enc_f = slow.encode_clip(cqt), fast.encode_clip(cqt)
    # under the 3/s limit for the model at 43 frames/s, over it at 86 frames/s
    assert not torch.equal(slow.score_encoded(enc_s, pulses), fast.score_encoded(enc_f, pulses))
    steady = torch.full((1, 4, 216), 0.5)
    assert torch.equal(slow.score_encoded(enc_s, steady), fast.score_encoded(enc_f, steady))
    with pytest.raises(ValueError, match="frame_rate"):
        CQTMLCore(dataset="synthetic:1", cqt={"max_duration": 5.0}, reward=fast)


def test_old_reward_model_configs_load_at_the_default_frame_rate() -> None:
    cfg = RewardModelConfig.from_dict({"num_devices": 4, "n_bins": 84})
    assert cfg.frame_rate == env_contract.DEFAULT_FRAME_RATE
    assert RewardModel.load_default().config.frame_rate == env_contract.DEFAULT_FRAME_RATE


@pytest.mark.parametrize(
    "module",
    ["cqtml_env.contract", "cqtml_policy.contract", "cqtml_env.reward.protocol", "cqtml_env.reward.scoring"],
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
