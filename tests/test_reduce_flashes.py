"""``reduce_flashes``: the offline flash reducer behind ``agents/sft.py --teacher-max-flashes``,
checked by two counters it does not share code with: agents/metrics.py's ``flash_count`` (the
issue's metric: changes / 2 in any 1 s) and the brute-force chain counter of the limiter tests
(all swings counted: ``dark`` above 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_show_limiter import FR, adversarial, max_flashes_per_window

from agents import sft
from agents.metrics import flash_count
from cqtml_env import SyntheticMusic
from cqtml_env.contract import level_grid
from cqtml_env.show import reduce_flashes


@pytest.mark.parametrize("name", list(adversarial(10, 1)))
def test_adversarial_inputs_end_flash_safe(name):
    x = adversarial(int(FR * 6), 4)[name]
    y = reduce_flashes(x, frame_rate=FR)
    assert y.shape == x.shape and y.dtype == np.float64
    assert np.all((y >= 0) & (y <= 1))
    assert flash_count(x, FR) > 3  # each input strobes ...
    assert flash_count(y, FR) <= 3  # ... and none does after
    for d in range(4):
        # within any 1 s: at most 6 changes, plus one that began before the window
        assert max_flashes_per_window(y[d], FR, dark=2.0) <= 4, (name, d)


def test_a_safe_show_is_returned_unchanged_and_the_input_untouched():
    t = np.arange(int(FR * 5))
    kicks = np.stack([0.1 + 0.8 * ((t + 7 * d) % 22 < 5) for d in range(4)])  # ~2 Hz
    assert flash_count(kicks, FR) <= 3
    before = kicks.copy()
    np.testing.assert_array_equal(reduce_flashes(kicks, frame_rate=FR), kicks)
    strobe = adversarial(216, 4)["strobe_10hz"]
    copy = strobe.copy()
    reduce_flashes(strobe, frame_rate=FR)
    np.testing.assert_array_equal(strobe, copy)
    np.testing.assert_array_equal(kicks, before)


def test_the_smallest_swings_go_first():
    t = np.arange(int(FR * 5))
    punches = 0.6 * (t % 22 < 4)  # 2 Hz, big
    ripple = 0.15 * (t % 4 < 2)  # ~11 Hz, small
    show = 0.2 + punches + ripple
    out = reduce_flashes(show, frame_rate=FR)
    assert out.ndim == 1 and flash_count(show, FR) > 3 >= flash_count(out, FR)
    np.testing.assert_array_equal(out >= 0.7, show >= 0.7)  # every punch frame stays a punch
    assert np.corrcoef(out, punches)[0, 1] > 0.95
    # a causal limiter, holding near its last extreme, keeps less of the punches
    from cqtml_env.show import limit_flashes

    held = limit_flashes(show[None], frame_rate=FR)[0]
    assert np.abs(out - show).mean() < np.abs(held - show).mean()


def test_max_flashes_and_threshold_are_honoured():
    x = adversarial(int(FR * 4), 1)["strobe_10hz"]
    one = reduce_flashes(x, frame_rate=FR, max_flashes=1)
    assert flash_count(one, FR) <= 1
    # 0.15 swings at 10 Hz are below a 0.2 threshold: untouched
    small = 0.4 + 0.15 * x
    np.testing.assert_array_equal(reduce_flashes(small, frame_rate=FR, threshold=0.2), small)
    assert flash_count(reduce_flashes(small, frame_rate=FR), FR) <= 3


@pytest.mark.parametrize("kwargs, match", [
    ({"intensities": np.zeros((1, 2, 3))}, "expected"),
    ({"frame_rate": 0.0}, "positive"),
    ({"max_flashes": 0}, "positive"),
    ({"threshold": 1.5}, "threshold"),
    ({"keep": 1.0}, "keep"),
])
def test_bad_arguments_are_named(kwargs, match):
    args = {"intensities": np.zeros((2, 10)), "frame_rate": FR} | kwargs
    with pytest.raises(ValueError, match=match):
        reduce_flashes(args.pop("intensities"), **args)


def test_gold_target_levels_with_max_flashes_are_flash_safe_on_the_grid():
    cqts = np.stack([SyntheticMusic(num_clips=12, seed=3)[i] for i in range(12)])
    kw = {"num_devices": 4, "levels": 32, "frame_rate": FR, "version": "gold-v5"}
    raw = sft.gold_target_levels(cqts, **kw)
    safe = sft.gold_target_levels(cqts, max_flashes=3, **kw)
    assert safe.dtype == torch.int64 and safe.shape == raw.shape
    grid = level_grid(32)
    before = [flash_count(grid[r.numpy()], FR) for r in raw]
    after = [flash_count(grid[s.numpy()], FR) for s in safe]
    assert max(before) > 3 and max(after) <= 3  # the levels, snapped to the grid, are safe
    for r, s, n in zip(raw, safe, before):
        if n <= 3:  # a target already safe is imitated as it is
            assert torch.equal(r, s)


def test_sft_records_teacher_max_flashes(tmp_path):
    torch.set_num_threads(1)
    args = sft.Args(policy="cnn", teacher="gold-target", gold_version="gold-v5", data="synthetic:4",
                    eval_clips=1, max_duration=1.0, steps=2, batch_size=2, log_every=1,
                    run_dir=str(tmp_path / "sft"), teacher_max_flashes=3)
    run_dir = sft.train(args)
    trainer = json.loads((run_dir / "checkpoints" / "final" / "trainer.json").read_text())
    assert trainer["extra"]["teacher_max_flashes"] == 3
    assert json.loads((run_dir / "args.json").read_text())["teacher_max_flashes"] == 3


def _reference(x: np.ndarray, frame_rate: float, max_flashes: int = 3, threshold: float = 0.1,
               keep: float = 0.5) -> np.ndarray:
    """reduce_flashes the slow way: the zig-zag recomputed (by its own loop) after each cut."""
    def zigzag(r):
        lo = hi = ext = d = 0
        pts, evs = [], []
        for t in range(1, len(r)):
            if d == 0:
                lo, hi = (t if r[t] < r[lo] else lo), (t if r[t] > r[hi] else hi)
                if r[t] - r[lo] >= threshold:
                    pts, evs, d, ext = pts + [lo], evs + [t], 1, t
                elif r[hi] - r[t] >= threshold:
                    pts, evs, d, ext = pts + [hi], evs + [t], -1, t
            elif (r[t] - r[ext]) * d > 0:
                ext = t
            elif (r[ext] - r[t]) * d >= threshold:
                pts, evs, d, ext = pts + [ext], evs + [t], -d, t
        return (pts + [ext] if evs else pts), evs

    y = np.array(x, dtype=np.float64)
    window = int(np.floor(frame_rate + 1e-9)) + 1
    for row in np.atleast_2d(y):
        while True:
            pts, evs = zigzag(row)
            crowded = [any(sum(1 for f in evs if s <= f < s + window) > 2 * max_flashes
                           for s in evs if s <= e < s + window) for e in evs]
            if not any(crowded):
                break
            best = min((min(abs(row[pts[i]] - row[pts[i - 1]]), abs(row[pts[i]] - row[pts[i + 1]])), i)
                       for i in range(1, len(pts) - 1) if crowded[i - 1] or crowded[i])[1]
            a, p, b = pts[best - 1], pts[best], pts[best + 1]
            if row[p] > row[a]:
                row[a : b + 1] = np.minimum(row[a : b + 1], max(row[a], row[b]) + keep * threshold)
            else:
                row[a : b + 1] = np.maximum(row[a : b + 1], min(row[a], row[b]) - keep * threshold)
    return y


def test_the_incremental_zigzag_matches_recomputing_it():
    rng = np.random.default_rng(7)
    t = np.arange(300)
    cases = [rng.random(300), np.round(rng.random(300) * 31) / 31,
             0.2 + 0.6 * (t % 22 < 4) + 0.15 * rng.random(300),
             np.clip(0.5 + np.cumsum(rng.normal(0, 0.08, 300)), 0, 1),
             0.4 + 0.3 * ((t // 3) % 2) + 0.05 * rng.random(300)]
    cases += [np.clip(rng.normal(0.5, s, 300), 0, 1) for s in (0.05, 0.1, 0.2)]
    # ties between neighbouring extremes (coarse levels, a strobe over equal floors)
    cases += [np.round(rng.random(300) * 4) / 4, np.round(rng.random(300) * 8) / 8,
              0.2 + 0.5 * ((t // 2) % 2) + 0.1 * ((t // 5) % 2)]
    for k, x in enumerate(cases):
        for mf in (1, 3):
            np.testing.assert_array_equal(reduce_flashes(x, frame_rate=FR, max_flashes=mf),
                                          _reference(x, FR, mf), err_msg=f"case {k}, {mf}")



@pytest.mark.parametrize("teacher, n", [("band-follow", 3), ("gold-target", -1)])
def test_sft_refuses_teacher_max_flashes_it_cannot_apply(tmp_path, teacher, n):
    args = sft.Args(policy="cnn", teacher=teacher, data="synthetic:2", steps=1,
                    run_dir=str(tmp_path / "sft"), teacher_max_flashes=n)
    with pytest.raises(ValueError, match="teacher-max-flashes"):
        sft.train(args)
    assert not (tmp_path / "sft").exists()  # refused before anything is written
