"""``cnn-bands``: the CNN with each device band's level, clip-relative level, loudness and onset
flux (``cnn.BandFeatures``) as extra per-frame inputs; old CNN configs load unchanged."""

from __future__ import annotations

import pytest
import torch

from agents.checkpoint import init_policy_from
from agents.common import make_policy
from cqtml_policy import load_policy, registry
from cqtml_policy.cnn import BandFeatures
from cqtml_policy.contract import device_bands


def test_band_features_follow_each_band_and_its_clip_level():
    torch.manual_seed(0)
    cqt = torch.rand(1, 2, 24, 40) * 0.1
    lo, hi = device_bands(24, 4)[2]
    cqt[0, 1, lo + 1, 20:] = 0.9  # a note enters band 2 at frame 20, right channel only
    f = BandFeatures(4)(cqt)
    assert f.shape == (1, 5 * 4, 40)
    level, rel, loud, flux, onset = (f[0, 5 * 2 + i] for i in range(5))
    assert level[25] > 0.3 > level[10]  # the band's top bins, channel max (mono)
    assert abs(float(rel[30])) < 0.05 and float(rel[10]) < -0.2  # relative to its 95th pct
    assert float(loud[30]) > 0.7 and float(loud[10]) < 0.3
    assert int(flux.argmax()) == 20 and abs(float(onset[20]) - 1.0) < 1e-6  # the clip's peak
    other = f[0, 0]  # band 0 did not change
    assert float(other[25] - other[10]).__abs__() < 0.1
    # a 6 dB-ish quieter copy: absolute level drops, the clip-relative picture does not move
    g = BandFeatures(4)(cqt * 0.5)
    assert torch.allclose(g[0, 5 * 2 + 4], onset, atol=1e-5)


def test_cnn_bands_builds_saves_and_loads_and_old_cnn_configs_stay(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(2, 2, 84, 50)
    pol = registry.create_policy("cnn-bands", (2, 84, 50), device="cpu").eval()
    assert pol.get_config()["band_features"] is True
    plain = registry.create_policy("cnn", (2, 84, 50), device="cpu")
    assert "band_features" not in plain.get_config()  # old configs are what plain CNNs write
    assert pol.backbone.project.in_channels == plain.backbone.project.in_channels + 20
    with torch.no_grad():
        out = pol(x)
    assert out.shape == (2, 4, 50, 32)
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 4, 50), atol=1e-4)
    assert_round_trip_and_extra_inputs_used(pol, "cnn-bands", x, out, tmp_path, extra=20)


def assert_round_trip_and_extra_inputs_used(pol, kind: str, x, out, tmp_path, extra: int) -> None:
    """A CNN of registry ``kind`` with ``extra`` input curves (the last of its projection's
    inputs): saved and loaded, and taken by a fresh ``--policy kind`` through GRPO's
    ``--init-from``, it gives ``out`` again; the curves carry gradient (used, not dropped).
    (Also used by test_cnn_pulse_features.)"""
    pol.save_pretrained(tmp_path / "p")
    back = load_policy(tmp_path / "p", device="cpu").eval()
    with torch.no_grad():
        assert torch.allclose(back(x), out, atol=1e-6)
    fresh = make_policy(kind, tuple(x.shape[1:]), 4, 32, device="cpu").eval()
    init_policy_from(fresh, tmp_path / "p", kind)
    with torch.no_grad():
        assert torch.allclose(fresh(x), out, atol=1e-6)
    pol.train()
    pol(x).sum().backward()
    w = pol.backbone.project.weight.grad
    assert w is not None and float(w[:, -extra:].abs().sum()) > 0


@pytest.mark.parametrize("name", ["cnn", "cnn-bands"])
def test_inference_layout_gives_the_training_layouts_numbers(name):
    """Without gradients the frequency stack runs its convolutions channels-last (faster on
    CPU); the log-probabilities must equal the default layout's, which training uses."""

    from cqtml_policy import create_policy

    torch.manual_seed(0)
    policy = create_policy(name, (2, 84, 216), num_devices=4, device="cpu").eval()
    for p in policy.parameters():  # non-zero FiLM etc., so every branch carries signal
        p.data.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(3, 2, 84, 300)
    with torch.no_grad():
        fast = policy(x)
    slow = policy(x).detach()  # gradients enabled: the default layout
    assert fast.shape == slow.shape
    assert torch.allclose(fast, slow, atol=1e-4, rtol=0)  # summation order only (a wrong layout: O(1))
