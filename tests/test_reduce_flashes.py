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
