"""``cnn-pulse``: cnn-bands plus the clip's onset envelope and predominant local pulse
(``inputs.PulseFeatures``), a beat tracker's view over 3 s; cnn-bands configs load unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import find_peaks
from test_cnn_band_features import assert_round_trip_and_extra_inputs_used
from test_metrics import click_track

from cqtml_env import CQTProcessor
from cqtml_policy import load_policy, registry
from cqtml_policy.inputs import CurveFeatures, PulseFeatures, onset_envelope


@pytest.fixture(scope="module")
def proc() -> CQTProcessor:
    return CQTProcessor(max_duration=5.0)


def cqt_of(p: CQTProcessor, audio: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(p(audio)))[None]


@pytest.mark.parametrize("bpm", [100, 128, 170])
def test_pulse_peaks_on_the_clicks(proc, bpm):
    audio, times = click_track(proc, bpm=bpm, start=0.3)
    f = PulseFeatures(proc.frame_rate)(cqt_of(proc, audio))[0].numpy()
    assert f.shape == (3, proc.num_frames)
    assert f.min() >= 0.0 and f.max() <= 1.0 + 1e-6
    clicks = np.round(times * proc.frame_rate).astype(int)
    env_peaks = find_peaks(f[0], height=0.2)[0]
    assert env_peaks.tolist() == clicks.tolist()  # the onset envelope: on the click's frame
    pulse_peaks = find_peaks(f[1], height=0.3)[0]
    near = [int(np.min(np.abs(pulse_peaks - c))) for c in clicks]
    assert max(near) <= 2  # the pulse: within the metrics' +-50 ms of every click
    assert len(pulse_peaks) <= len(clicks) + 1  # and no peaks between them
    assert f[2].mean() > 0.4  # a clear tempo


def test_pulse_keeps_the_beat_where_a_click_is_missing(proc):
    """What the envelope alone cannot give: the beat goes on through a skipped click."""
    audio, times = click_track(proc, bpm=120, start=0.3)
    sr, gone = proc.sample_rate, times[5]
    i = int(round(gone * sr))
    audio[:, i : i + int(0.03 * sr)] = 0.0
    f = PulseFeatures(proc.frame_rate)(cqt_of(proc, audio))[0].numpy()
    frame = int(round(gone * proc.frame_rate))
    assert f[0, frame - 2 : frame + 3].max() < 0.1  # no onset there ...
    pulse_peaks = find_peaks(f[1], height=0.3)[0]
    assert np.min(np.abs(pulse_peaks - frame)) <= 2  # ... but a beat


def test_noise_has_a_weaker_pulse_than_a_click_track(proc):
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal((2, proc.num_samples)) * 0.1).astype(np.float32)
    clicks, _ = click_track(proc, bpm=120, start=0.3)
    pf = PulseFeatures(proc.frame_rate)
    s_noise = float(pf(cqt_of(proc, noise))[0, 2].mean())
    s_clicks = float(pf(cqt_of(proc, clicks))[0, 2].mean())
    assert s_noise < s_clicks - 0.2


def test_silence_and_an_excerpt_that_starts_loud():
    pf = PulseFeatures()
    silent = pf(torch.zeros(1, 2, 84, 60))
    assert torch.isfinite(silent).all() and float(silent.abs().max()) == 0.0
    loud = torch.full((1, 2, 84, 60), 0.8)
    assert float(onset_envelope(loud)[0].abs().max()) == 0.0  # a steady excerpt has no onset
    assert float(pf(loud).abs().max()) == 0.0


def test_rows_are_independent_and_short_clips_work():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 84, 37)  # shorter than the 3 s window
    pf = PulseFeatures()
    both = pf(x)
    assert both.shape == (3, 3, 37) and torch.isfinite(both).all()
    assert torch.allclose(pf(x[1:2]), both[1:2], atol=1e-6)
    with pytest.raises(ValueError, match="tempo_min"):
        PulseFeatures(tempo_min=200.0, tempo_max=60.0)
    with pytest.raises(ValueError, match="lag >= 1"):
        PulseFeatures(lag=0)
    with pytest.raises(ValueError, match="num_bands > 0, pulse, beat or gain_bands > 0"):
        CurveFeatures(0)


def assert_cnn_kind_adds_curves(kind: str, base: str, key: str, extra: int, frames: int,
                                tmp_path) -> None:
    """Registry CNN ``kind`` = ``base`` plus ``extra`` input curves switched on by config
    ``key``: ``base``'s configs lack the key (its checkpoints load unchanged), the projection
    takes ``extra`` more inputs, and the model round-trips with the curves in use.
    (Also used by test_cnn_beat_features.)"""
    torch.manual_seed(0)
    x = torch.rand(2, 2, 84, frames)
    pol = registry.create_policy(kind, (2, 84, frames), device="cpu").eval()
    cfg = pol.get_config()
    assert cfg[key] is True and cfg["band_features"] is True
    plain = registry.create_policy(base, (2, 84, frames), device="cpu")
    assert key not in plain.get_config()  # what the base kind's checkpoints hold
    assert pol.backbone.project.in_channels == plain.backbone.project.in_channels + extra
    with torch.no_grad():
        out = pol(x)
    assert out.shape == (2, 4, frames, 32)
    assert_round_trip_and_extra_inputs_used(pol, kind, x, out, tmp_path, extra=extra)


def test_cnn_pulse_builds_saves_loads_and_cnn_bands_configs_stay(tmp_path):
    assert_cnn_kind_adds_curves("cnn-pulse", "cnn-bands", "pulse_features", 3, 50, tmp_path)


def test_vit_pulse_adds_the_pulse_curves_to_vit_bands(tmp_path):
    from test_vit_small import SHAPE, tiny_vit

    torch.manual_seed(0)
    x = torch.rand(2, *SHAPE)
    pol, bands = tiny_vit("vit-pulse").eval(), tiny_vit("vit-bands")
    assert pol.get_config()["pulse_features"] is True
    assert "pulse_features" not in bands.get_config()  # vit-bands configs stay as they were
    per = pol.patch_size[1]
    assert pol.backbone.band_embed.in_features == bands.backbone.band_embed.in_features + 3 * per
    assert pol.frames.extra.in_channels == bands.frames.extra.in_channels + 3
    with torch.no_grad():
        out = pol(x)
    assert out.shape == (2, 3, SHAPE[-1], 8)
    pol.save_pretrained(tmp_path / "v")
    with torch.no_grad():
        assert torch.allclose(load_policy(tmp_path / "v", device="cpu").eval()(x), out, atol=1e-6)
    pol.train()
    pol(x).sum().backward()  # the pulse columns of the band embedding get gradient
    n = pol.backbone.band_features.out_features  # curves per frame, the pulse's 3 last
    grad = pol.backbone.band_embed.weight.grad.view(-1, per, n)
    assert float(grad[..., -3:].abs().sum()) > 0
    with pytest.raises(ValueError, match="needs band_features"):
        tiny_vit("vit-small", pulse_features=True)
