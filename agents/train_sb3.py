"""PPO / A2C with ``cqtml_policy.sb3.CategoricalSB3Policy`` on CQTML-v0's discrete action mode.

The env is the natively batched vector env behind SB3's ``VecEnv`` API
(``cqtml_env.adapters.sb3_vec_env.CQTMLSB3VecEnv``), so SB3 never falls back to one env per process. Logs
to TensorBoard under ``<run-dir>``; an eval callback reports held-out gold and proxy
scores on the same clips (and with the same tags) as ``agents/grpo.py``, with env steps on
the x axis, so the two learning curves compare directly.

SB3 checkpoints are SB3's own zip format (it contains cloudpickled parts): load only your own.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from agents.common import (
    Evaluator,
    default_threads,
    keep_freed_memory,
    normalized_score,
    split_data,
    win_rate,
)


@dataclass
class Args:
    exp_name: str = "sb3"
    """name of this experiment (part of the run name)"""
    algo: Literal["ppo", "a2c"] = "ppo"
    """SB3 algorithm"""
    seed: int = 1
    """seed of the run"""
    total_timesteps: int = 4096
    """environment steps (= scored actions) to train for"""
    num_envs: int = 16
    """parallel sub-envs of the native vector env"""
    policy: Literal["vit", "cnn"] = "vit"
    """backbone of CategoricalSB3Policy"""
    reward: Literal["model", "gold"] = "model"
    """training reward: learned reward model (proxy) or the gold scorer"""
    data: str = "synthetic"
    """synthetic | synthetic:N | folder:PATH | fma:PATH | musicnet:PATH"""
    train_clips: int = 512
    """synthetic training clips"""
    eval_clips: int = 32
    """held-out clips for evaluation"""
    max_duration: float = 5.0
    """clip length in seconds"""
    num_devices: int = 4
    """output devices"""
    distribution_size: int = 32
    """K activation levels (discrete action mode)"""
    learning_rate: float = 3e-4
    """optimizer learning rate"""
    n_steps: int = 4
    """rollout length per sub-env before an update (PPO/A2C n_steps)"""
    batch_size: int = 32
    """PPO minibatch size"""
    n_epochs: int = 2
    """PPO epochs per rollout"""
    ent_coef: float = 0.0
    """entropy bonus"""
    eval_every: int = 1024
    """evaluate on held-out clips every N environment steps"""
    checkpoint_every: int = 2048
    """save an SB3 checkpoint every N environment steps"""
    run_dir: str | None = None
    """TensorBoard + checkpoints directory (default runs/<run-name>)"""
    device: str = "auto"
    """torch device"""
    malloc_top_pad_mb: int = 1024
    """keep up to this much freed heap in the process (glibc M_TOP_PAD, see common.keep_freed_memory); 0: glibc's default"""


def actions_from_flat(flat: np.ndarray, num_devices: int, k: int) -> np.ndarray:
    """SB3's flat MultiDiscrete indices ``[N, D*T]`` -> activations ``[N, D, T]`` in [0, 1]."""
    return (np.asarray(flat).reshape(len(flat), num_devices, -1) / (k - 1)).astype(np.float32)


def make_eval_callback(evaluator: Evaluator, args: Args):
    from stable_baselines3.common.callbacks import BaseCallback

    class HeldOutGold(BaseCallback):
        """Held-out gold/proxy of the deterministic policy, logged as ``eval/*``."""

        def __init__(self) -> None:
            super().__init__()
            self.next_eval = args.eval_every
            self.best = -np.inf
            self.history: list[tuple[int, float]] = []

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                self.next_eval += args.eval_every
                self.evaluate()
            return True

        def evaluate(self) -> dict[str, float]:
            flat, _ = self.model.predict(evaluator.cqts, deterministic=True)
            res = evaluator.score_actions(actions_from_flat(flat, args.num_devices, args.distribution_size))
            band, rnd = evaluator.baseline("band-follow"), evaluator.baseline("random")
            m = {
                "eval/gold_greedy": float(res.gold.mean()),
                "eval/proxy_greedy": float(res.proxy.mean()),
                "eval/gold_band_follow": float(band.gold.mean()),
                "eval/gold_random": float(rnd.gold.mean()),
                "eval/normalized_score": normalized_score(float(res.gold.mean()), float(rnd.gold.mean()), float(band.gold.mean())),
                "eval/win_rate_vs_band_follow": win_rate(res.gold, band.gold)["win_rate"],
            }
            for k, v in m.items():
                self.logger.record(k, v)
            self.logger.dump(self.num_timesteps)
            self.history.append((self.num_timesteps, m["eval/gold_greedy"]))
            return m

    return HeldOutGold()


def train(args: Args) -> dict:
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.vec_env import VecMonitor

    from cqtml_env.adapters.sb3_vec_env import CQTMLSB3VecEnv
    from cqtml_policy.sb3 import CategoricalSB3Policy

    default_threads()
    keep_freed_memory(args.malloc_top_pad_mb)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    run_name = f"CQTML-v0__{args.exp_name}-{args.algo}__{args.seed}__{int(time.time())}"
    run_dir = Path(args.run_dir or f"runs/{run_name}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(asdict(args), indent=2))

    split = split_data(args.data, args.max_duration, args.eval_clips, args.train_clips, args.seed)
    env = CQTMLSB3VecEnv.make(
        num_envs=args.num_envs,
        dataset=split.train,
        reward=args.reward,
        action_bins=args.distribution_size,
        num_devices=args.num_devices,
        max_duration=args.max_duration,
    )
    env.seed(args.seed)
    env = VecMonitor(env)
    policy_kwargs = dict(backbone=args.policy, model_kwargs=dict(distribution_size=args.distribution_size))
    common = dict(policy_kwargs=policy_kwargs, learning_rate=args.learning_rate, n_steps=args.n_steps,
                  ent_coef=args.ent_coef, seed=args.seed, device=args.device, verbose=0,
                  tensorboard_log=str(run_dir))
    if args.algo == "ppo":
        model = PPO(CategoricalSB3Policy, env, batch_size=args.batch_size, n_epochs=args.n_epochs, **common)
    else:
        model = A2C(CategoricalSB3Policy, env, **common)

    evaluator = Evaluator(split.eval, split.eval_indices, num_devices=args.num_devices)
    eval_cb = make_eval_callback(evaluator, args)
    ckpt_cb = CheckpointCallback(save_freq=max(1, args.checkpoint_every // args.num_envs),
                                 save_path=str(run_dir / "checkpoints"), name_prefix=args.algo)
    model.learn(total_timesteps=args.total_timesteps, callback=CallbackList([eval_cb, ckpt_cb]),
                tb_log_name=args.algo, progress_bar=False)
    final = eval_cb.evaluate() if not eval_cb.history or eval_cb.history[-1][0] != model.num_timesteps else {}
    model.save(run_dir / "checkpoints" / f"{args.algo}_final")
    env.close()
    return {"history": eval_cb.history, "final": final, "run_dir": str(run_dir)}


if __name__ == "__main__":
    import tyro

    print(json.dumps(train(tyro.cli(Args)), indent=2, default=str))
