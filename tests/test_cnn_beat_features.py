"""``cnn-beat``: cnn-pulse plus the clip's tracked beats (``inputs.BeatFeatures``, librosa's
DP beat tracker on the onset envelope); the beats are the gold scorer's (gold-v5), so a student
of the gold-v5 target sees where the target's beat pulses fall; cnn-pulse configs load unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_cnn_pulse_features import assert_cnn_kind_adds_curves, cqt_of
from test_metrics import click_track

from cqtml_env import CQTProcessor, GoldScorer
from cqtml_policy import registry
from cqtml_policy.inputs import BeatFeatures


@pytest.fixture(scope="module")
def proc() -> CQTProcessor:
    return CQTProcessor(max_duration=5.0)


@pytest.mark.parametrize("bpm", [100, 128, 150])
def test_beats_fall_on_the_clicks_and_are_the_gold_scorers(proc, bpm):
    audio, times = click_track(proc, bpm=bpm, start=0.3)
    cqt = cqt_of(proc, audio)
    f = BeatFeatures(proc.frame_rate)(cqt)[0].numpy()
    assert f.shape == (2, proc.num_frames) and f.min() >= 0.0 and f.max() <= 1.0 + 1e-6
    beats = np.flatnonzero(f[0])
    assert set(np.unique(f[0])) == {0.0, 1.0}
    clicks = np.round(times * proc.frame_rate).astype(int)
    assert len(beats) >= len(clicks) - 2  # the tracker may trim an edge beat ...
    assert max(int(np.min(np.abs(clicks - b))) for b in beats) <= 1  # ... none off a click
    assert np.all(f[1][beats] > 0) and np.all(f[1][f[0] == 0] == 0) and f[1].max() == pytest.approx(1.0)
    gold = GoldScorer(num_devices=4, version="gold-v5", frame_rate=proc.frame_rate)
    assert beats.tolist() == gold.features(cqt[0].numpy()).beat_frames.tolist()


def test_weak_beats_weigh_less(proc):
    audio, times = click_track(proc, bpm=120, start=0.3)
    sr = proc.sample_rate
    soft = times[1::2]  # every other click at a quarter of the amplitude
    for t in soft:
        i = int(round(t * sr))
        audio[:, i : i + int(0.05 * sr)] *= 0.25
    f = BeatFeatures(proc.frame_rate)(cqt_of(proc, audio))[0].numpy()
    beats = np.flatnonzero(f[0])
    frames = np.round(soft * proc.frame_rate).astype(int)
    at_soft = [b for b in beats if np.min(np.abs(frames - b)) <= 1]
    at_loud = [b for b in beats if b not in at_soft]
    assert at_soft and at_loud
    assert f[1][at_soft].mean() < f[1][at_loud].mean() - 0.1


def test_silence_short_clips_rows_and_bad_arguments():
    bf = BeatFeatures()
    assert float(bf(torch.zeros(1, 2, 84, 216)).abs().max()) == 0.0  # silence: no beats
    assert float(bf(torch.full((1, 2, 84, 216), 0.8)).abs().max()) == 0.0  # steady: none
    torch.manual_seed(0)
    x = torch.rand(3, 2, 84, 216)
    both = bf(x)
    assert both.shape == (3, 2, 216) and torch.equal(bf(x[1:2]), both[1:2])
    assert float(bf(x[:, :, :, :40]).abs().max()) == 0.0  # under 2 s: no beats
    assert torch.equal(BeatFeatures(memo=0)(x), both) and torch.equal(bf(x), both)  # memo: same beats
    small = BeatFeatures(memo=2)
    small(x)
    assert len(small._memo) == 2  # bounded
    with pytest.raises(ValueError, match="lag >= 1"):
        BeatFeatures(lag=0)


def test_cnn_beat_builds_saves_loads_and_cnn_pulse_configs_stay(tmp_path):
    # 120 frames (> 2 s): the rows get beats, so the beat columns carry gradient
    assert_cnn_kind_adds_curves("cnn-beat", "cnn-pulse", "beat_features", 2, 120, tmp_path)
    assert registry.create_policy("cnn-beat", (2, 84, 120), device="cpu").get_config()["pulse_features"]


def periodic_cqt(frames: int, bins: int = 84, period: int = 12) -> torch.Tensor:
    """A quiet noise floor with a loud frame every ``period`` frames: beats to track."""
    torch.manual_seed(0)
    x = torch.rand(2, 2, bins, frames) * 0.1
    x[..., ::period] += 0.8
    return x


def assert_vit_kind_adds_curves(kind: str, base: str, key: str, extra: int, x, tmp_path):
    """Registry ViT ``kind`` = ``base`` plus ``extra`` band curves switched on by config ``key``
    (3 devices, 8 levels): ``base``'s configs lack the key, the band embedding takes ``extra``
    more curves per frame, the model round-trips, the new curves get gradient, and a ViT
    without band curves refuses the key. Returns the policy. (Also used by
    test_gain_features.)"""
    from cqtml_policy import load_policy

    shape = tuple(x.shape[1:])
    torch.manual_seed(0)
    pol = registry.create_policy(kind, shape, num_devices=3, distribution_size=8, device="cpu").eval()
    plain = registry.create_policy(base, shape, num_devices=3, distribution_size=8, device="cpu")
    assert pol.get_config()[key] is True
    assert key not in plain.get_config()  # the base kind's configs stay as they were
    per = pol.patch_size[1]
    assert pol.backbone.band_embed.in_features == plain.backbone.band_embed.in_features + extra * per
    with torch.no_grad():
        out = pol(x)
    assert out.shape == (x.shape[0], 3, x.shape[-1], 8)
    pol.save_pretrained(tmp_path / "v")
    with torch.no_grad():
        assert torch.allclose(load_policy(tmp_path / "v", device="cpu").eval()(x), out, atol=1e-6)
    pol.train()
    pol(x).sum().backward()  # the new columns of the band embedding get gradient
    n = pol.backbone.band_features.out_features
    grad = pol.backbone.band_embed.weight.grad.view(-1, per, n)
    assert float(grad[..., -extra:].abs().sum()) > 0
    with pytest.raises(ValueError, match="needs band_features"):
        registry.create_policy("vit-small", shape, device="cpu", **{key: True})
    return pol


def test_vit_beat_adds_the_beat_curves_to_vit_pulse(tmp_path):
    x = periodic_cqt(120, bins=24)
    assert bool((BeatFeatures()(x)[:, 0].sum(-1) >= 3).all())  # beats in both rows
    pol = assert_vit_kind_adds_curves("vit-beat", "vit-pulse", "beat_features", 2, x, tmp_path)
    assert pol.backbone.band_features.beat.segment == 120


def test_a_longer_input_is_tracked_one_clip_length_at_a_time():
    """A show feeds ``[window | song context]``: the window's beats must be the clip's."""
    x = periodic_cqt(216)[:1]
    torch.manual_seed(1)
    ctx = torch.rand(1, 2, 84, 150) * 0.9  # unrelated material after the window
    alone = BeatFeatures(segment=216)(x)
    joined = BeatFeatures(segment=216)(torch.cat([x, ctx], dim=-1))
    assert float(alone[0, 0].sum()) >= 5 and torch.equal(joined[..., :216], alone)
    whole = BeatFeatures()(torch.cat([x, ctx], dim=-1))  # no segments: one sequence
    assert whole.shape == joined.shape
    pol = registry.create_policy("cnn-beat", (2, 84, 216), device="cpu")
    assert pol.backbone.curves.beat.segment == 216
    with pytest.raises(ValueError, match="segment >= 0"):
        BeatFeatures(segment=-1)
