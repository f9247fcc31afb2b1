"""agents/sft.py --teacher gold-target: the student imitates the gold scorer's own target of
each clip (gold-v3 by default), on the contract's level grid."""

from __future__ import annotations

import json

import numpy as np
import torch
from test_sft import train_and_check_ce_falls

from agents import sft
from agents.checkpoint import init_policy_from
from agents.common import make_policy, split_data
from cqtml_env import GoldScorer, SyntheticMusic
from cqtml_env.contract import DEFAULT_FRAME_RATE, level_grid


def test_gold_target_levels_are_the_quantised_target():
    cqts = np.stack([SyntheticMusic(num_clips=2, seed=5)[i] for i in range(2)])
    for version in ("gold-v3", "gold-v2"):
        idx = sft.gold_target_levels(cqts, num_devices=4, levels=32, frame_rate=DEFAULT_FRAME_RATE,
                                     version=version)
        assert idx.dtype == torch.int64 and tuple(idx.shape) == (2, 4, cqts.shape[-1])
        assert int(idx.min()) >= 0 and int(idx.max()) <= 31
        assert int(idx.max()) > 20 and int(idx.min()) == 0  # uses the grid's range
        target = GoldScorer(version=version).features(cqts[1]).target
        # each level is the grid point nearest the target: never more than half a step off
        step = float(level_grid(32)[1])
        assert np.abs(level_grid(32)[idx[1].numpy()] - target).max() <= step / 2 + 1e-6
    v3 = sft.gold_target_levels(cqts, num_devices=4, levels=32, frame_rate=DEFAULT_FRAME_RATE)
    assert not torch.equal(idx, v3)  # the version picks the teacher (default gold-v3)


def test_tiny_gold_target_sft_lowers_the_loss_and_loads(tmp_path):
    torch.set_num_threads(1)
    args = sft.Args(policy="cnn", teacher="gold-target", data="synthetic:6", eval_clips=2,
                    max_duration=1.0, steps=40, batch_size=4, learning_rate=3e-3, log_every=10,
                    run_dir=str(tmp_path / "sft"), level_augment_db=0.0)
    split = split_data(args.data, args.max_duration, args.eval_clips, args.train_clips, args.seed)
    cqts = torch.as_tensor(np.stack([split.train[int(i)] for i in split.train_indices]))
    targets = sft.gold_target_levels(cqts.numpy(), num_devices=4, levels=32,
                                     frame_rate=split.processor.frame_rate, version="gold-v3")
    run_dir, trained = train_and_check_ce_falls(args, cqts, targets)
    trainer = json.loads((run_dir / "checkpoints" / "latest" / "trainer.json").read_text())
    assert trainer["extra"]["teacher"] == "gold-target"
    assert trainer["extra"]["gold_version"] == "gold-v3"
    target = make_policy("cnn", tuple(cqts.shape[1:]), 4, 32, device="cpu").eval()
    init_policy_from(target, run_dir, "cnn")  # what GRPO's --init-from does
    with torch.no_grad():
        assert torch.allclose(target(cqts), trained(cqts), atol=1e-6)
