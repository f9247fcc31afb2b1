"""Per-device terms of the reward model: zero at the start (the shipped scores, bit for bit),
old weights load, fine-tuned ones round-trip, stack into an ensemble and reach GRPO's path."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from cqtml_env import RewardModel, generate_preferences, make_dataset
from cqtml_env.reward.ensemble import stack_members
from cqtml_env.reward.model import DEVICE_TERMS, RewardModelConfig
from cqtml_env.safetensors_io import SafetensorsFileError

T = 120


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12)
    cqt = rng.random((2, 84, T), dtype=np.float32)
    acts = rng.random((4, 4, T), dtype=np.float32)
    acts[1] = np.clip(cqt.mean(0)[:4], 0, 1)
    return cqt, acts


def _perturb_device_terms(m: RewardModel, seed: int) -> RewardModel:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in DEVICE_TERMS:
            p = getattr(m, name)
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return m


def test_shipped_scores_are_pinned():
    # raw scores of the gold-v1 weights, computed before the per-device terms existed
    cqt, acts = _inputs()
    got = RewardModel.load_default("gold-v1").score(cqt, acts, calibrated=False)
    want = [-57.8303146362, -54.8704948425, -57.2948112488, -56.8637428284]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
    assert not any(RewardModel.load_default(v).config.device_terms for v in ("gold-v1", "gold-v5"))


def test_device_terms_start_at_zero_with_bit_identical_scores():
    base = RewardModel.load_default()
    dev = base.with_device_terms()
    assert dev.config.device_terms and not base.config.device_terms
    for name in DEVICE_TERMS:
        assert torch.count_nonzero(getattr(dev, name)) == 0
    cqt, acts = _inputs()
    assert np.array_equal(dev.score(cqt, acts, calibrated=False),
                          base.score(cqt, acts, calibrated=False))
    raw, frames = dev.score(cqt, acts, per_frame=True, calibrated=False)
    np.testing.assert_allclose(frames.mean(axis=(1, 2)), raw, rtol=1e-5, atol=1e-5)
    # they learn: every term gets a gradient at zero
    c, a = torch.from_numpy(cqt)[None], torch.from_numpy(acts)
    dev.train()
    (dev(c, a)[0] - dev(c, a)[1]).backward()
    for name in DEVICE_TERMS:
        assert torch.count_nonzero(getattr(dev, name).grad) > 0, name
    # and they make devices differ: a term on device 0 moves device 0's frames only
    moved = base.with_device_terms()
    with torch.no_grad():
        moved.device_bias[0].fill_(0.5)
    _, f0 = base.score(cqt, acts, per_frame=True, calibrated=False)
    _, f1 = moved.score(cqt, acts, per_frame=True, calibrated=False)
    assert not np.allclose(f0[:, 0], f1[:, 0])
    np.testing.assert_array_equal(f0[:, 1:], f1[:, 1:])


def test_old_weights_load_with_zero_device_terms_and_new_ones_round_trip(tmp_path):
    base = RewardModel.load_default()
    base.save_pretrained(tmp_path / "old")  # weights without the per-device tensors
    cfg = json.loads((tmp_path / "old" / "model.json").read_text())
    cfg["device_terms"] = True
    (tmp_path / "old" / "model.json").write_text(json.dumps(cfg))
    old = RewardModel.from_pretrained(tmp_path / "old")
    assert old.config.device_terms
    for name in DEVICE_TERMS:
        assert torch.count_nonzero(getattr(old, name)) == 0
    cqt, acts = _inputs()
    assert np.array_equal(old.score(cqt, acts), base.score(cqt, acts))
    # a fine-tuned model with non-zero terms round-trips exactly (safetensors + JSON)
    tuned = _perturb_device_terms(base.with_device_terms(), 0)
    assert not np.allclose(tuned.score(cqt, acts), base.score(cqt, acts))
    tuned.save_pretrained(tmp_path / "new")
    back = RewardModel.from_pretrained(tmp_path / "new")
    assert back.config.device_terms
    assert np.array_equal(back.score(cqt, acts), tuned.score(cqt, acts))
    # only the per-device tensors may be missing: any other missing tensor is still an error
    from safetensors.torch import load_file, save_file

    w = tmp_path / "new" / "model.safetensors"
    state = load_file(str(w))
    del state["frame_out.weight"]
    save_file(state, str(w))
    with pytest.raises(SafetensorsFileError, match="frame_out.weight"):
        RewardModel.from_pretrained(tmp_path / "new")


def test_stacked_members_with_device_terms_score_their_mean():
    base = RewardModel.load_default().with_device_terms()
    members = []
    for s in range(3):
        m = _perturb_device_terms(copy.deepcopy(base), s)
        with torch.no_grad():
            m.frame_mlp[0].weight.add_(0.1 * s)
        members.append(m)
    cqt, acts = _inputs()
    each = np.stack([m.score(cqt, acts, calibrated=False) for m in members])
    assert np.ptp(each, axis=0).min() > 1e-3
    stacked = stack_members(members)
    assert stacked.config.device_terms and stacked.device_in.shape[1] == 3 * base.config.hidden
    np.testing.assert_allclose(stacked.score(cqt, acts, calibrated=False), each.mean(0),
                               rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="per-device terms"):
        stack_members([members[0], RewardModel.load_default()])


def test_finetune_learns_device_terms_and_grpo_reward_path_loads_them(tmp_path, monkeypatch):
    import cqtml_env.reward.finetune as ft
    from cqtml_env.reward.scoring import load_reward

    root = tmp_path / "prefs"
    generate_preferences(make_dataset("synthetic:5"), root, num_clips=5, candidates_per_clip=4,
                         pairs_per_clip=4, progress=False)
    # the gold labels stand in for one person's, so the fine-tune has "human" labels
    monkeypatch.setattr(ft, "_person_rows", lambda ds, arr, base, person:
                        np.arange(len(arr.pairs)) + base)
    recipe = ft.FinetuneRecipe(epochs=3, patience=3, ensemble=2)
    model, _ = ft.finetune_reward_model([root], tmp_path / "ft", recipe=recipe, progress=False)
    assert model.config.device_terms
    assert any(torch.count_nonzero(getattr(model, n)) > 0 for n in DEVICE_TERMS)
    kind, rm = load_reward(str(tmp_path / "ft"))  # what agents/grpo.py --reward-model DIR does
    assert kind == "model" and rm.config.device_terms
    cqt, acts = _inputs()
    states = [rm.prepare(cqt)]
    got = rm.score_prepared(states, acts)
    np.testing.assert_allclose(got, model.score(cqt, acts), rtol=1e-5, atol=1e-6)
    off = ft.FinetuneRecipe(epochs=1, patience=1, ensemble=1, device_terms=False)
    plain, _ = ft.finetune_reward_model([root], tmp_path / "plain", recipe=off, progress=False)
    assert not plain.config.device_terms


def test_config_without_the_field_means_no_device_terms():
    cfg = RewardModelConfig.from_dict({"hidden": 4})
    assert not cfg.device_terms
    assert not any(hasattr(RewardModel(cfg), n) for n in DEVICE_TERMS)
