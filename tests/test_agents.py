"""Agents end to end on tiny configs: GRPO (tags, learning step, resume, determinism, torchrun),
SB3 PPO with the custom policy, and evaluate.py's report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import evaluate, grpo

ROOT = Path(__file__).resolve().parents[1]

REQUIRED_TAGS = {
    "charts/reward_proxy", "charts/reward_gold", "charts/reward_std", "charts/frac_reward_zero_std",
    "losses/policy_loss", "losses/approx_kl", "losses/kl_ref", "losses/entropy", "losses/clip_ratio",
    "losses/grad_norm", "charts/learning_rate", "charts/SPS",
    "eval/gold_greedy", "eval/gold_sampled", "eval/proxy_greedy", "eval/gold_band_follow", "eval/gold_random",
    "eval/novelty_corr", "eval/beat_f", "eval/loudness_corr", "eval/band_corr", "eval/flash_safe",
}


def tiny(run_dir: Path, **kw) -> grpo.Args:
    base = dict(policy="cnn", iterations=4, clips_per_iteration=2, num_generations=4, train_clips=8,
                eval_clips=3, max_duration=1.0, eval_every=2, checkpoint_every=2, image_every=2,
                run_dir=str(run_dir), progress=False, final_report=False, learning_rate=1e-3,
                warmup_iterations=1)
    base.update(kw)
    return grpo.Args(**base)


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for ev in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(ev), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def images(run_dir: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = []
    for ev in run_dir.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(ev))
        acc.Reload()
        tags += acc.Tags()["images"]
    return tags


def test_grpo_tiny_run_learns_logs_and_checkpoints(tmp_path):
    from cqtml_policy import TemporalCNNModel

    grpo.train(tiny(tmp_path / "run", final_report=True))
    run = tmp_path / "run"
    tags = scalars(run)
    missing = REQUIRED_TAGS - set(tags)
    assert not missing, f"missing TensorBoard tags: {sorted(missing)}"
    assert "images/policy_activations" in images(run)
    assert len(tags["losses/policy_loss"]) == 4
    # the per-phase timing breakdown adds up to no more than the iteration it splits
    phases = [f"perf/{p}_time" for p in grpo.PERF_PHASES]
    for i, (_, total) in enumerate(tags["charts/iteration_time"]):
        parts = [tags[p][i][1] for p in phases]
        assert all(v > 0 for v in parts) and sum(parts) <= total + 1e-3
    assert all(np.isfinite(v) for _, v in tags["losses/grad_norm"])
    # the updates between iteration 2 and 4 moved the parameters
    mid = TemporalCNNModel.from_pretrained(run / "checkpoints" / "iter-000002")
    final = TemporalCNNModel.from_pretrained(run / "checkpoints" / "final")
    delta = sum((a - b).abs().sum().item() for a, b in zip(mid.state_dict().values(), final.state_dict().values()))
    assert delta > 0
    for name in ("final", "best", "latest"):
        TemporalCNNModel.from_pretrained(run / "checkpoints" / name)
    report = json.loads((run / "eval" / "report.json").read_text())
    assert {"gold_mean", "gold_ci95", "proxy_mean", "win_rate_vs_band_follow", "normalized_score"} <= set(report)


def test_grpo_seeded_runs_are_identical(tmp_path):
    a = grpo.train(tiny(tmp_path / "a", iterations=2, eval_every=0, checkpoint_every=0, image_every=0))
    b = grpo.train(tiny(tmp_path / "b", iterations=2, eval_every=0, checkpoint_every=0, image_every=0))
    la = [v for _, v in scalars(tmp_path / "a")["losses/policy_loss"]]
    lb = [v for _, v in scalars(tmp_path / "b")["losses/policy_loss"]]
    assert la == lb and len(la) == 2
    assert a["charts/reward_gold"] == b["charts/reward_gold"]
    c = grpo.train(tiny(tmp_path / "c", seed=7, iterations=2, eval_every=0, checkpoint_every=0, image_every=0))
    assert c["charts/reward_gold"] != a["charts/reward_gold"]


def test_grpo_resume_continues_exactly(tmp_path):
    common = dict(eval_every=0, image_every=0, checkpoint_every=2, update_epochs=2)
    grpo.train(tiny(tmp_path / "full", **common))
    grpo.train(tiny(tmp_path / "cut", stop_at=2, **common))
    assert (tmp_path / "cut" / "checkpoints" / "latest").exists()
    assert not (tmp_path / "cut" / "checkpoints" / "final").exists()
    grpo.train(tiny(tmp_path / "cut", resume=True, **common))
    full = dict(scalars(tmp_path / "full")["losses/policy_loss"])
    cut = dict(scalars(tmp_path / "cut")["losses/policy_loss"])
    assert sorted(cut) == sorted(full)
    for step in sorted(full):
        assert cut[step] == pytest.approx(full[step], rel=1e-5, abs=1e-7)
    ga = dict(scalars(tmp_path / "full")["charts/reward_gold"])
    gb = dict(scalars(tmp_path / "cut")["charts/reward_gold"])
    assert ga == pytest.approx(gb)


def test_grpo_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        grpo.train(tiny(tmp_path / "none", resume=True))


def test_sampled_log_probs_pick_each_generations_bins():
    torch.manual_seed(0)
    full = torch.log_softmax(torch.randn(2, 3, 5, 4), -1).requires_grad_(True)  # [b, D, T, K]
    index = torch.randint(0, 4, (2, 6, 3, 5))  # [b, G, D, T]
    got = grpo.sampled_log_probs(full, index)
    want = torch.stack([torch.stack([full[b].gather(-1, index[b, g].unsqueeze(-1)).squeeze(-1) for g in range(6)])
                        for b in range(2)])
    assert torch.equal(got, want)
    got.sum().backward()  # the gradient counts how often each bin was drawn
    counts = torch.zeros_like(full).scatter_add_(-1, index.permute(0, 2, 3, 1), torch.ones(2, 3, 5, 6))
    assert torch.equal(full.grad, counts)


def test_optimizer_is_fused_on_cpu_and_allocator_tuning_is_optional():
    from agents.common import keep_freed_memory

    params = [torch.nn.Parameter(torch.zeros(3))]
    assert grpo.make_optimizer(params, grpo.Args(), "cpu").defaults["fused"] is True
    assert keep_freed_memory(0) is False  # 0 keeps glibc's default
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert keep_freed_memory(64) is True


def test_group_advantages_and_aggregation():
    r = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    a = grpo.group_advantages(r, "group", 1e-4)
    assert torch.allclose(a[0], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-3)
    assert torch.all(a[1] == 0), "a group with no reward spread has no signal"
    assert torch.allclose(grpo.group_advantages(r, "none", 1e-4)[0], torch.tensor([-1.0, 0.0, 1.0]))
    b = grpo.group_advantages(r, "batch", 0.0)
    assert torch.allclose(b[0], torch.tensor([-1.0, 0.0, 1.0]) / r.std())
    per = torch.arange(24, dtype=torch.float32).view(2, 3, 2, 2)
    mask = torch.ones_like(per)
    mask[0, 0, 1] = 0  # one shorter sample: the variants must then differ
    sample, element, const = (grpo.aggregate(per, mask, k).item() for k in ("sample", "element", "constant"))
    assert len({round(sample, 5), round(element, 5), round(const, 5)}) == 3
    full = torch.ones_like(per)
    vals = [grpo.aggregate(per, full, k).item() for k in ("sample", "element", "constant")]
    assert vals == pytest.approx([per.mean().item()] * 3)


# A rank of the two-process run sometimes aborts with this C++ message and no Python traceback:
# in fresh-venv CI runs under xdist (1 of 3 fresh-clone runs in stop 29, 1 of about 4 in stop
# 17), never when run alone (3 of 3) or in a warm venv; not understood. The run is retried once for this abort only: any
# other failure, or the abort twice, still fails the test.
ABORT = "terminate called without an active exception"


@pytest.mark.slow
def test_grpo_under_torchrun_two_processes(tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "agents" / "grpo.py"), "--policy", "cnn", "--iterations", "2", "--clips-per-iteration", "2",
           "--num-generations", "4", "--train-clips", "8", "--eval-clips", "2", "--max-duration", "1.0",
           "--eval-every", "2", "--checkpoint-every", "2", "--image-every", "0", "--run-dir", str(run),
           "--no-progress", "--no-final-report"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(2):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
        if proc.returncode == 0 or ABORT not in proc.stderr:
            break
        shutil.rmtree(run, ignore_errors=True)  # a rank died in C++ (see ABORT): once more
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "checkpoints" / "final").exists()
    writers = {ev.name.split(".")[-2] for ev in run.glob("events.out.tfevents.*")}  # ...<host>.<pid>.<n>
    assert len(writers) == 1, f"only rank 0 writes TensorBoard events, got writer pids {writers}"
    assert len(scalars(run)["losses/policy_loss"]) == 2


@pytest.mark.slow
def test_sb3_ppo_with_custom_policy(tmp_path):
    from stable_baselines3 import PPO

    from agents import train_sb3

    args = train_sb3.Args(policy="cnn", total_timesteps=32, num_envs=8, n_steps=2, batch_size=8, n_epochs=1,
                          train_clips=8, eval_clips=2, max_duration=1.0, eval_every=16, checkpoint_every=16,
                          run_dir=str(tmp_path / "sb3"), distribution_size=8)
    out = train_sb3.train(args)
    assert len(out["history"]) >= 2
    tags = scalars(next((tmp_path / "sb3").glob("ppo_*")))
    assert "eval/gold_greedy" in tags and "rollout/ep_rew_mean" in tags
    model = PPO.load(tmp_path / "sb3" / "checkpoints" / "ppo_final.zip")
    obs = np.zeros((1, *model.observation_space.shape), dtype=np.float32)
    act, _ = model.predict(obs, deterministic=True)
    assert act.shape == (1, 4 * 44) and act.max() < 8


def test_evaluate_writes_report_and_plots(tmp_path):
    out = tmp_path / "eval"
    report = evaluate.main(evaluate.Args(policy="random", clips=3, max_duration=1.0, out=str(out), plots=2))
    assert (out / "report.json").exists() and (out / "report.md").exists() and (out / "activations.png").exists()
    saved = json.loads((out / "report.json").read_text())
    assert saved["clips"] == 3
    assert 0.0 <= saved["gold_mean"] <= 1.0 and saved["gold_ci95"] > 0
    assert saved["normalized_score"] == pytest.approx(report["normalized_score"])
    band = evaluate.main(evaluate.Args(policy="band-follow", clips=3, max_duration=1.0, out=str(tmp_path / "b")))
    assert band["normalized_score"] == pytest.approx(1.0)
    assert band["win_rate_vs_band_follow"] == 0.5 and band["wins_ties_losses_vs_band_follow"][1] == 3


def test_evaluator_matches_the_gold_scorer_clip_by_clip():
    from agents.common import Evaluator, split_data
    from cqtml_env import GoldScorer

    split = split_data("synthetic:4", max_duration=1.0, eval_clips=3)
    ev = Evaluator(split.eval, split.eval_indices)
    rng = np.random.default_rng(0)
    actions = rng.random((3, 4, ev.cqts.shape[-1])).astype(np.float32)
    actions[1] = 0.5  # a constant show: its range component must be ~0 on every device
    res = ev.score_actions(actions)
    gold = GoldScorer()
    for i in range(3):
        assert res.gold[i] == pytest.approx(gold.score(ev.cqts[i], actions[i]), abs=1e-9)
        comps = gold.score_components(ev.cqts[i], actions[i])
        for k, v in comps.items():
            assert res.components[k][i] == pytest.approx(float(np.mean(v)), abs=1e-9), k
    assert res.proxy.shape == (3,) and np.all(np.isfinite(res.proxy))


def test_make_policy_passes_the_data_frame_rate_to_the_band_follower():
    from agents.common import make_policy

    p = make_policy("band-follow", (2, 84, 216), num_devices=4, distribution_size=32,
                    frame_rate=86.0)
    assert p.settings["frame_rate"] == 86.0
