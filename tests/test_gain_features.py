"""``cnn-gain`` / ``vit-gain``: cnn-beat / vit-beat plus each device band's level through a
per-band auto-gain and its rise (``inputs.GainFeatures``). The level curve is the gold-v5
target's bed before its follower, so a student of that target no longer has to estimate each
band's floor and ceiling; cnn-beat and vit-beat configs load unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_cnn_beat_features import assert_vit_kind_adds_curves, periodic_cqt
from test_cnn_pulse_features import assert_cnn_kind_adds_curves

from cqtml_env import CQTProcessor, GoldScorer
from cqtml_policy import registry
from cqtml_policy.inputs import GainFeatures


def swelling_cqt(proc: CQTProcessor) -> np.ndarray:
    """A bass note swelling over the clip, a pad fading, hi-hat ticks: every band moves."""
    sr, n = proc.sample_rate, proc.num_samples
    t = np.arange(n) / sr
    audio = 0.3 * (t / t[-1]) * np.sin(2 * np.pi * 55 * t)
    audio += 0.2 * (1 - t / t[-1]) * np.sin(2 * np.pi * 440 * t)
    rng = np.random.default_rng(0)
    for start in np.arange(0.2, t[-1] - 0.1, 0.25):
        i = int(start * sr)
        audio[i : i + 400] += 0.3 * rng.standard_normal(400) * np.exp(-np.arange(400) / 80)
    audio = audio.astype(np.float32)
    return np.asarray(proc(np.stack([audio, audio])), dtype=np.float32)


def test_level_curve_is_the_gold_v5_bed_before_its_follower():
    proc = CQTProcessor(max_duration=5.0)
    cqt = swelling_cqt(proc)
    # gold-v5 with its follower and both kinds of punch off: its target is the bed itself
    gold = GoldScorer(num_devices=4, version="gold-v5", frame_rate=proc.frame_rate,
                      target_decay_s=0.0, target_attack_s=0.0, punch_decay_s=0.0,
                      beat_punch_level=0.0)
    bed = gold.features(cqt).target
    out = GainFeatures(4)(torch.as_tensor(cqt)[None])[0].numpy()
    assert out.shape == (8, proc.num_frames)
    level, rise = out[0::2], out[1::2]
    np.testing.assert_allclose(level, bed, atol=1e-5)
    assert level.min() >= 0.0 and level.max() <= 1.0
    assert (np.abs(level.max(axis=1) - 1.0) < 1e-6).sum() >= 2  # moving bands reach full
    assert (level == 0.0).mean(axis=1).min() >= 0.04  # each band's floor is dark
    prev = np.concatenate([np.zeros((4, 1), np.float32), level[:, :-1]], axis=1)
    np.testing.assert_allclose(rise, np.maximum(level - prev, 0.0), atol=1e-6)


def test_gain_makes_a_quiet_recording_look_like_a_loud_one():
    """Per-band auto-gain: the same music 8 dB louder (0.1 of the CQT's 80 dB range) gives
    the same curves, once both are above the gate."""
    proc = CQTProcessor(max_duration=5.0)
    cqt = torch.as_tensor(swelling_cqt(proc))[None]
    assert float(cqt.max()) < 0.9  # no bin clips at full scale when raised
    gain = GainFeatures(4, gate=0.0)
    quiet, loud = gain(cqt), gain(cqt + 0.1)
    assert float(quiet[:, 0::2].amax()) == pytest.approx(1.0)
    assert float((loud - quiet).abs().max()) < 1e-4
    gated = GainFeatures(4, gate=0.5)(cqt)  # a gate above the floor: more of the clip is dark
    assert float((gated[:, 0::2] == 0).float().mean()) > float((quiet[:, 0::2] == 0).float().mean())


def test_silence_steady_gate_rows_and_bad_arguments():
    gain = GainFeatures(4)
    assert float(gain(torch.zeros(1, 2, 84, 216)).abs().max()) == 0.0  # silence: dark
    assert float(gain(torch.full((1, 2, 84, 216), 0.8)).abs().max()) == 0.0  # steady: its floor
    assert float(gain(torch.rand(1, 2, 84, 216) * 0.14).abs().max()) == 0.0  # under the gate
    torch.manual_seed(0)
    x = torch.rand(3, 2, 84, 216)
    both = gain(x)
    assert torch.equal(gain(x[1:2]), both[1:2])  # rows are independent
    with pytest.raises(ValueError, match="floor < ceiling"):
        GainFeatures(4, floor=0.9, ceiling=0.5)
    with pytest.raises(ValueError, match="num_bands"):
        GainFeatures(0)


def test_cnn_gain_builds_saves_loads_and_cnn_beat_configs_stay(tmp_path):
    assert_cnn_kind_adds_curves("cnn-gain", "cnn-beat", "gain_features", 8, 120, tmp_path)
    cfg = registry.create_policy("cnn-gain", (2, 84, 120), device="cpu").get_config()
    assert cfg["beat_features"] and cfg["pulse_features"]


def test_vit_gain_adds_the_gain_curves_to_vit_beat(tmp_path):
    assert_vit_kind_adds_curves("vit-gain", "vit-beat", "gain_features", 6, periodic_cqt(120, bins=24),
                                tmp_path)
