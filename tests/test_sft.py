"""agents/sft.py: a tiny supervised warm start lowers the cross-entropy to the band-follower's
levels, logs its scalars, and writes a checkpoint that loads and that GRPO's --init-from reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_agents import scalars

from agents import sft
from agents.checkpoint import init_policy_from, load_policy_weights
from agents.common import make_policy, split_data
from cqtml_policy import load_policy, registry


def test_sft_loss_and_agreement() -> None:
    targets = torch.tensor([[[0, 3, 3]]])
    perfect = torch.full((1, 1, 3, 4), -30.0).scatter(-1, targets.unsqueeze(-1), 0.0)
    loss, stats = sft.sft_loss(torch.log_softmax(perfect, -1), targets)
    assert float(loss) < 1e-6 and stats["teacher_agreement"] == 1.0
    assert stats["teacher_level_mae"] == 0.0
    uniform = torch.full((1, 1, 3, 4), -np.log(4.0))
    loss, stats = sft.sft_loss(uniform, targets)
    assert float(loss) == pytest.approx(np.log(4.0), rel=1e-5)


def train_and_check_ce_falls(args, cqts, targets):
    """Run ``sft.train(args)``; the saved student's cross-entropy to ``targets`` on ``cqts`` is
    under 0.8x the same-seed untrained policy's. Returns the run dir and the trained policy."""
    torch.manual_seed(args.seed)
    fresh = make_policy(args.policy, tuple(cqts.shape[1:]), 4, 32, device="cpu").eval()
    with torch.no_grad():
        before, _ = sft.sft_loss(fresh(cqts), targets)
    run_dir = sft.train(args)
    trained = load_policy(run_dir / "checkpoints" / "latest", device="cpu").eval()
    with torch.no_grad():
        after, _ = sft.sft_loss(trained(cqts), targets)
    assert float(after) < 0.8 * float(before)
    return run_dir, trained


@pytest.mark.parametrize("policy", ["cnn"])
def test_tiny_sft_lowers_the_loss_and_saves_a_loadable_checkpoint(tmp_path, policy) -> None:
    torch.set_num_threads(1)
    args = sft.Args(policy=policy, data="synthetic:6", eval_clips=2, max_duration=1.0, steps=40,
                    batch_size=4, learning_rate=3e-3, log_every=5, run_dir=str(tmp_path / "sft"),
                    level_augment_db=0.0, weight_decay=0.05)
    split = split_data(args.data, args.max_duration, args.eval_clips, args.train_clips, args.seed)
    cqts = torch.as_tensor(np.stack([split.train[int(i)] for i in split.train_indices]))
    teacher = registry.create_policy("band-follow", num_devices=4, distribution_size=32,
                                     frame_rate=split.processor.frame_rate)
    targets = sft.teacher_targets(teacher, cqts)
    run_dir, trained = train_and_check_ce_falls(args, cqts, targets)

    logged = scalars(run_dir)
    assert {"losses/sft_ce", "charts/teacher_agreement"} <= set(logged)
    trainer = json.loads((run_dir / "checkpoints" / "latest" / "trainer.json").read_text())
    assert {g["weight_decay"] for g in trainer["optimizer"]["param_groups"]} == {0.05}
    ce = [v for _, v in sorted(logged["losses/sft_ce"])]
    assert ce[-1] < ce[0]

    # the format GRPO's --init-from reads: a run dir resolves to its latest checkpoint
    name, config, _ = load_policy_weights(run_dir)
    assert name == policy
    target = make_policy(policy, tuple(cqts.shape[1:]), 4, 32, device="cpu").eval()
    init_policy_from(target, run_dir, policy)
    with torch.no_grad():
        assert torch.allclose(target(cqts), trained(cqts), atol=1e-6)


def test_vit_sft_checkpoint_fits_a_fresh_registry_vit(tmp_path) -> None:
    """GRPO's --init-from builds a fresh `vit` from the registry (strip tokens) and copies the
    SFT weights in: the shapes must match (patch size recorded and rebuilt the same)."""
    torch.set_num_threads(1)
    args = sft.Args(policy="vit", data="synthetic:4", eval_clips=2, max_duration=1.0, steps=2,
                    batch_size=2, log_every=1, run_dir=str(tmp_path / "sft-vit"),
                    level_augment_db=0.0)
    run_dir = sft.train(args)
    name, config, _ = load_policy_weights(run_dir)
    assert name == "vit" and config["patch_size"][1] <= 4
    shape = (2, config["cqt_shape"][1], config["cqt_shape"][2])
    fresh = make_policy("vit", shape, 4, 32, device="cpu")
    init_policy_from(fresh, run_dir, "vit")
    assert list(fresh.patch_size) == config["patch_size"]
