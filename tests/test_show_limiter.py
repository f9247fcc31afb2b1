"""The WCAG 2.3.1 flash limiter, checked by an independent flash counter written here.

The counter is a brute-force definition, not the limiter's detector: in every window of
1 s of frames it finds the longest chain of alternating changes (each at least
``threshold`` of full scale, with its darker state below ``dark``) by dynamic
programming, and counts ``ceil(changes / 2)`` flashes (a flash is a pair of opposing
changes; a lone change counts as one, to be strict).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cqtml_env.contract import DEFAULT_FRAME_RATE
from cqtml_env.show.limiter import FlashLimiter, limit_flashes

FR = DEFAULT_FRAME_RATE


def max_flashes_per_window(x: np.ndarray, frame_rate: float, threshold: float = 0.1,
                           dark: float = 0.8, window_s: float = 1.0) -> int:
    """Most flashes in any window of ``window_s`` (brute force, see module doc)."""
    x = np.asarray(x, dtype=np.float64)
    length = min(int(math.floor(window_s * frame_rate + 1e-9)) + 1, len(x))
    w = np.lib.stride_tricks.sliding_window_view(x, length)  # [windows, length]
    up = np.zeros(w.shape, int)  # longest chain ending at j whose last change is upward
    down = np.zeros(w.shape, int)
    for j in range(1, length):
        diff = w[:, j : j + 1] - w[:, :j]
        ok = np.minimum(w[:, :j], w[:, j : j + 1]) < dark
        rise = ok & (diff >= threshold - 1e-9)
        fall = ok & (-diff >= threshold - 1e-9)
        up[:, j] = np.where(rise.any(1), 1 + np.where(rise, down[:, :j], -1).max(1), 0)
        down[:, j] = np.where(fall.any(1), 1 + np.where(fall, up[:, :j], -1).max(1), 0)
    return int(math.ceil(max(up.max(), down.max()) / 2))


def test_counter_itself_counts_a_strobe():
    t = np.arange(int(FR * 3))
    strobe = ((t * 10 / FR * 2).astype(int) % 2).astype(float)  # 10 Hz on/off
    assert max_flashes_per_window(strobe, FR) >= 9
    assert max_flashes_per_window(np.full(200, 0.5), FR) == 0
    bright = 0.85 + 0.15 * (t % 2)  # both states above 0.8: not a flash
    assert max_flashes_per_window(bright, FR) == 0


def adversarial(num_frames: int, devices: int) -> dict[str, np.ndarray]:
    t = np.arange(num_frames)
    rng = np.random.default_rng(0)
    strobe10 = ((t * 20 / FR).astype(int) % 2).astype(float)
    return {
        "strobe_10hz": np.tile(strobe10, (devices, 1)),
        "alternating_0_1": np.tile((t % 2).astype(float), (devices, 1)),
        "noise": rng.random((devices, num_frames)),
        "anti_phase": np.stack([(t + d) % 2 for d in range(devices)]).astype(float),
        "staggered_4hz": np.stack([((t * 8 / FR + d / 2).astype(int) % 2) for d in
                                   range(devices)]).astype(float),
        "small_fast": 0.3 + 0.12 * (t % 2)[None].repeat(devices, 0),
    }


@pytest.mark.parametrize("name", list(adversarial(10, 1)))
def test_adversarial_inputs_never_exceed_three_flashes(name):
    x = adversarial(int(FR * 6), 4)[name]
    y = limit_flashes(x, frame_rate=FR)
    assert y.shape == x.shape and np.all((y >= 0) & (y <= 1))
    for d in range(4):
        assert max_flashes_per_window(y[d], FR) <= 3, (name, d)
    # the rig as a whole: its mean light changing by at least rig_threshold (0.5)
    assert max_flashes_per_window(y.mean(axis=0), FR, threshold=0.5) <= 3, (name, "rig mean")


def test_threshold_is_configurable_and_streaming_matches_one_shot():
    t = np.arange(int(FR * 4))
    x = (0.4 + 0.15 * ((t * 20 / FR).astype(int) % 2))[None]  # 0.15 steps at 10 Hz
    loose = limit_flashes(x, frame_rate=FR, threshold=0.2)
    np.testing.assert_allclose(loose, x)  # below a 0.2 threshold: untouched
    strict = limit_flashes(x, frame_rate=FR, threshold=0.1)
    assert max_flashes_per_window(strict[0], FR, threshold=0.1) <= 3
    assert not np.allclose(strict, x)
    lim = FlashLimiter(num_devices=1, frame_rate=FR)
    parts = np.concatenate([lim(x[:, s : s + 37]) for s in range(0, x.shape[1], 37)], axis=1)
    np.testing.assert_allclose(parts, strict)
    assert lim.report.frames == x.shape[1] and lim.report.frames_changed > 0


def test_frame_by_frame_blocks_and_one_shot_agree_exactly():
    """Every device busy and the rig rule firing: the same output however the frames come."""
    rng = np.random.default_rng(3)
    t = np.arange(int(FR * 6))
    room = (t // 3 % 2).astype(float)  # a room strobe on all devices, then noise
    x = np.where(t < FR * 3, room, rng.random((4, t.size)))
    x[1] = 1 - x[1]
    once = limit_flashes(x, frame_rate=FR)
    lim = FlashLimiter(num_devices=4, frame_rate=FR)
    parts, s = [], 0
    for k in [1, 1, 5, 64, 1, 200, 3]:
        parts.append(lim.step(x[:, s]).reshape(4, 1) if k == 1 else lim(x[:, s : s + k]))
        s += k
    parts.append(lim(x[:, s:]))
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), once)
    assert max_flashes_per_window(once.mean(axis=0), FR, threshold=0.5) <= 3
    assert all(max_flashes_per_window(row, FR, threshold=0.1) <= 3 for row in once)


def test_slow_show_passes_unchanged():
    t = np.arange(int(FR * 8)) / FR
    x = np.stack([0.5 + 0.5 * np.sin(2 * np.pi * 1.0 * t + d) for d in range(4)])  # 1 Hz
    np.testing.assert_allclose(limit_flashes(x, frame_rate=FR), x, atol=1e-12)


def test_band_follow_show_changes_little():
    """A good show (the band follower on a synthetic song) is barely touched."""
    torch = pytest.importorskip("torch")
    cqtml_policy = pytest.importorskip("cqtml_policy")
    from cqtml_env import CQTProcessor, SyntheticMusic

    proc = CQTProcessor()
    ds = SyntheticMusic(6, max_duration=proc.max_duration, seed=3)
    policy = cqtml_policy.BandFollowPolicy(num_devices=4, frame_rate=proc.frame_rate)
    states = [torch.as_tensor(ds[i]) for i in range(len(ds))]
    acts = policy.generate_actions(states, num_actions_per_state=1, temperature=0.0)
    x = np.concatenate([a[0].numpy() for a in acts], axis=1)
    y = limit_flashes(x, frame_rate=proc.frame_rate)
    mean_abs = float(np.abs(y - x).mean())
    corr = float(np.mean([np.corrcoef(x[d], y[d])[0, 1] for d in range(4)]))
    print(f"band-follow on SyntheticMusic: mean |change| {mean_abs:.4f}, correlation {corr:.4f}")
    assert mean_abs < 0.05 and corr > 0.9
    for d in range(4):
        assert max_flashes_per_window(y[d], FR) <= 3


def _kicks(hz: float, phases, seconds: float = 8.0) -> np.ndarray:
    """A decaying kick envelope at ``hz`` per device, each with its own phase (in beats)."""
    t = np.arange(int(FR * seconds)) / FR
    return np.stack([0.9 * np.exp(-8 * ((t * hz + p) % 1.0)) for p in phases])


@pytest.mark.parametrize("phases", [(0, 0, 0, 0), (0, 0.5, 0, 0.5), (0, 0.25, 0.5, 0.75)],
                         ids=["together", "kick-snare", "chase"])
def test_a_2hz_kick_across_devices_keeps_its_dynamics(phases):
    """A normal pumping show (2 flashes/s per device, in step, alternating or chasing, so
    the rig mean pumps at 2, 4 or 8 Hz with a smaller swing) passes untouched."""
    x = _kicks(2.0, phases)
    y = limit_flashes(x, frame_rate=FR)
    np.testing.assert_allclose(y, x, atol=1e-9)
    assert np.ptp(y[:, int(FR):], axis=1).min() > 0.85  # full swing kept on every device


@pytest.mark.parametrize("phases", [(0, 0, 0, 0), (0, 0.5, 0, 0.5)], ids=["together", "alt"])
def test_a_5hz_strobe_is_limited(phases):
    x = _kicks(5.0, phases)
    y = limit_flashes(x, frame_rate=FR)
    assert not np.allclose(y, x)
    for d in range(4):
        assert max_flashes_per_window(x[d], FR) > 3  # the input breaks the rule...
        assert max_flashes_per_window(y[d], FR) <= 3  # ...the output keeps it


def test_rig_rule_stops_a_room_strobe_spread_over_two_groups():
    """Two halves of the rig each flash twice a second (within the per-device rule),
    taking turns: the room as a whole strobes at 4 Hz, which the rig rule stops."""
    t = np.arange(int(FR * 6))
    period = FR / 4.0  # the room's strobe period, in frames
    phase = (t % period) / period
    on = (phase < 0.3).astype(float)
    group = (t // period).astype(int) % 2
    x = np.stack([on * (group == g) for g in (0, 0, 1, 1)])
    assert max(max_flashes_per_window(x[d], FR) for d in range(4)) <= 3
    assert max_flashes_per_window(x.mean(axis=0), FR, threshold=0.5) > 3
    per_device_only = limit_flashes(x, frame_rate=FR, rig_mean=False)
    np.testing.assert_allclose(per_device_only, x)
    y = limit_flashes(x, frame_rate=FR)
    assert max_flashes_per_window(y.mean(axis=0), FR, threshold=0.5) <= 3
    for d in range(4):
        assert max_flashes_per_window(y[d], FR) <= 3


def test_a_bright_flicker_is_limited_by_default_and_passes_wcags_screen_rule():
    """Lights count changes at any brightness (dark_level 1.0 by default): a 10 Hz flicker
    between 80 % and 100 % is held. WCAG's screen rule (dark_level 0.8) lets it through."""
    t = np.arange(int(FR * 4))
    bright = 0.8 + 0.2 * ((t // 2) % 2)  # ~10.8 Hz between 0.8 and 1.0
    x = np.tile(bright, (2, 1))
    lights = limit_flashes(x, frame_rate=FR)
    screens = limit_flashes(x, frame_rate=FR, dark_level=0.8)
    np.testing.assert_allclose(screens, x, atol=1e-12)  # not a general flash for WCAG
    for d in range(2):
        assert max_flashes_per_window(x[d], FR, dark=1.01) >= 9  # counted at any brightness
        assert max_flashes_per_window(lights[d], FR, dark=1.01) <= 3
