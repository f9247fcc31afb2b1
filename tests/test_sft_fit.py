"""agents/sft.py's fit tools: ordinal soft level targets (``--level-sigma``) and the held-out
fit report (``--eval-every``: cross-entropy, exact levels, the show's movement, normalised gold)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents import sft


def _peaked(index: int, levels: int = 32) -> torch.Tensor:
    """Log-probabilities ``[1, 1, 1, K]`` with almost all mass on ``index``."""
    logits = torch.full((1, 1, 1, levels), -20.0)
    logits[..., index] = 0.0
    return torch.log_softmax(logits, -1)


def test_soft_level_targets_make_a_near_miss_cheaper_than_a_far_one():
    target = torch.tensor([[[10]]])
    near, far = _peaked(11), _peaked(20)
    # exact-class cross-entropy: every wrong level costs the same, the level grid's order is lost
    ce_near, _ = sft.sft_loss(near, target)
    ce_far, _ = sft.sft_loss(far, target)
    assert float(ce_near) == pytest.approx(float(ce_far))
    soft_near, _ = sft.sft_loss(near, target, level_sigma=1.5)
    soft_far, _ = sft.sft_loss(far, target, level_sigma=1.5)
    assert float(soft_near) < float(soft_far) - 2.0
    # the soft target is a distribution peaked on the teacher's level, truncated at the grid ends
    q = sft.soft_level_targets(torch.tensor([0, 10, 31]), 32, 1.5)
    assert torch.allclose(q.sum(-1), torch.ones(3))
    assert q.argmax(-1).tolist() == [0, 10, 31]
    assert float(q[1, 9]) == pytest.approx(float(q[1, 11]))
    with pytest.raises(ValueError, match="sigma"):
        sft.soft_level_targets(torch.tensor([0]), 32, 0.0)


def test_the_best_soft_fit_is_the_teacher_s_level():
    # minimising the soft loss over a free categorical puts its mode on the teacher's level
    target = torch.tensor([[[7, 7, 7]]])
    logits = torch.zeros(1, 1, 3, 32, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(200):
        loss, _ = sft.sft_loss(torch.log_softmax(logits, -1), target, level_sigma=2.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, stats = sft.sft_loss(torch.log_softmax(logits, -1), target, level_sigma=2.0)
    assert stats["teacher_agreement"] == 1.0


def test_sft_reports_its_held_out_fit(tmp_path):
    torch.set_num_threads(1)
    args = sft.Args(policy="cnn", teacher="gold-target", data="synthetic:6", eval_clips=2,
                    max_duration=1.0, steps=20, batch_size=4, learning_rate=3e-3, log_every=10,
                    eval_every=10, level_sigma=1.5, run_dir=str(tmp_path / "sft"),
                    level_augment_db=0.0)
    run_dir = sft.train(args)
    evals = json.loads((run_dir / "eval.json").read_text())
    assert [e["step"] for e in evals] == [10, 20]
    keys = {"eval/sft_loss", "eval/teacher_agreement", "eval/teacher_level_mae", "eval/show_std",
            "eval/teacher_std", "eval/normalized_gold", "eval/teacher_normalized_gold"}
    for e in evals:
        assert keys <= set(e) and all(np.isfinite(e[k]) for k in keys)
        assert 0.0 <= e["eval/teacher_agreement"] <= 1.0
    # the teacher is the gold target itself: it beats the band-follower (normalised > 1)
    assert evals[-1]["eval/teacher_normalized_gold"] > 1.0
    assert evals[-1]["eval/teacher_std"] > 0.0
    trainer = json.loads((run_dir / "checkpoints" / "latest" / "trainer.json").read_text())
    assert trainer["extra"]["eval"]["step"] == 20


def test_rise_weights_mark_the_teachers_rises_and_weigh_the_loss():
    # levels: flat, a punch (0 -> 6), a slow climb by 1 step a frame (not a rise), a fall
    t = torch.tensor([[[0, 0, 6, 5, 4, 5, 6, 7, 2, 2]]])
    w = sft.rise_weights(t, 3.0, min_levels=2)
    assert w.shape == t.shape
    assert float(w.mean()) == pytest.approx(1.0)
    marked = (w[0, 0] > w[0, 0].min()).tolist()
    assert marked == [False, False, True, True, False, False, False, False, False, False]
    assert float(w[0, 0, 2] / w[0, 0, 0]) == pytest.approx(4.0)
    assert torch.allclose(sft.rise_weights(t, 0.0), torch.ones_like(w))
    with pytest.raises(ValueError, match="weight"):
        sft.rise_weights(t, -1.0)
    # a weighted loss is the weighted mean of the per-frame terms, for both loss kinds
    lp = torch.log_softmax(torch.randn(1, 1, 10, 32, generator=torch.Generator().manual_seed(0)), -1)
    for sigma in (0.0, 1.5):
        per = torch.stack([sft.sft_loss(lp[:, :, i : i + 1], t[:, :, i : i + 1], level_sigma=sigma)[0]
                           for i in range(10)])
        weighted, _ = sft.sft_loss(lp, t, level_sigma=sigma, weights=w)
        assert float(weighted) == pytest.approx(float((per * w[0, 0]).mean()), rel=1e-5)
        plain, _ = sft.sft_loss(lp, t, level_sigma=sigma)
        assert float(plain) == pytest.approx(float(per.mean()), rel=1e-5)


class _Clips:
    """A tiny CQT data set: clip i is a ramp over the bins, scaled by i (absolute dB scale)."""

    def __init__(self) -> None:
        from cqtml_env import CQTProcessor

        self.processor = CQTProcessor(max_duration=0.5)

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> np.ndarray:
        ramp = np.linspace(0.2, 0.9, 12, dtype=np.float32)[:, None] * (0.5 + 0.2 * i)
        return np.broadcast_to(ramp, (2, 12, 5)).copy()


def test_augmented_copies_keep_copy_zero_and_shift_the_others():
    from cqtml_env import LevelAugmented

    ds = _Clips()
    x = sft.augmented_copies(ds, [0, 2], copies=3, level_db=12.0, pitch_bins=2, seed=5)
    assert x.shape == (6, 2, 12, 5)
    # copy 0 is exactly what training used before copies existed
    plain = LevelAugmented(ds, 12.0, seed=5)
    assert np.array_equal(x[0], plain[0]) and np.array_equal(x[1], plain[2])
    # copies 1 and 2: a non-zero shift of 1..2 bins, silence shifted in, deterministic in the seed
    for row, i in ((2, 0), (3, 2), (4, 0), (5, 2)):
        copy = LevelAugmented(ds, 12.0, seed=5 + row // 2)[i]
        shifts = [s for s in (-2, -1, 1, 2) if np.array_equal(x[row], sft.shift_bins(copy, s))]
        assert len(shifts) == 1, row
        s = shifts[0]
        edge = x[row][:, :s] if s > 0 else x[row][:, s:]
        assert np.all(edge == 0.0)
    again = sft.augmented_copies(ds, [0, 2], copies=3, level_db=12.0, pitch_bins=2, seed=5)
    assert np.array_equal(x, again)
    assert not np.array_equal(x, sft.augmented_copies(ds, [0, 2], copies=3, level_db=12.0,
                                                      pitch_bins=2, seed=6))
    one = sft.augmented_copies(ds, [0, 1, 2], copies=1, level_db=0.0, pitch_bins=0, seed=0)
    assert np.array_equal(one, np.stack([ds[i] for i in range(3)]))
    with pytest.raises(ValueError, match="augment_copies"):
        sft.augmented_copies(ds, [0], copies=0, level_db=0.0, pitch_bins=0, seed=0)
