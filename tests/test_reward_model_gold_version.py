"""``RewardModelConfig.gold_version``: a reward model whose hand-made features follow a later
gold version's rules (its target, onsets, silence and beats; the rig's beat response)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cqtml_env import GoldScorer, RewardModel
from cqtml_env.datasets.synthetic import SyntheticMusic
from cqtml_env.preferences.generate import generate_preferences
from cqtml_env.reward.ensemble import stack_members
from cqtml_env.reward.model import RewardModelConfig
from cqtml_env.reward.training import TrainConfig, train_reward_model


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    return SyntheticMusic(4, seed=3).get_many(range(4))


def _model(version: str = "gold-v5", **kw) -> RewardModel:
    torch.manual_seed(0)
    return RewardModel(RewardModelConfig(gold_version=version, **kw))


def test_the_encoder_takes_the_versions_target_onsets_silence_and_beats(clips):
    model, gold = _model(), GoldScorer(version="gold-v5")
    enc = model.encode_clip(torch.as_tensor(clips))
    assert enc.feats.shape == (4, 4, clips.shape[-1], model.n_clip) and model.n_clip == 11
    for i, c in enumerate(clips):
        f = gold.features(c)
        np.testing.assert_array_equal(enc.target[i].numpy(), f.target)
        np.testing.assert_array_equal(enc.silent[i].numpy(), f.silent.astype(np.float32))
        np.testing.assert_array_equal(enc.near[i].numpy(), f.near_onset)
        for d, frames in enumerate(f.onset_frames):
            assert np.array_equal(np.flatnonzero(enc.onset[i, d].numpy()), frames)
        assert f.beat_frames.size > 3  # synthetic music has a beat to follow
        assert np.array_equal(np.flatnonzero(enc.beat[i, 0].numpy()), f.beat_frames)
        np.testing.assert_array_equal(enc.near_beat[i, 0].numpy(), f.near_beat)
    # gold-v1's target is not gold-v5's: the version changes what the model compares against
    v1 = _model("gold-v1").encode_clip(torch.as_tensor(clips))
    assert v1.feats.shape[-1] == 9 and v1.beat.abs().sum() == 0
    assert (v1.target - enc.target).abs().mean() > 0.05


def test_the_rig_beat_response_is_gold_v5s_beat_component(clips):
    """Precision, recall and F of the rig's rises at the clip's beats, as gold-v5 scores them."""
    model, gold = _model(), GoldScorer(version="gold-v5")
    rng = np.random.default_rng(0)
    r = model.rules
    k0, k1 = r.onset_window
    gauss = [float(np.exp(-(k**2) / (2 * r.onset_sigma**2))) for k in range(k0, k1 + 1)]
    for c in clips:
        y = gold.features(c).target
        acts = np.stack([y, np.clip(y + rng.normal(0, 0.2, y.shape), 0, 1),
                         rng.random(y.shape), np.roll(y, 5, axis=1)]).astype(np.float32)
        enc = model.encode_clip(torch.as_tensor(c)[None])
        *_, (_, _, f1, has) = model._beat_response(enc, torch.as_tensor(acts)[None], k0, gauss)
        want = gold.score_components(c, acts)["beat"][:, 0]
        np.testing.assert_allclose(f1.numpy().ravel(), want, atol=1e-5)
        assert has.min() == 1 and want[0] > want[3] + 0.2  # on the beat beats 5 frames late


def test_a_later_version_scores_flashes_by_its_own_swing(clips):
    """gold-v5 counts swings of 0.15 as flashes (WCAG's 10 %); gold-v1 does not (20 %)."""
    c = torch.as_tensor(clips[:1])
    t = c.shape[-1]
    wobble = 0.5 + torch.tensor([0.0, 0.075, 0.15, 0.075]).repeat(t // 4 + 1)[:t]
    wobble = wobble.expand(1, 4, t).contiguous()  # swings of 0.15 at 10.8 Hz
    for version, counted in (("gold-v1", False), ("gold-v5", True)):
        model = _model(version)
        enc = model.encode_clip(c)
        # the ``excess`` action feature (index 8) of the wobble
        model.frame_mlp[0].weight.data.zero_()
        model.frame_mlp[0].weight.data[0, model.n_clip + 8] = 1.0
        model.frame_mlp[0].bias.data.zero_()
        model.frame_out.weight.data.zero_()
        model.frame_out.weight.data[0, 0] = 1.0
        model.frame_out.bias.data.zero_()
        for p in model.global_mlp.parameters():
            p.data.zero_()
        excess = float(model.score_encoded(enc, wobble).detach())
        assert (excess > 0.5) is counted, (version, excess)


def test_a_gold_v5_model_saves_loads_scores_and_has_gradients(tmp_path, clips):
    model = _model()
    c, a = torch.as_tensor(clips), torch.rand(4, 4, clips.shape[-1], requires_grad=True)
    raw = model(c, a)
    raw.sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    assert model.band_logits.grad.abs().sum() > 0  # the band pooling stays learned
    model.save_pretrained(tmp_path, "m")
    assert json.loads((tmp_path / "m.json").read_text())["gold_version"] == "gold-v5"
    back = RewardModel.from_pretrained(tmp_path / "m.safetensors")
    assert back.config.gold_version == "gold-v5"
    with torch.no_grad():
        torch.testing.assert_close(back(c, a), raw, rtol=0, atol=0)
    # the env's path (prepare once per clip, score groups) gives the same numbers
    states = [back.prepare(x) for x in clips]
    got = back.score_prepared(states, a.detach().numpy())
    np.testing.assert_allclose(got, back.calibrate(raw).detach().double().numpy(), atol=1e-5)


def test_old_configs_load_as_gold_v1_and_an_unknown_version_is_refused(tmp_path):
    m = _model("gold-v1")
    m.save_pretrained(tmp_path, "old")
    cfg = json.loads((tmp_path / "old.json").read_text())
    del cfg["gold_version"]  # a config written before the field existed
    (tmp_path / "old.json").write_text(json.dumps(cfg))
    assert RewardModel.from_pretrained(tmp_path / "old.json").config.gold_version == "gold-v1"
    with pytest.raises(ValueError, match="unknown gold_version 'gold-v9'.*gold-v5"):
        _model("gold-v9")


def test_ensembles_keep_the_version_and_refuse_to_mix_versions(clips):
    a, b = _model(), _model()
    b.band_logits.data.copy_(a.band_logits.data)
    for p in b.global_mlp.parameters():
        p.data.mul_(1.5)
    ens = stack_members([a, b])
    assert ens.config.gold_version == "gold-v5"
    c, act = torch.as_tensor(clips), torch.rand(4, 4, clips.shape[-1])
    with torch.no_grad():
        torch.testing.assert_close(ens(c, act), (a(c, act) + b(c, act)) / 2, rtol=1e-5, atol=1e-5)
    v1 = _model("gold-v1")
    v1.band_logits.data.copy_(a.band_logits.data)
    v1.gate.data.copy_(a.gate.data)
    with pytest.raises(ValueError, match="same gold version"):
        stack_members([a, v1])


@pytest.mark.usefixtures("one_torch_thread")
def test_training_takes_the_version_the_preferences_were_made_with(tmp_path):
    prefs = generate_preferences(
        SyntheticMusic(6, seed=11), tmp_path / "prefs", candidates_per_clip=16, pairs_per_clip=24,
        labeller="oracle", scorer=GoldScorer(version="gold-v5"), seed=0, progress=False,
    )
    model, _ = train_reward_model(prefs, tmp_path / "m", TrainConfig(epochs=1, patience=1),
                                  progress=False)
    assert model.config.gold_version == "gold-v5" and model.n_stats == 16
    forced, _ = train_reward_model(prefs, tmp_path / "m1",
                                   TrainConfig(epochs=1, patience=1, gold_version="gold-v1"),
                                   progress=False)
    assert forced.config.gold_version == "gold-v1" and forced.n_stats == 12


def test_the_shipped_gold_v5_model_agrees_with_gold_v5_on_clips_it_never_saw():
    from cqtml_env.reward.evaluation import evaluate_fresh
    from cqtml_env.reward.model import (
        DEFAULT_GOLD_VERSION,
        SHIPPED_GOLD_VERSIONS,
        shipped_version_for,
    )

    assert SHIPPED_GOLD_VERSIONS == ("gold-v1", "gold-v5") and DEFAULT_GOLD_VERSION == "gold-v5"
    model = RewardModel.load_default()
    assert model.config.gold_version == "gold-v5"
    assert RewardModel.load_default("gold-v1").config.gold_version == "gold-v1"
    # 4 fresh clips (seeds the recipe never trains or evaluates on): ~0.98 of all pairs
    res = evaluate_fresh(model, SyntheticMusic(4, seed=4242).get_many(range(4)), seed=3)
    assert res["acc_gold_all_pairs"] > 0.93 and res["spearman_per_clip"] > 0.95
    # a version without its own model borrows the default; gold-v1 keeps its own
    assert [shipped_version_for(v) for v in ("gold-v1", "gold-v3", "gold-v5")] == [
        "gold-v1", "gold-v5", "gold-v5"]
    with pytest.raises(ValueError, match="no reward model is shipped for 'gold-v4'"):
        RewardModel.load_default("gold-v4")


def test_the_evaluator_reports_the_proxy_of_the_model_shipped_for_its_gold():
    from agents.common import Evaluator

    ds = SyntheticMusic(2, seed=8, max_duration=2.0)
    for version, want in (("gold-v1", "gold-v1"), ("gold-v4", "gold-v5"), ("gold-v5", "gold-v5")):
        ev = Evaluator(ds, np.arange(2), reward="model", gold_version=version, audio_metrics=False)
        assert ev.reward_model.config.gold_version == want and ev.gold.config.version == version


def test_grpo_with_gold_v5_trains_against_the_gold_v5_reward_model(tmp_path):
    """agents/grpo.py --reward model --gold-version V: the env's reward is the model shipped for
    V (gold-v1 keeps its own), and held-out gold is V's."""
    from test_agents import tiny

    from agents import grpo
    from agents.common import split_data

    for version in ("gold-v1", "gold-v5"):
        args = tiny(tmp_path / version, gold_version=version)
        split = split_data(args.data, args.max_duration, eval_clips=args.eval_clips,
                           train_clips=args.train_clips, seed=args.seed)
        envs = grpo.make_envs(args, split, num_envs=4, progress=False)
        core = envs.unwrapped.core
        assert core.reward_model.config.gold_version == version
        assert core.gold.config.version == version
        envs.close()


def test_the_labelling_page_starts_from_gold_v1_and_samples_with_its_models_gold(tmp_path):
    """A person's taste starts from gold-v1's model (it learns a taste at least as well as
    gold-v5's; README); the candidates and stored gold follow whichever model the page uses."""
    from cqtml_env.labelling.service import LabellingService
    from cqtml_env.reward.model import TASTE_GOLD_VERSION

    ds = SyntheticMusic(2, seed=5, max_duration=2.0)
    assert TASTE_GOLD_VERSION == "gold-v1"
    for model, want in ((None, "gold-v1"), (RewardModel.load_default(), "gold-v5")):
        svc = LabellingService(ds, tmp_path / want, reward_model=model, background=False)
        try:
            assert svc.reward_model.config.gold_version == want
            assert svc.scorer.config.version == want
        finally:
            svc.close()
