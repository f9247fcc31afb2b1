"""Issue 14, agents side: evaluation never scores a bad clip (item 3), a resumed run's
TensorBoard curves equal the uninterrupted run's (item 5), checkpoints are verified with a
fallback to the newest intact one and a non-finite run stops (item 7), and a log that is not a
terminal gets a few plain lines instead of a progress-bar flood (item 10)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_agents import tiny
from test_checkpoint import _setup, _train_step

from agents import checkpoint as ckpt
from agents import evaluate, grpo
from agents.common import Evaluator, make_policy
from cqtml_env import CQTProcessor, SyntheticMusic
from cqtml_env.features import BadClipError

TIMING = ("charts/SPS", "charts/iteration_time")


# -- item 3: bad clips are skipped, counted and reported ------------------------------------
class _SomeBad:
    """Synthetic clips, of which ``bad`` fail at decode time like a corrupt file does."""

    def __init__(self, n: int, bad: dict[int, str]) -> None:
        self.inner = SyntheticMusic(num_clips=n, seed=3, processor=CQTProcessor(max_duration=1.0))
        self.processor, self.bad = self.inner.processor, bad

    def __len__(self) -> int:
        return len(self.inner)

    def _check(self, i: int) -> None:
        if i in self.bad:
            raise BadClipError(f"/music/bad{i}.wav (clip {i}): broken", f"/music/bad{i}.wav", self.bad[i], (i,))

    def __getitem__(self, i: int) -> np.ndarray:
        self._check(i)
        return self.inner[i]

    def get_audio(self, i: int) -> np.ndarray:
        self._check(i)
        return self.inner.get_audio(i)

    def clip_info(self, i: int) -> dict:
        return self.inner.clip_info(i)


def test_evaluate_skips_counts_and_reports_bad_clips(tmp_path):
    ds = _SomeBad(5, {1: "decode_error", 3: "too_loud"})
    ev = Evaluator(ds, np.arange(5), num_devices=4)
    assert list(ev.indices) == [0, 2, 4] and len(ev.cqts) == 3
    report = evaluate.write_report("band-follow", ev, tmp_path / "eval", plots=0)
    assert report["clips"] == 3 and len(report["per_clip"]["gold"]) == 3
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["skipped_clips"] == 2
    assert saved["skipped_reasons"] == {"decode_error": 1, "too_loud": 1}
    assert [s["clip"] for s in saved["skipped"]] == [1, 3]
    assert saved["skipped"][1]["path"] == "/music/bad3.wav"
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "skipped clips: **2**" in md and "bad3.wav" in md and "too_loud" in md


def test_evaluate_with_only_bad_clips_is_a_clear_error():
    with pytest.raises(ValueError, match="no usable clip.*decode_error"):
        Evaluator(_SomeBad(2, {0: "decode_error", 1: "decode_error"}), np.arange(2), num_devices=4)


# -- item 7: evaluation refuses a non-finite policy -------------------------------------------
def test_evaluate_refuses_a_non_finite_policy(tmp_path, capsys):
    torch.manual_seed(0)
    policy = make_policy("cnn", tuple(CQTProcessor(max_duration=1.0).shape), 4, 32, device="cpu")
    with torch.no_grad():
        next(iter(policy.parameters())).view(-1)[0] = float("nan")
    policy.save_pretrained(tmp_path / "nan")
    rc = evaluate.cli(["--policy", str(tmp_path / "nan"), "--clips", "2", "--max-duration", "1.0",
                       "--out", str(tmp_path / "eval"), "--plots", "0"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and "nan" in err.lower() and str(tmp_path / "nan") in err
    assert not (tmp_path / "eval" / "report.json").exists()


# -- item 7: checksums, verification and fallback -----------------------------------------------
def _three_checkpoints(root):
    model, opt, sched = _setup()
    for it in (1, 2, 3):
        _train_step(model, opt, sched)
        ckpt.save_checkpoint(root, it, model, opt, sched)
    return root


def test_checkpoint_has_a_checksum_and_a_corrupt_latest_falls_back(tmp_path):
    root = _three_checkpoints(tmp_path)
    sums = json.loads((root / "iter-000003" / "checksums.json").read_text())
    assert {"model.safetensors", "optimizer.safetensors", "trainer.json"} <= set(sums)
    ckpt.verify_checkpoint(root / "iter-000003")
    f = root / "iter-000003" / "model.safetensors"  # bit rot in the newest checkpoint
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ckpt.CorruptCheckpointError, match="iter-000003.*checksum"):
        ckpt.verify_checkpoint(root / "iter-000003")
    with pytest.warns(UserWarning, match="iter-000003"):
        got = ckpt.latest_checkpoint(root)
    assert got is not None and got.name == "iter-000002"


def test_nan_tensors_are_rejected_even_with_a_matching_checksum(tmp_path):
    root = _three_checkpoints(tmp_path)
    d = root / "iter-000003"
    opt_state = load_file(str(d / "optimizer.safetensors"))
    opt_state[next(iter(opt_state))].view(-1)[0] = float("nan")
    save_file(opt_state, str(d / "optimizer.safetensors"))
    ckpt.write_checksums(d)  # garbage written by the trainer itself: the checksum matches
    with pytest.raises(ckpt.CorruptCheckpointError, match="optimizer.safetensors.*non-finite"):
        ckpt.verify_checkpoint(d)
    with pytest.warns(UserWarning, match="non-finite"):
        assert ckpt.latest_checkpoint(root).name == "iter-000002"


def test_a_dangling_latest_link_does_not_hide_older_checkpoints(tmp_path):
    root = _three_checkpoints(tmp_path)
    import shutil

    shutil.rmtree(root / "iter-000003")
    assert (root / "latest").is_symlink() and not (root / "latest").exists()
    with pytest.warns(UserWarning, match="does not exist"):
        got = ckpt.latest_checkpoint(root)
    assert got is not None and got.name == "iter-000002"
    for p in root.iterdir():
        if p.name.startswith("iter-"):
            shutil.rmtree(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ckpt.latest_checkpoint(root) is None


# -- item 7: a run whose loss becomes non-finite stops, naming iteration and checkpoint -------
def test_non_finite_training_stops_naming_iteration_and_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real, calls = grpo.group_advantages, []

    def poisoned(*a, **kw):
        calls.append(1)
        adv = real(*a, **kw)
        return adv * float("nan") if len(calls) == 3 else adv

    monkeypatch.setattr(grpo, "group_advantages", poisoned)
    run = tmp_path / "run"
    rc = grpo.main(["--policy", "cnn", "--iterations", "4", "--clips-per-iteration", "2",
                    "--num-generations", "4", "--train-clips", "8", "--eval-clips", "2",
                    "--max-duration", "1.0", "--eval-every", "0", "--image-every", "0",
                    "--checkpoint-every", "2", "--run-dir", str(run), "--no-progress",
                    "--no-final-report"])
    assert rc == 3
    err = capsys.readouterr().err
    assert "iteration 3" in err and "non-finite" in err and "iter-000002" in err
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "iter-000004" not in names and "final" not in names
    ckpt.verify_checkpoint(run / "checkpoints" / "latest")  # what is on disk is intact


# -- item 5: TensorBoard curves of a resumed run equal the uninterrupted run's ----------------
def _curves(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Scalars as TensorBoard shows them: the whole directory, purges applied."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]
            if t not in TIMING and not t.startswith("perf/")}


def test_tensorboard_curves_of_a_resumed_run_equal_the_uninterrupted_run(tmp_path):
    common = dict(iterations=4, eval_every=2, checkpoint_every=2, image_every=0)
    grpo.train(tiny(tmp_path / "full", **common))
    grpo.train(tiny(tmp_path / "cut", stop_at=2, **common))
    grpo.train(tiny(tmp_path / "cut", resume=True, **common))
    grpo.train(tiny(tmp_path / "cut", resume=True, **common))  # resuming a finished run
    full, cut = _curves(tmp_path / "full"), _curves(tmp_path / "cut")
    assert sorted(cut) == sorted(full)
    for tag in full:
        assert [s for s, _ in cut[tag]] == [s for s, _ in full[tag]], tag
        assert [v for _, v in cut[tag]] == pytest.approx([v for _, v in full[tag]], rel=1e-5, abs=1e-6), tag
    last = max(s for s, _ in full["losses/policy_loss"])
    assert cut["eval/gold_greedy"][-1][0] == last  # the final step and final eval survive


# -- item 10: no progress-bar flood when stderr is not a terminal -------------------------------
def test_non_tty_progress_is_a_few_plain_lines(tmp_path, capsys):
    grpo.train(tiny(tmp_path / "run", iterations=6, eval_every=0, checkpoint_every=0, image_every=0,
                    progress=True))
    err = capsys.readouterr().err
    assert "\r" not in err  # no bar redraws
    lines = [ln for ln in err.splitlines() if "GRPO" in ln or "caching" in ln]
    assert 1 <= len(lines) <= 2, lines
    assert "GRPO iter 6/6" in lines[-1]
