"""Gold scorer: each component on hand-built CQTs, orderings, degenerate inputs, batching."""

from __future__ import annotations

import numpy as np
import pytest

from cqtml_env.gold.scorer import COMPONENTS, GoldScorer, count_transitions, device_bands
from cqtml_env.preferences.candidates import smooth_attack_decay, smoothed_band_level

T = 216
FPS = 22050 / 512


def hand_cqt(seed: int = 0, silent_tail: bool = True) -> np.ndarray:
    """Notes in every band: sharp attack, exponential-ish decay, some silence at the end."""
    rng = np.random.default_rng(seed)
    cqt = np.zeros((2, 84, T), np.float32)
    for lo, hi in device_bands(84, 4):
        t = int(rng.integers(2, 8))
        while t < (170 if silent_tail else T - 5):
            length = int(rng.integers(8, 30))
            env = 0.55 + 0.4 * np.exp(-np.arange(length) / rng.uniform(4, 12))
            bins = rng.choice(np.arange(lo, hi), size=3, replace=False)
            stop = min(T, t + length)
            for b in bins:
                cqt[:, b, t:stop] = np.maximum(cqt[:, b, t:stop], env[: stop - t])
            t = stop + int(rng.integers(3, 12))
    return cqt


@pytest.fixture(scope="module")
def scorer() -> GoldScorer:
    return GoldScorer()


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return hand_cqt(0)


def test_device_bands_follow_contract():
    assert device_bands(84, 4) == [(0, 21), (21, 42), (42, 63), (63, 84)]
    assert device_bands(10, 3) == [(0, 3), (3, 6), (6, 10)]
    with pytest.raises(ValueError, match="num_devices"):
        device_bands(3, 4)


def test_features_find_the_notes(scorer, clip):
    f = scorer.features(clip)
    assert f.target.shape == (4, T) and f.target.min() >= 0 and f.target.max() <= 1
    for d, (lo, hi) in enumerate(device_bands(84, 4)):
        band = clip[0, lo:hi].max(axis=0)
        starts = np.flatnonzero((band[1:] > 0) & (band[:-1] == 0)) + 1
        if band[0] > 0:
            starts = np.r_[0, starts]
        found = f.onset_frames[d]
        # every note start is detected within one frame, and nothing else
        assert len(found) == len(starts)
        assert np.all(np.abs(found - starts) <= 1)
    assert f.silent[:, 205:].all() and not f.silent[:, :150].all()


def test_perfect_beats_delayed_beats_noise(scorer, clip):
    ideal = scorer.features(clip).target
    late2, late5 = np.roll(ideal, 2, axis=1), np.roll(ideal, 5, axis=1)
    noise = np.random.default_rng(1).random((4, T))
    acts = np.stack([ideal, late2, late5, noise])
    s = scorer.score(clip, acts)
    assert s[0] > s[1] > s[2] > s[3]
    comps = scorer.score_components(clip, acts)
    corr = comps["corr"].mean(axis=1)
    assert corr[0] > corr[1] > corr[2] > corr[3]
    onset = comps["onset"].mean(axis=1)
    assert onset[0] > onset[1] > onset[3] and onset[2] < 0.05  # 5 frames late is no response
    assert comps["level"][0].mean() == pytest.approx(1.0)
    assert comps["corr"][0].mean() == pytest.approx(1.0)


def test_band_follower_scores_well_but_below_ideal(scorer, clip):
    ideal = scorer.features(clip).target
    follower = smoothed_band_level(clip)
    noise = np.random.default_rng(2).random((4, T))
    s = scorer.score(clip, np.stack([ideal, follower, noise]))
    assert s[0] - s[1] > 0.03  # headroom for a learned policy
    assert s[1] - s[2] > 0.25


def test_strobe_loses_to_smooth_follower(scorer, clip):
    t = np.arange(T) / FPS
    strobe = np.tile((np.sin(2 * np.pi * 10 * t) > 0).astype(np.float32), (4, 1))
    smooth = smooth_attack_decay(scorer.features(clip).target, 0.5, 0.2)
    comps = scorer.score_components(clip, np.stack([strobe, smooth]))
    assert comps["flicker"][0].max() < 0.05 and comps["flicker"][1].min() > 0.95
    assert scorer.score(clip, strobe) < scorer.score(clip, smooth)


@pytest.mark.parametrize(
    ("hz", "penalised"), [(2.0, False), (3.0, False), (6.0, True), (10.0, True)]
)
def test_flicker_threshold_is_three_flashes_per_second(scorer, hz, penalised):
    t = np.arange(T) / FPS
    square = np.tile(((t * hz) % 1.0 < 0.5).astype(np.float32), (4, 1))
    silent = np.zeros((2, 84, T), np.float32)
    flicker = scorer.score_components(silent, square)["flicker"]
    assert (flicker.max() < 0.9) == penalised, flicker


def test_transitions_need_a_swing_of_020():
    t = np.arange(T)
    ripple = 0.5 + 0.09 * np.sign(np.sin(2 * np.pi * t / 4))  # 0.18 swings: never a flash
    assert count_transitions(ripple[None] - 0.5 + 0.5, 0.2)[0, 1:].sum() == 0
    square = (np.arange(40) // 5 % 2).astype(np.float32)  # 0,0,0,0,0,1,1,... 7 edges
    events = count_transitions(square[None], 0.2)[0]
    assert events.sum() == 7
    assert np.array_equal(np.flatnonzero(events), np.arange(5, 40, 5))


def test_darkness_in_silence_and_no_nan_on_silent_clip(scorer):
    silent = np.zeros((2, 84, T), np.float32)
    acts = np.stack([np.zeros((4, T)), np.ones((4, T)), np.full((4, T), 0.3)])
    comps = scorer.score_components(silent, acts)
    s = scorer.score(silent, acts)
    assert np.all(np.isfinite(s)) and all(np.all(np.isfinite(v)) for v in comps.values())
    assert comps["dark"][0].mean() == 1.0 and comps["dark"][1].mean() == 0.0
    assert s[0] > s[2] > s[1]


def test_dark_component_on_silent_tail(scorer, clip):
    ideal = scorer.features(clip).target
    glow = ideal.copy()
    glow[scorer.features(clip).silent] = 0.6
    comps = scorer.score_components(clip, np.stack([ideal, glow]))
    assert comps["dark"][0].mean() == 1.0 and comps["dark"][1].mean() == pytest.approx(0.4)


def test_constant_scores_poorly_on_range(scorer, clip):
    ideal = scorer.features(clip).target
    const = np.full((4, T), float(ideal.mean()))
    comps = scorer.score_components(clip, np.stack([ideal, const]))
    assert comps["range"][1].max() == 0.0 and comps["corr"][1].max() == 0.0
    assert comps["range"][0].min() == pytest.approx(1.0)
    assert all(np.all(np.isfinite(v)) for v in comps.values())


def test_spurious_flashes_cost_onset_precision(scorer, clip):
    ideal = scorer.features(clip).target
    extra = ideal.copy()
    f = scorer.features(clip)
    far = [t for t in range(10, 170, 7) if f.near_onset[0, t] < 0.01]
    extra[0, far] = 1.0  # single-frame flashes away from any onset
    comps = scorer.score_components(clip, np.stack([ideal, extra]))
    assert comps["onset"][0, 0] > comps["onset"][1, 0] + 0.1


def test_beat_flashes_beat_a_constant(scorer):
    processor = pytest.importorskip("cqtml_env.features.cqt").CQTProcessor()
    sr = processor.sample_rate
    audio = np.zeros(int(5 * sr), np.float32)
    click = np.exp(-np.arange(2000) / 300.0) * np.sin(2 * np.pi * 110 * np.arange(2000) / sr)
    beat_times = np.arange(0.25, 5.0, 0.5)
    for bt in beat_times:
        s = int(bt * sr)
        audio[s : s + 2000] += click[: len(audio) - s]
    cqt = processor(0.5 * audio)
    f = scorer.features(cqt)
    assert f.beat_frames.size >= 6
    pulses = np.zeros((4, T), np.float32)
    for b in f.beat_frames:
        pulses[:, b : b + 4] = 1.0
    comps = scorer.score_components(cqt, np.stack([pulses, np.full((4, T), 0.5)]))
    assert comps["beat"][0, 0] > 0.8 > 0.1 > comps["beat"][1, 0]
    # onsets of the band holding 110 Hz (A2 = bin 21) are found within two frames of the clicks
    onsets = f.onset_frames[1] * 512 / sr
    assert np.all(np.min(np.abs(onsets[:, None] - beat_times[None]), axis=1) < 2 * 512 / sr)


def test_scores_do_not_depend_on_batch(scorer, clip):
    rng = np.random.default_rng(3)
    acts = rng.random((50, 4, T)).astype(np.float32)
    acts[:10] = smoothed_band_level(clip)[None] * rng.uniform(0.5, 1, (10, 1, 1))
    full = scorer.score(clip, acts)
    assert np.allclose(full[:5], scorer.score(clip, acts[:5]))
    assert full[7] == pytest.approx(scorer.score(clip, acts[7]))
    assert full.shape == (50,) and full.min() >= 0 and full.max() <= 1


def test_components_and_weights(scorer, clip):
    comps = scorer.score_components(clip, np.random.default_rng(0).random((3, 4, T)))
    assert set(comps) == set(COMPONENTS)
    assert all(v.shape == (3, 4) and v.min() >= 0 and v.max() <= 1 for v in comps.values())
    assert sum(scorer.weights.values()) == pytest.approx(1.0)
    only_level = GoldScorer(weights={k: float(k == "level") for k in COMPONENTS})
    a = np.full((4, T), 0.2)
    assert only_level.score(clip, a) == pytest.approx(comps_level(clip, a))
    with pytest.raises(ValueError, match="unknown gold components"):
        GoldScorer(weights={"sparkle": 1.0})


def comps_level(cqt, a):
    return float(1 - np.abs(a - GoldScorer().features(cqt).target).mean())


@pytest.mark.parametrize(
    ("cqt_shape", "act_shape", "match"),
    [
        ((84, T), (4, T), r"\[2, n_bins, T\]"),
        ((2, 84, T), (3, T), r"\[N, 4, 216\]"),
        ((2, 84, T), (4, T - 1), r"\[N, 4, 216\]"),
    ],
)
def test_bad_shapes_raise(scorer, cqt_shape, act_shape, match):
    with pytest.raises(ValueError, match=match):
        scorer.score(np.zeros(cqt_shape, np.float32), np.zeros(act_shape, np.float32))


def test_bad_ranges_raise(scorer, clip):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scorer.score(clip, np.full((4, T), 1.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scorer.score(clip * 3, np.zeros((4, T)))
    with pytest.raises(ValueError, match="NaN"):
        scorer.score(clip, np.full((4, T), np.nan))


def test_torch_input_and_other_device_counts():
    torch = pytest.importorskip("torch")
    cqt = hand_cqt(1)
    s6 = GoldScorer(num_devices=6).score(torch.from_numpy(cqt), torch.rand(2, 6, T))
    assert s6.shape == (2,) and np.all(np.isfinite(s6))


# -- the vectorised scorer vs the per-clip reference ------------------------------------------
# A frozen copy of the per-clip scorer as it was before the multi-clip batch path: a per-frame
# hysteresis loop with separate high/low extremes, components one clip (and one device) at a
# time. The vectorised code must reproduce it.
def reference_count_transitions(actions: np.ndarray, swing: float) -> np.ndarray:
    shape = actions.shape
    a = actions.reshape(-1, shape[-1])
    n, t_len = a.shape
    hi = np.zeros(n, dtype=a.dtype)
    lo = np.zeros(n, dtype=a.dtype)
    direction = np.zeros(n, dtype=np.int8)
    events = np.zeros_like(a, dtype=bool)
    for t in range(t_len):
        x = a[:, t]
        hi = np.maximum(hi, x)
        lo = np.minimum(lo, x)
        up = (direction <= 0) & (x - lo >= swing)
        down = (direction >= 0) & (hi - x >= swing)
        both = up & down
        up &= ~both | (x >= hi)
        down &= ~up
        events[:, t] = up | down
        direction = np.where(up, 1, np.where(down, -1, direction)).astype(np.int8)
        hi = np.where(up, x, hi)
        lo = np.where(down, x, lo)
    return events.reshape(shape)


def reference_components(scorer: GoldScorer, a: np.ndarray, f) -> dict[str, np.ndarray]:
    from cqtml_env.gold.scorer import _shift, rise

    cfg = scorer.config
    n, d_count, t_len = a.shape
    y = f.target[None]
    out: dict[str, np.ndarray] = {}
    am = a - a.mean(axis=2, keepdims=True)
    ym = y - y.mean(axis=2, keepdims=True)
    sa = np.sqrt((am**2).mean(axis=2))
    sy = np.sqrt((ym**2).mean(axis=2))
    cov = (am * ym).mean(axis=2)
    ok = (sa > 1e-3) & (sy > 1e-3)
    out["corr"] = np.clip(np.where(ok, cov / np.maximum(sa * sy, 1e-12), 0.0), 0.0, 1.0)
    out["level"] = 1.0 - np.abs(a - y).mean(axis=2)
    r = rise(a)
    k0, k1 = cfg.onset_window
    offsets = np.arange(k0, k1 + 1)
    gk = np.exp(-(offsets.astype(np.float32) ** 2) / (2 * cfg.onset_sigma**2))
    events = (r >= cfg.rise_event) & (r >= _shift(r, 1, fill=-1.0)) & (r > _shift(r, -1, fill=-1.0))
    n_events = events.sum(axis=2)
    precision = np.where(
        n_events > 0, (events * f.near_onset[None]).sum(axis=2) / np.maximum(n_events, 1), 1.0
    )
    onset = np.empty((n, d_count), dtype=np.float64)
    for d in range(d_count):
        frames = f.onset_frames[d]
        if frames.size == 0:
            onset[:, d] = precision[:, d]
            continue
        raw = frames[:, None] + offsets[None, :]
        idx = np.clip(raw, 0, t_len - 1)
        valid = (raw >= 0) & (raw < t_len)
        ratio = np.clip(r[:, d][:, idx] / f.onset_jump[d][None, :, None], 0.0, 1.0)
        hit = (ratio * (gk[None, None, :] * valid[None])).max(axis=2)
        recall = hit.mean(axis=1)
        p = precision[:, d]
        onset[:, d] = 2 * p * recall / np.maximum(p + recall, 1e-9)
    out["onset"] = onset
    if f.beat_frames.size:
        m = rise(a.mean(axis=1))
        thr = cfg.rise_event / 2
        ev = (m >= thr) & (m >= _shift(m, 1, fill=-1.0)) & (m > _shift(m, -1, fill=-1.0))
        n_ev = ev.sum(axis=1)
        bp = np.where(n_ev > 0, (ev * f.near_beat[None]).sum(axis=1) / np.maximum(n_ev, 1), 1.0)
        idx = np.clip(f.beat_frames[:, None] + offsets[None, :], 0, t_len - 1)
        br = (np.clip(m[:, idx] / thr, 0, 1) * gk[None, None, :]).max(axis=2).mean(axis=1)
        out["beat"] = np.repeat((2 * bp * br / np.maximum(bp + br, 1e-9))[:, None], d_count, axis=1)
    else:
        out["beat"] = np.ones((n, d_count))
    trans = reference_count_transitions(a, cfg.flash_swing).astype(np.float32)
    win = max(1, int(round(cfg.frame_rate)))
    csum = np.concatenate([np.zeros((n, d_count, 1), np.float32), np.cumsum(trans, 2)], 2)
    lo = np.clip(np.arange(t_len) - win // 2, 0, t_len)
    hi = np.clip(lo + win, 0, t_len)
    flashes = (csum[..., hi] - csum[..., lo]) / 2.0
    lim = cfg.max_flashes_per_s
    out["flicker"] = 1.0 - np.clip((flashes - lim) / lim, 0.0, 1.0).mean(axis=2)
    n_silent = f.silent.sum(axis=1)
    lit = (a * f.silent[None]).sum(axis=2) / np.maximum(n_silent, 1)[None]
    out["dark"] = np.where(n_silent[None] > 0, 1.0 - lit, 1.0)
    sy_b = np.broadcast_to(sy, sa.shape)
    ratio = np.minimum(sa, sy_b) / np.maximum(np.maximum(sa, sy_b), 1e-9)
    flat = sy_b < cfg.range_floor
    out["range"] = np.where(flat, 1.0 - np.clip(sa / 0.1, 0.0, 1.0), ratio)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def click_cqt() -> np.ndarray:
    """A click track on 110 Hz: the one hand-built clip here with beats."""
    processor = pytest.importorskip("cqtml_env.features.cqt").CQTProcessor()
    sr = processor.sample_rate
    audio = np.zeros(int(5 * sr), np.float32)
    click = np.exp(-np.arange(2000) / 300.0) * np.sin(2 * np.pi * 110 * np.arange(2000) / sr)
    for bt in np.arange(0.25, 5.0, 0.5):
        s = int(bt * sr)
        audio[s : s + 2000] += click[: len(audio) - s]
    return processor(0.5 * audio)


def light_shows(scorer: GoldScorer, cqt: np.ndarray, seed: int) -> np.ndarray:
    """Hand-built and random light shows: strobes, steps, constants, dark, the target, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / FPS
    target = scorer.features(cqt).target
    row = lambda x: np.broadcast_to(np.asarray(x, np.float32), (4, T))  # noqa: E731
    shows = [
        target,
        np.roll(target, 2, axis=1),
        smoothed_band_level(cqt),
        row(np.zeros(T)),  # dark
        row(np.ones(T)),  # full on
        row(np.full(T, 0.5)),  # constant
        row((t * 10) % 1.0 < 0.5),  # 10 Hz strobe
        row(0.4 + 0.3 * ((t * 2) % 1.0 < 0.5)),  # 2 Hz strobe between 0.4 and 0.7
        row(t > 2.5),  # one step up
        row(np.where(t > 2.5, 0.15, 0.9)),  # step down
        row(0.5 + 0.1 * np.sign(np.sin(2 * np.pi * t * 8))),  # ripple below the 0.2 swing
        rng.random((4, T)),
        np.round(rng.random((4, T)) * 3) / 3,  # few levels: exact 0.2+ swings and ties
        rng.random((4, T)) ** 4,
        smooth_attack_decay(rng.random((4, T)).astype(np.float32), 0.6, 0.15),
    ]
    return np.stack(shows).astype(np.float32)


@pytest.fixture(scope="module")
def batch_clips() -> list[np.ndarray]:
    return [
        hand_cqt(0),
        hand_cqt(1, silent_tail=False),
        np.zeros((2, 84, T), np.float32),
        click_cqt(),
    ]


def test_count_transitions_matches_the_reference_loop(clip):
    rng = np.random.default_rng(5)
    shows = light_shows(GoldScorer(), clip, 0)
    cases = [
        shows,
        rng.random((64, 4, T)).astype(np.float32),
        (np.round(rng.random((32, 3, T)) * 5) / 5).astype(np.float64),  # exact-swing ties
        (np.round(rng.random((100, 3, T)) * 5) / 5).astype(np.float32),  # ties, >= 256 sequences
        rng.random((7, T)) ** 6,
        np.zeros((2, T), np.float32),
    ]
    for a in cases:
        for swing in (0.2, 0.05, 0.6):
            np.testing.assert_array_equal(
                count_transitions(a, swing), reference_count_transitions(a, swing)
            )
    assert count_transitions(shows, 0.2).sum() > 100  # the cases do have transitions
    with pytest.raises(ValueError, match=">= 0"):
        count_transitions(np.full((1, T), -0.1), 0.2)


def test_score_components_match_the_per_clip_reference(batch_clips):
    scorer = GoldScorer()
    for i, cqt in enumerate(batch_clips):
        acts = light_shows(scorer, cqt, i)
        ref = reference_components(scorer, acts, scorer.features(cqt))
        new = scorer.score_components(cqt, acts)
        assert set(new) == set(ref)
        for k in ref:
            assert new[k].shape == ref[k].shape
            np.testing.assert_allclose(new[k], ref[k], rtol=0, atol=1e-7, err_msg=f"clip {i} {k}")
    assert scorer.features(batch_clips[3]).beat_frames.size > 0  # the beat path is covered
    assert not scorer.features(batch_clips[2]).onset_frames[0].size  # and the no-onset path


def test_batch_over_many_clips_matches_per_clip_scoring(batch_clips):
    scorer = GoldScorer()
    rng = np.random.default_rng(7)
    feats, acts, ref = [], [], []
    for i, cqt in enumerate(batch_clips):
        a = light_shows(scorer, cqt, 10 + i)
        f = scorer.features(cqt)
        feats += [f] * len(a)
        acts.append(a)
        ref.append(reference_components(scorer, a, f))
    acts_all = np.concatenate(acts)
    perm = rng.permutation(len(acts_all))  # clips interleaved in any order
    got = scorer.score_components_batch(actions=acts_all[perm], features=[feats[j] for j in perm])
    for k in COMPONENTS:
        want = np.concatenate([r[k] for r in ref])[perm]
        np.testing.assert_allclose(got[k], want, rtol=0, atol=1e-7, err_msg=k)
    scores = scorer.score_batch(actions=acts_all[perm], features=[feats[j] for j in perm])
    np.testing.assert_allclose(scores, scorer.combine(got), rtol=0, atol=0)
    # CQTs instead of features: the same
    cqts = np.stack([batch_clips[j // len(acts[0])] for j in perm[:20]])
    by_cqt = scorer.score_components_batch(cqts, acts_all[perm[:20]])
    for k in COMPONENTS:
        np.testing.assert_array_equal(by_cqt[k], got[k][:20], err_msg=k)


def test_scores_are_exactly_batch_independent(batch_clips):
    scorer = GoldScorer()
    cqt = batch_clips[3]
    acts = light_shows(scorer, cqt, 3)
    full = scorer.score_components(cqt, acts)
    mixed = scorer.score_components_batch(
        actions=np.concatenate([acts[:5], light_shows(scorer, batch_clips[0], 4)[:3]]),
        features=[scorer.features(cqt)] * 5 + [scorer.features(batch_clips[0])] * 3,
    )
    for j in range(len(acts)):
        one = scorer.score_components(cqt, acts[j])
        for k in COMPONENTS:
            assert np.array_equal(one[k], full[k][j]), (j, k)
            if j < 5:
                assert np.array_equal(mixed[k][j], full[k][j]), (j, k)


def test_batch_api_rejects_bad_input(clip):
    scorer = GoldScorer()
    f = scorer.features(clip)
    acts = np.zeros((3, 4, T), np.float32)
    with pytest.raises(ValueError, match="B = 2"):
        scorer.score_components_batch(actions=acts, features=[f, f])
    with pytest.raises(ValueError, match="either"):
        scorer.score_components_batch(clip[None], acts[:1], features=[f])
    with pytest.raises(ValueError, match="cqts"):
        scorer.score_components_batch(actions=acts)
    with pytest.raises(ValueError, match="at least one"):
        scorer.score_components_batch(actions=acts[:0], features=[])
    short = scorer.features(np.zeros((2, 84, T - 1), np.float32))
    with pytest.raises(ValueError, match="same"):
        scorer.score_components_batch(actions=acts[:2], features=[f, short])
