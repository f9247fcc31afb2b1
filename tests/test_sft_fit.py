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
