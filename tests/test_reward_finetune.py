"""The fine-tune recipe: a stacked ensemble that IS the members' mean, a canonical label order."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from cqtml_env import RewardModel, generate_preferences, make_dataset
from cqtml_env.preferences.store import PreferenceDataset
from cqtml_env.reward.ensemble import stack_members
from cqtml_env.reward.finetune import (
    FinetuneRecipe,
    canonical_order,
    combine_arrays,
    finetune_reward_model,
)
from cqtml_env.reward.model import TASTE_GOLD_VERSION


def _heads_perturbed(base: RewardModel, seed: int) -> RewardModel:
    m = copy.deepcopy(base)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name not in ("band_logits", "gate"):
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return m


def test_stacked_members_score_exactly_their_mean_and_round_trip(tmp_path):
    base = RewardModel.load_default()
    members = [_heads_perturbed(base, s) for s in range(3)]
    stacked = stack_members(members)
    assert stacked.config.hidden == 3 * base.config.hidden
    rng = np.random.default_rng(0)
    cqt = rng.random((2, base.config.n_bins, 90), dtype=np.float32)
    acts = rng.random((5, base.config.num_devices, 90), dtype=np.float32)
    each = np.stack([m.score(cqt, acts, calibrated=False) for m in members])
    assert np.ptp(each, axis=0).min() > 1e-3  # the members really differ
    np.testing.assert_allclose(stacked.score(cqt, acts, calibrated=False), each.mean(0),
                               rtol=1e-5, atol=1e-5)
    stacked.save_pretrained(tmp_path)  # an ordinary reward model: grpo --reward-model loads it
    back = RewardModel.from_pretrained(tmp_path)
    np.testing.assert_allclose(back.score(cqt, acts, calibrated=False), each.mean(0),
                               rtol=1e-5, atol=1e-5)
    moved = copy.deepcopy(members[1])
    with torch.no_grad():
        moved.gate.add_(0.1)
    with pytest.raises(ValueError, match="share the clip encoder"):
        stack_members([members[0], moved])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefs") / "s"
    generate_preferences(make_dataset("synthetic:6"), root, num_clips=6, candidates_per_clip=5,
                         pairs_per_clip=6, progress=False)
    return root


def test_canonical_order_ignores_how_labels_were_split_into_shards(store):
    arr = PreferenceDataset(store).load()
    # the same labels as shards would hold them: clip rows repeated, shows repeated, shards
    # in the other order, pairs shuffled within each, unused shows of other people between
    rng = np.random.default_rng(1)
    half = rng.permutation(len(arr.pairs))
    parts = []
    for rows in (half[len(half) // 2:], half[: len(half) // 2]):
        used = np.unique(arr.pairs[rows])
        pos = {int(c): i for i, c in enumerate(used)}
        clips = np.unique(arr.cand_clip[used])
        cpos = {int(c): i for i, c in enumerate(clips)}
        parts.append(replace(
            arr, cqt=arr.cqt[clips], cand_clip=np.array([cpos[int(c)] for c in arr.cand_clip[used]]),
            actions=arr.actions[used], gold=arr.gold[used], source=arr.source[used],
            pairs=np.vectorize(pos.get)(arr.pairs[rows]), label=arr.label[rows],
            labeller=arr.labeller[rows], clip_ids=[arr.clip_ids[c] for c in clips]))
    # another labeller's shows on the same clips, in pairs of no interest here
    other = replace(arr, pairs=arr.pairs[:0], label=arr.label[:0], labeller=arr.labeller[:0],
                    actions=255 - arr.actions)
    parts.insert(1, other)
    a, order_a = canonical_order(arr)
    b, order_b = canonical_order(combine_arrays(parts))
    assert a.clip_ids == b.clip_ids and len(a.clip_ids) == len(set(arr.clip_ids))
    for f in ("cqt", "cand_clip", "actions", "gold", "pairs", "label", "labeller"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    # each canonical pair row is the row it came from
    np.testing.assert_array_equal(a.label, arr.label[order_a])
    np.testing.assert_array_equal(a.actions[a.pairs[:, 0]], arr.actions[arr.pairs[order_a, 0]])


def test_finetune_ensemble_members_differ_and_the_model_is_their_mean(store, tmp_path,
                                                                      monkeypatch):
    # gold-labelled pairs relabelled as one person's, so the fine-tune has "human" labels
    import cqtml_env.reward.finetune as ft

    monkeypatch.setattr(ft, "_person_rows", lambda ds, arr, base, person:
                        np.arange(len(arr.pairs)) + base)
    recipe = FinetuneRecipe(epochs=3, patience=3, ensemble=2)
    model, rep = finetune_reward_model([store], tmp_path, recipe=recipe, progress=False)
    assert rep["finetune"]["ensemble"] == 2 and len(rep["members"]) == 2
    members = [RewardModel.from_pretrained(tmp_path / f"member{k}") for k in range(2)]
    base = RewardModel.load_default(TASTE_GOLD_VERSION)  # what init="default" starts from
    assert base.config.gold_version == "gold-v1"
    for m in members:  # the clip encoder stayed the shipped one
        assert torch.equal(m.band_logits, base.band_logits) and torch.equal(m.gate, base.gate)
    w0, w1 = (m.frame_mlp[0].weight for m in members)
    assert not torch.allclose(w0, w1)  # different fit / early-stopping clips and seeds
    arr = PreferenceDataset(store).load()
    cqt = arr.cqt[0].astype(np.float32)
    acts = arr.action_floats(np.flatnonzero(arr.cand_clip == 0))
    mean = np.mean([m.score(cqt, acts, calibrated=False) for m in members], axis=0)
    saved = RewardModel.from_pretrained(tmp_path)
    np.testing.assert_allclose(saved.score(cqt, acts, calibrated=False), mean, rtol=1e-5,
                               atol=1e-5)
    assert json.loads((tmp_path / "report.json").read_text())["person"]["test_pairs"] > 0
