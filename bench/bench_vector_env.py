"""Steps/s of the native CQTML vector env vs gymnasium's SyncVectorEnv over the single env.

Same data set object (CQTs pre-computed into a temporary feature cache, so neither side pays
for librosa), same reward model and gold scorer (per-clip gold features pre-computed), same
SAME_STEP autoreset, N sub-envs, measured in one run.
One "step" is one scored episode (one clip, one action), so steps/s = N * vector steps / s.

    .venv/bin/python bench/bench_vector_env.py            # N=64, CQTML-v0 (gold-v1 model)
    .venv/bin/python bench/bench_vector_env.py --group-size 8 # also time GRPO-style groups
    .venv/bin/python bench/bench_vector_env.py --env-id CQTML-v1   # gold-v5 and its model

If the shipped reward-model weights are missing, a randomly initialised RewardModel of the
default architecture is used (same cost per forward pass; the scores are meaningless).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode

import cqtml_env  # noqa: F401  (registers CQTML-v0 and CQTML-v1)
from cqtml_env.datasets.synthetic import SyntheticMusic
from cqtml_env.features.cache import FeatureCache
from cqtml_env.gold.scorer import GoldScorer
from cqtml_env.versions import ENV_GOLD_VERSIONS


def reward_spec(tmp: Path) -> tuple[Any, str]:
    from cqtml_env.reward.model import RewardModel

    try:
        RewardModel.load_default()
        return "model", "the env version's shipped reward model"
    except FileNotFoundError:
        torch.manual_seed(0)
        RewardModel().save_pretrained(tmp / "rm")
        return str(tmp / "rm"), "random-init RewardModel (default weights not shipped yet)"


def time_env(env: gym.vector.VectorEnv, steps: int, warmup: int, seed: int, **reset_kw: Any) -> float:
    """Vector steps/s * num_envs, after ``warmup`` untimed steps."""
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps + warmup)]
    env.reset(seed=seed, **reset_kw)
    for a in actions[:warmup]:
        env.step(a)
    t0 = time.perf_counter()
    for a in actions[warmup:]:
        env.step(a)
    dt = time.perf_counter() - t0
    return steps * env.num_envs / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed vector steps per env")
    p.add_argument("--sync-steps", type=int, default=5, help="timed steps for SyncVectorEnv")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--clips", type=int, default=64, help="synthetic clips in the data set")
    p.add_argument("--max-duration", type=float, default=5.0)
    p.add_argument("--group-size", type=int, default=None, help="also time native with this group size (GRPO's G)")
    p.add_argument("--action-bins", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--env-id", default="CQTML-v0", choices=sorted(ENV_GOLD_VERSIONS),
                   help="which registered version (its reward model and gold)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        reward, reward_desc = reward_spec(tmp)
        ds = SyntheticMusic(
            num_clips=args.clips, max_duration=args.max_duration, cache=FeatureCache(tmp / "cache")
        )
        t0 = time.perf_counter()
        ds.get_many(range(len(ds)))  # fill the disk cache: neither side computes a CQT below
        print(f"precomputed {len(ds)} CQTs {ds.processor.shape} in {time.perf_counter() - t0:.1f}s")
        # one gold scorer for everybody, its per-clip feature cache warm: gold features are
        # per clip and would otherwise be recomputed by each of the N sync sub-envs
        gold = GoldScorer(num_devices=4, cache_size=max(64, len(ds)),
                          version=ENV_GOLD_VERSIONS[args.env_id])
        for i in range(len(ds)):
            gold.features(ds[i])
        kw = {"dataset": ds, "reward": reward, "action_bins": args.action_bins, "gold": gold}
        n = args.num_envs
        print(f"{args.env_id}, N={n}, reward: {reward_desc}, torch threads: {torch.get_num_threads()}")

        native = gym.make_vec(args.env_id, num_envs=n, **kw)
        sync = gym.make_vec(
            args.env_id,
            num_envs=n,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            **kw,
        )
        # warm each sync sub-env's CQT LRU too, so the comparison is scoring vs scoring
        sync.reset(seed=0)
        for _ in range(3):
            sync.step(sync.action_space.sample())

        results: dict[str, float] = {}
        results["native"] = time_env(native, args.steps, args.warmup, seed=1)
        results["sync"] = time_env(sync, args.sync_steps, 1, seed=1)
        if args.group_size:
            results[f"native groups={args.group_size}"] = time_env(
                native, args.steps, args.warmup, seed=1, options={"group_size": args.group_size}
            )
        native.close()
        sync.close()

    base = results["sync"]
    print(f"{'env':<24}{'steps/s':>10}{'vs sync':>10}")
    for name, sps in results.items():
        print(f"{name:<24}{sps:>10.0f}{sps / base:>9.1f}x")


if __name__ == "__main__":
    main()
