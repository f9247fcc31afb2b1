"""GRPO iteration throughput vs a bare policy forward+backward on the same batch (one run).

A GRPO iteration = draw B clips, sample G actions each, score B*G actions through the vector
env (reward model + gold for the info), advantages, loss, backward, optimizer step. The bare
baseline is only the policy's forward + backward + optimizer step on the same B clips. Both
are reported as clips/s; target ratio GRPO / bare >= 0.8. The bare runs bracket the GRPO run
and are averaged, so machine load drifts cancel to first order. Both skip 2 warm-up iterations;
GRPO's time per iteration is the median of its logged ``charts/iteration_time``. GRPO draws from a pool of
``--pool`` clips (default: B), so per-clip caches (CQT, gold features, reward-model encoding)
are warm after the first iteration: the steady state of a long run, which revisits its
training clips (1,500 iterations x 8 draws over 256 clips in `make train`). The whole run
(both sides) uses GRPO's default allocator setting (``--malloc-top-pad-mb``; 0 = glibc's
default), and both sides step the same optimizer (``grpo.make_optimizer``).

    python bench/bench_grpo.py [--policy vit|cnn] [--clips 8] [--generations 32] [--iters 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from agents import grpo
from agents.common import keep_freed_memory, make_policy, split_data


def bare_clips_per_s(policy_kind: str, clips: int, iters: int, max_duration: float) -> float:
    split = split_data("synthetic:64", max_duration)
    states = torch.as_tensor(split.train.get_many(range(clips)))
    policy = make_policy(policy_kind, tuple(states.shape[1:]), 4, device="cpu")
    opt = grpo.make_optimizer(list(policy.parameters()), grpo.Args(), "cpu")  # GRPO's optimizer
    index = torch.randint(0, 32, (clips, 4, states.shape[-1]))
    for i in range(iters + 2):  # 2 warm-up iterations
        if i == 2:
            t0 = time.perf_counter()
        lp = policy(states)  # [B, D, T, K]
        loss = -lp.gather(-1, index.unsqueeze(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clips * iters / (time.perf_counter() - t0)


PHASES = grpo.PERF_PHASES


def grpo_clips_per_s(policy_kind: str, clips: int, generations: int, iters: int, max_duration: float,
                     pool: int, malloc_top_pad_mb: int) -> tuple[float, dict[str, float]]:
    """Clips/s of GRPO iterations, and the median milliseconds of each logged phase."""
    with tempfile.TemporaryDirectory() as tmp:
        args = grpo.Args(policy=policy_kind, iterations=iters, clips_per_iteration=clips,
                         num_generations=generations, train_clips=pool, eval_clips=2, max_duration=max_duration,
                         eval_every=0, checkpoint_every=0, image_every=0, run_dir=tmp, progress=False,
                         final_report=False, warmup_iterations=0, malloc_top_pad_mb=malloc_top_pad_mb)
        grpo.train(args)
        from compare import read_scalars

        tags = ("charts/iteration_time", *(f"perf/{p}_time" for p in PHASES))
        scalars = {k: [v for _, v in pts] for k, pts in read_scalars(tmp, tags).items()}
    # like the bare runs, skip 2 warm-up iterations; the median ignores the odd slow iteration
    phases = {p: 1e3 * float(np.median(scalars[f"perf/{p}_time"][2:])) for p in PHASES}
    return clips / float(np.median(scalars["charts/iteration_time"][2:])), phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="vit", choices=["vit", "cnn"])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--generations", type=int, default=32)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--pool", type=int, default=0, help="training clips to draw from (0 = B)")
    ap.add_argument("--max-duration", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--malloc-top-pad-mb", type=int, default=grpo.Args.malloc_top_pad_mb,
                    help="glibc M_TOP_PAD for the whole run, both sides (GRPO's default; 0: glibc's default)")
    a = ap.parse_args()
    tuned = keep_freed_memory(a.malloc_top_pad_mb)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    before = bare_clips_per_s(a.policy, a.clips, a.iters, a.max_duration)
    g, phases = grpo_clips_per_s(a.policy, a.clips, a.generations, a.iters, a.max_duration, a.pool or a.clips,
                                 a.malloc_top_pad_mb)
    after = bare_clips_per_s(a.policy, a.clips, a.iters, a.max_duration)
    bare = (before + after) / 2
    print(f"policy={a.policy} B={a.clips} G={a.generations} iters={a.iters} threads={torch.get_num_threads()} "
          f"malloc_top_pad={f'{a.malloc_top_pad_mb} MiB' if tuned else 'glibc default'}")
    print(f"bare forward+backward+step : {bare:7.1f} clips/s  (runs: {before:.1f}, {after:.1f})")
    print(f"GRPO iteration             : {g:7.1f} clips/s  ({g * a.generations:.0f} scored actions/s; "
          f"pool of {a.pool or a.clips} clips)")
    print("GRPO phases (median ms)    : " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
          + f"; rest {1e3 * a.clips / g - sum(phases.values()):.1f}")
    print(f"ratio GRPO / bare          : {g / bare:.2f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
