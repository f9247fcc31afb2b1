"""Reward model: shapes and broadcasting, save/load, BT training, shipped weights, transfer."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from cqtml_env.datasets.record_like import record_like_audio, record_like_cqts
from cqtml_env.preferences import generate_preferences
from cqtml_env.preferences.candidates import smoothed_band_level
from cqtml_env.reward.evaluation import evaluate_fresh
from cqtml_env.reward.model import RewardModel, RewardModelConfig
from cqtml_env.reward.training import TrainConfig, train_reward_model

T = 216


@pytest.fixture(scope="module")
def default_model() -> RewardModel:
    torch.set_num_threads(1)
    return RewardModel.load_default()


@pytest.fixture(scope="module")
def synth_cqts():
    from cqtml_env.datasets.synthetic import SyntheticMusic

    return SyntheticMusic(16, seed=424242).get_many(range(16))  # seed never used in training


def test_forward_shapes_and_broadcast():
    torch.manual_seed(0)
    m = RewardModel().eval()
    cqt = torch.rand(3, 2, 84, T)
    acts = torch.rand(3, 4, T)
    raw = m(cqt, acts)
    assert raw.shape == (3,) and torch.isfinite(raw).all()
    # one clip broadcast over N actions == the clip repeated
    one = m(cqt[:1], acts)
    rep = m(cqt[:1].expand(3, -1, -1, -1), acts)
    assert torch.allclose(one, rep, atol=1e-5)
    # numpy in, numpy out; a single action gives a float; per-frame contributions average out
    s = m.score(cqt[0].numpy(), acts.numpy())
    assert isinstance(s, np.ndarray) and s.shape == (3,)
    assert isinstance(m.score(cqt[0].numpy(), acts[0].numpy()), float)
    raw_np, frames = m.score(cqt[0].numpy(), acts.numpy(), per_frame=True, calibrated=False)
    assert frames.shape == (3, 4, T)
    assert np.allclose(frames.mean(axis=(1, 2)), raw_np, atol=1e-5)
    assert np.allclose(raw_np, one.detach().numpy(), atol=1e-5)
    # calibrated = affine in raw
    m.config.calib_scale, m.config.calib_bias = 0.5, 0.25
    assert np.allclose(m.score(cqt[0].numpy(), acts.numpy()), raw_np * 0.5 + 0.25, atol=1e-5)
    assert torch.allclose(m(cqt, acts, calibrated=True), m(cqt, acts) * 0.5 + 0.25)


def test_degenerate_inputs_are_finite():
    m = RewardModel().eval()
    silent = torch.zeros(1, 2, 84, T)
    acts = torch.stack([torch.zeros(4, T), torch.ones(4, T), torch.full((4, T), 0.3)])
    assert torch.isfinite(m(silent, acts)).all()


@pytest.mark.parametrize(
    ("cqt_shape", "act_shape", "match"),
    [
        ((2, 2, 84, T), (3, 4, T), "must be 1 or match"),
        ((1, 2, 84, T), (3, 5, T), r"\[B, 4, T\]"),
        ((1, 2, 80, T), (3, 4, T), r"\[B, 2, 84, T\]"),
        ((1, 2, 84, T), (3, 4, T + 1), r"\[B, 4, T\]"),
    ],
)
def test_bad_shapes_raise(cqt_shape, act_shape, match):
    m = RewardModel()
    with pytest.raises(ValueError, match=match):
        m(torch.zeros(cqt_shape), torch.zeros(act_shape))


def test_score_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RewardModel().score(np.zeros((2, 84, T)), np.full((4, T), 1.5))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    m = RewardModel(RewardModelConfig(hidden=6, calib_scale=0.3, calib_bias=0.1)).eval()
    with torch.no_grad():
        m.gate.fill_(0.31)
    path = m.save_pretrained(tmp_path, "rm")
    assert path.name == "rm.safetensors" and (tmp_path / "rm.json").is_file()
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temp files
    back = RewardModel.from_pretrained(tmp_path / "rm.safetensors")
    assert back.config.hidden == 6 and back.config.calib_scale == 0.3
    cqt, acts = torch.rand(2, 2, 84, T), torch.rand(2, 4, T)
    assert torch.equal(m(cqt, acts), back(cqt, acts))
    assert torch.equal(RewardModel.from_pretrained(tmp_path, "rm")(cqt, acts), m(cqt, acts))
    with pytest.raises(FileNotFoundError):
        RewardModel.from_pretrained(tmp_path / "missing.safetensors")
    (tmp_path / "rm.json").write_text('{"hidden": 6, "sparkle": 1}')
    with pytest.raises(ValueError, match="sparkle"):
        RewardModel.from_pretrained(tmp_path, "rm")


def test_bt_training_improves_heldout_accuracy(tmp_path):
    from cqtml_env.datasets.synthetic import SyntheticMusic

    prefs = generate_preferences(
        SyntheticMusic(20, seed=31337),
        tmp_path / "prefs",
        candidates_per_clip=24,
        pairs_per_clip=96,
        near_fraction=0.0,
        seed=0,
        progress=False,
    )
    cfg = TrainConfig(epochs=6, seed=0, val_fraction=0.25, clips_per_batch=5, lr=5e-3)
    model, report = train_reward_model(
        prefs, tmp_path / "rm", cfg, log_dir=tmp_path / "tb", progress=False
    )
    before, after = report["initial_val"], report["best_val"]
    assert after["acc_labels"] > before["acc_labels"] + 0.05
    assert after["logloss"] < before["logloss"] - 0.05
    assert after["acc_labels"] > 0.8
    assert (tmp_path / "rm" / "model.safetensors").is_file()
    assert (tmp_path / "rm" / "report.json").is_file()
    assert list((tmp_path / "tb").iterdir())  # TensorBoard events
    assert RewardModel.from_pretrained(tmp_path / "rm").config.calib_scale == pytest.approx(
        model.config.calib_scale
    )


def test_default_weights_meet_targets_on_fresh_clips(default_model, synth_cqts):
    res = evaluate_fresh(default_model, synth_cqts, candidates=48, seed=7)
    assert res["acc_gold_sampled_pairs"] >= 0.90, res
    assert res["spearman_per_clip"] >= 0.90, res
    assert res["calibrated_mae"] < 0.08, res


def test_default_ranks_the_obvious(default_model, synth_cqts):
    from cqtml_env.gold.scorer import GoldScorer

    cqt = synth_cqts[0]
    ideal = GoldScorer().features(cqt).target
    follower = smoothed_band_level(cqt)
    rng = np.random.default_rng(0)
    t = np.arange(T) / (22050 / 512)
    strobe = np.tile((np.sin(2 * np.pi * 10 * t) > 0).astype(np.float32), (4, 1))
    acts = np.stack([ideal, follower, rng.random((4, T)), strobe, np.full((4, T), 0.5)])
    s = default_model.score(cqt, acts.astype(np.float32))
    assert s[0] > s[1] > max(s[2:])


def test_default_transfers_to_record_like_audio(default_model):
    cqts = record_like_cqts(6, seed=5)
    res = evaluate_fresh(default_model, cqts, candidates=48, seed=3)
    assert res["spearman_per_clip"] >= 0.85, res
    assert res["acc_gold_sampled_pairs"] >= 0.85, res


def test_record_like_audio_is_not_silent_and_differs_by_seed():
    a, b = record_like_audio(0), record_like_audio(1)
    assert a.shape == (2, 110250) and np.abs(a).max() > 0.1
    assert not np.allclose(a[:, :1000], b[:, :1000])


def _stdlib_recordings() -> list[Path]:
    test_dir = Path(sysconfig.get_paths()["stdlib"]) / "test"
    names = ["audiotest.au", "audiodata/pluck-pcm16.wav"]
    return [test_dir / n for n in names if (test_dir / n).is_file()]


@pytest.mark.skipif(not _stdlib_recordings(), reason="CPython's test audio is not installed")
def test_default_transfers_to_real_recordings(default_model):
    """Real recorded audio shipped with CPython's test package: speech, and a plucked string
    sampled into a rhythm (a sampler track made of a real recording)."""
    from cqtml_env.features.audio import load_audio
    from cqtml_env.features.cqt import CQTProcessor

    proc = CQTProcessor()
    sr = proc.sample_rate
    cqts = []
    for path in _stdlib_recordings():
        audio, _ = load_audio(path, sr)
        if audio.shape[1] < sr:  # a short hit: sequence it like a sampler would
            rng = np.random.default_rng(0)
            track = np.zeros((2, 5 * sr), np.float32)
            for k, start in enumerate(np.arange(0.1, 4.8, 0.35)):
                s = int(start * sr)
                hit = audio[:, :: 1 + (k % 3 == 2)] * rng.uniform(0.4, 1.0)
                n = min(hit.shape[1], track.shape[1] - s)
                track[:, s : s + n] += hit[:, :n]
            audio = track
        cqts.append(proc(audio))
    res = evaluate_fresh(default_model, np.stack(cqts), candidates=64, seed=11)
    assert res["spearman_per_clip"] >= 0.85, res
    assert res["acc_gold_sampled_pairs"] >= 0.85, res


def test_cli_train_and_eval(tmp_path, capsys):
    import json

    from cqtml_env.cli.reward import main

    generate_preferences(
        _small_synthetic(),
        tmp_path / "prefs",
        candidates_per_clip=12,
        pairs_per_clip=24,
        seed=1,
        progress=False,
    )
    out = tmp_path / "rm"
    assert (
        main(
            [
                "train",
                "--prefs",
                str(tmp_path / "prefs"),
                "--out",
                str(out),
                "--epochs",
                "2",
                "--val-fraction",
                "0.34",
                "--quiet",
            ]
        )
        == 0
    )
    assert (out / "model.safetensors").is_file() and (out / "tb").is_dir()
    report = json.loads((out / "report.json").read_text())
    assert report["epochs_run"] == 2 and report["num_pairs"] == 6 * 24
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--model",
                str(out / "model.safetensors"),
                "--data",
                "record-like:1",
                "--candidates",
                "8",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["clips"] == 1 and -1 <= res["spearman_per_clip"] <= 1


def _small_synthetic():
    from cqtml_env.datasets.synthetic import SyntheticMusic

    return SyntheticMusic(6, seed=99)


def test_loading_weights_leaves_the_callers_rng_alone(tmp_path):
    """Loading must not consume the global torch RNG (it made the first seeded run in a
    process differ from later ones)."""
    import torch

    from cqtml_env import RewardModel

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    RewardModel.load_default()
    assert torch.equal(torch.rand(3), expected)


def test_grouped_encodings_broadcast_over_their_actions():
    """score_encoded with C clips and B = C*G actions scores action b on clip b // G, exactly
    as the per-action copy of the encodings would (GRPO groups, without the copies)."""
    torch.manual_seed(0)
    model = RewardModel().eval()
    cqt = torch.rand(3, 2, 84, 40)
    actions = torch.rand(12, 4, 40)
    with torch.no_grad():
        enc = model.encode_clip(cqt)
        grouped = model.score_encoded(enc, actions)
        copied = model.score_encoded(enc.index(torch.arange(12) // 4), actions)
        one_clip = model.score_encoded(model.encode_clip(cqt[1:2]), actions[4:8])
        raw, frames = model.score_encoded(enc, actions, per_frame=True)
    torch.testing.assert_close(grouped, copied, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(grouped[4:8], one_clip, rtol=1e-6, atol=1e-4)
    assert frames.shape == (12, 4, 40)
    torch.testing.assert_close(frames.mean(dim=(1, 2)), raw, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(grouped[:4], model.score_encoded(enc.index(torch.tensor([1] * 4)), actions[:4]))
    with pytest.raises(ValueError, match="groups over the 3 encoded clips"):
        model.score_encoded(enc, actions[:10])
