"""Baselines (band follower, random), the small CNN's time resolution, load_policy, and the
package boundary (cqtml_policy never imports cqtml_env)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from cqtml_policy import BandFollowPolicy, RandomPolicy, TemporalCNNModel, load_policy
from cqtml_policy.baselines import FRAME_RATE, band_energy, band_slices

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cqt(n_bins: int = 84, frames: int = 216, level: float = 0.05) -> torch.Tensor:
    """A quiet background CQT ``[2, n_bins, frames]`` (below the noise floor)."""
    return torch.full((2, n_bins, frames), level)


def test_band_slices_follow_the_contract() -> None:
    assert band_slices(84, 4) == [(0, 21), (21, 42), (42, 63), (63, 84)]
    assert band_slices(10, 3) == [(0, 3), (3, 6), (6, 10)]
    cqt = torch.zeros(1, 2, 84, 5)
    cqt[:, 0, 21:42] = 0.8  # left channel only: band mean over both channels is 0.4
    assert torch.allclose(band_energy(cqt, 4)[0, :, 0], torch.tensor([0.0, 0.4, 0.0, 0.0]))


def test_band_follow_lights_the_right_device_and_stays_dark_in_silence() -> None:
    policy = BandFollowPolicy(num_devices=4, beat_flash=0.0)
    cqt = _cqt()
    cqt[:, :21, 60:120] = 0.7  # a bass note from frame 60 to 119
    acts = policy.activations(cqt[None])[0]
    assert acts[0, 70:120].min() > 0.9  # the bass light follows it, using the full range
    assert acts[0, :60].max() == 0 and acts[1:].max() == 0  # other bands and silence stay dark
    assert policy.activations(torch.zeros(1, 2, 84, 216)).max() == 0
    quiet = policy.activations(_cqt(level=0.1)[None])  # steady low hiss under the noise floor
    assert quiet.max() == 0


def test_band_follow_normalises_per_clip() -> None:
    policy = BandFollowPolicy(num_devices=4, beat_flash=0.0)
    loud, soft = _cqt(), _cqt()
    loud[:, :21, 60:120] = 0.8
    soft[:, :21, 60:120] = 0.45  # much quieter mix of the same music
    a_loud = policy.activations(loud[None])[0, 0]
    a_soft = policy.activations(soft[None])[0, 0]
    assert a_soft.max() > 0.9 and torch.allclose(a_loud, a_soft, atol=1e-4)


def test_band_follow_attack_is_faster_than_decay() -> None:
    policy = BandFollowPolicy(num_devices=4, beat_flash=0.0)
    cqt = _cqt()
    cqt[:, :21, 50:150] = 0.7
    a = policy.activations(cqt[None])[0, 0]
    rise = int((a[50:] >= 0.9).nonzero()[0]) + 1  # frames to cover 90 % of the step
    fall = int((a[150:] <= 0.1).nonzero()[0]) + 1
    assert rise <= math.ceil(0.05 * FRAME_RATE) + 1  # ~50 ms attack
    assert 0.2 * FRAME_RATE <= fall <= 0.4 * FRAME_RATE  # ~300 ms decay
    assert fall > 4 * rise


def test_band_follow_beat_flash_is_rate_limited() -> None:
    frames = 216
    cqt = _cqt(frames=frames)
    cqt[:, 21:, :] = 0.4  # a steady pad: the upper devices have nothing to follow
    for t in range(10, frames, 5):  # bass clicks every 5 frames: ~8.6 per second
        cqt[:, :21, t] = 0.9
    flashy = BandFollowPolicy(num_devices=4, beat_flash=0.5)
    plain = BandFollowPolicy(num_devices=4, beat_flash=0.0)
    from cqtml_policy.baselines import onset_strength, pick_beats

    beats = pick_beats(onset_strength(cqt[None]), 0.6, math.ceil(FRAME_RATE / 3.0))[0]
    assert 3 <= int(beats.sum()) <= math.ceil(frames / FRAME_RATE * 3)  # at most 3 per second
    gaps = beats.nonzero().flatten().diff()
    assert (gaps >= FRAME_RATE / 3.0).all()
    lit, flat = flashy.activations(cqt[None])[0], plain.activations(cqt[None])[0]
    assert (lit >= flat - 1e-6).all()
    assert flat[1:].max() == 0 and lit[1:].max() > 0.3  # flashes reach every device


def test_band_follow_is_deterministic_with_near_one_hot_log_probs() -> None:
    policy = BandFollowPolicy(num_devices=4, distribution_size=32)
    cqt = _cqt()
    cqt[:, 40:70, 30:200] = torch.linspace(0.3, 0.9, 170)
    acts, logp = policy.generate_actions(cqt[None], 4, return_log_probs=True)
    assert all(torch.equal(a, acts[0][0]) for a in acts[0])
    expected = policy.activations(cqt[None])[0]
    assert torch.allclose(acts[0][0], torch.round(expected * 31) / 31)
    own = policy.get_log_probabilities(cqt[None], [acts[0][0]])
    assert torch.allclose(logp[0], own.expand(4)) and -0.1 < own.item() < 0  # ~ log(1 - ε) * D*T
    other = acts[0][0].clone()
    other[0, 0] = 1.0 - other[0, 0]
    assert policy.get_log_probabilities(cqt[None], [other]).item() < own.item() - 5
    assert list(policy.parameters()) == []


def test_random_policy_is_uniform_and_seedable() -> None:
    states = torch.rand(3, 2, 24, 40)
    policy = RandomPolicy(num_devices=2, distribution_size=8, seed=5)
    acts = policy.generate_actions(states, 4)
    again = RandomPolicy(num_devices=2, distribution_size=8, seed=5).generate_actions(states, 4)
    assert all(torch.equal(x, y) for g, h in zip(acts, again) for x, y in zip(g, h))
    levels = torch.stack([torch.stack(g) for g in acts]) * 7
    assert set(levels.round().long().unique().tolist()) == set(range(8))
    logp = policy.get_log_probabilities(states, acts)
    assert torch.allclose(logp, torch.full((3, 4), -2 * 40 * math.log(8)))


def test_cnn_keeps_full_time_resolution_with_local_context() -> None:
    """Without the clip-level paths (per-clip input normalisation, clip context) the CNN is
    purely local in time; with them every frame also sees clip statistics."""
    torch.manual_seed(0)
    cnn = TemporalCNNModel.create_model(
        (2, 84, 216), device="cpu", relative_input=False, clip_context=False
    )
    x = torch.rand(1, 2, 84, 216)
    with torch.no_grad():
        base = cnn(x)
        bumped = x.clone()
        bumped[..., 100] = 1.0 - bumped[..., 100]
        changed = (cnn(bumped) - base).abs().amax(dim=(0, 1, 3)) > 1e-6
    idx = changed.nonzero().flatten()
    assert base.shape == (1, 4, 216, 32)
    assert changed[100] and changed[95] and changed[105]  # context spans neighbouring frames
    assert idx.min() >= 100 - 20 and idx.max() <= 100 + 20  # but stays local (~±0.4 s)
    assert sum(p.numel() for p in cnn.parameters()) < 300_000


@pytest.mark.parametrize("kind", ["cnn", "band_follow", "random"])
def test_load_policy_returns_the_saved_kind(kind: str, tmp_path) -> None:
    torch.manual_seed(0)
    policy = {
        "cnn": lambda: TemporalCNNModel.create_model((2, 24, 40), 2, 8, device="cpu", hidden=32),
        "band_follow": lambda: BandFollowPolicy(2, 8, gain=1.2, decay_s=0.2),
        "random": lambda: RandomPolicy(2, 8, seed=3),
    }[kind]()
    policy.save_pretrained(tmp_path)
    loaded = load_policy(tmp_path, device="cpu")
    assert type(loaded) is type(policy) and loaded.get_config() == policy.get_config()
    x = torch.rand(2, 2, 24, 40)
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.greedy_actions(x), policy.greedy_actions(x))
    )
    files = {p.suffix for p in tmp_path.iterdir()}
    assert files <= {".json", ".safetensors"}  # never pickle


def test_load_policy_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_policy(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "transformer-xl", "config": {}}')
    with pytest.raises(ValueError, match="unknown model_type"):
        load_policy(tmp_path)
    RandomPolicy(2, 8).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="load_policy"):
        TemporalCNNModel.from_pretrained(tmp_path)


def test_policy_package_never_imports_the_env() -> None:
    code = (
        "import sys, cqtml_policy as P\n"
        "for name in P.__all__: getattr(P, name)\n"
        "import cqtml_policy.sb3, cqtml_policy.int8\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'cqtml_env')\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cnn_clip_context_lets_every_frame_see_the_whole_clip():
    """With clip_context, a change at the end of the clip reaches the first frame's
    distribution (auto-gain needs it); without it, context is local (±17 frames)."""
    import torch

    from cqtml_policy import TemporalCNNModel

    torch.manual_seed(0)
    x = torch.rand(1, 2, 24, 120)
    y = x.clone()
    y[..., 100:] = 1.0  # far beyond the local receptive field of frame 0
    for ctx in (True, False):
        m = TemporalCNNModel.create_model((2, 24, 120), num_devices=2, distribution_size=8, device="cpu",
                                         clip_context=ctx, relative_input=False)
        if ctx:  # zero-initialised branch: give it weights so it carries information
            torch.nn.init.normal_(m.backbone.context.proj.weight, std=0.1)
        with torch.no_grad():
            d = (m(x)[:, :, 0] - m(y)[:, :, 0]).abs().max().item()
        assert (d > 1e-5) if ctx else (d == 0.0), (ctx, d)
    saved = TemporalCNNModel.create_model((2, 24, 120), device="cpu", clip_context=False).get_config()
    assert saved["clip_context"] is False


def test_cnn_relative_input_is_invariant_to_recording_level():
    """The per-clip normalised channels are the same for the same music played quieter."""
    from cqtml_policy.inputs import clip_relative

    torch.manual_seed(0)
    x = torch.rand(2, 2, 24, 100) * 0.5 + 0.4
    assert torch.allclose(clip_relative(x), clip_relative(x - 0.3), atol=1e-5)  # quieter
    assert torch.allclose(clip_relative(x), clip_relative(x * 0.5 + 0.1), atol=1e-5)  # compressed
    assert (clip_relative(x) - clip_relative(x**3)).abs().max() > 0.1  # a different picture
    r = clip_relative(x)
    assert r.shape == x.shape and r.min() >= -1 and r.max() <= 2
