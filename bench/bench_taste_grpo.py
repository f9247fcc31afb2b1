"""GRPO against a person's fine-tuned reward model vs against the shipped one: whose taste wins?

    python bench/bench_taste.py --save-model runs/reward-taste     # the person's model
    python bench/bench_taste_grpo.py --reward-model runs/reward-taste [--iterations 40]

Two short GRPO runs (``agents/grpo.py``'s ``train(Args(...))``), same budget and seed: one
against ``--reward-model`` (fine-tuned on the simulated person of ``bench_taste.py``), one
against the shipped reward model (learned from gold labels). Each final policy then plays the
same held-out synthetic clips (greedy), scored by the person's taste (``bench_taste.taste``)
and by the gold scorer.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("bench_taste", ROOT / "bench" / "bench_taste.py")
bench_taste = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_taste)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reward-model", default=None, help="the person's fine-tuned reward model "
                    "(from `python bench/bench_taste.py --save-model DIR`)")
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--clips-per-iteration", type=int, default=4)
    ap.add_argument("--num-generations", type=int, default=16)
    ap.add_argument("--eval-clips", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.reward_model is None:  # `make bench` runs every bench without arguments
        print("skipped: needs --reward-model DIR (make one with "
              "`python bench/bench_taste.py --save-model DIR`)")
        return 0
    import torch

    torch.set_num_threads(1)
    from agents import grpo
    from agents.common import Evaluator, make_policy, policy_actions, split_data

    work = Path(tempfile.mkdtemp(prefix="bench-taste-grpo-"))
    rows = {}
    split = split_data("synthetic", 5.0, eval_clips=args.eval_clips, seed=args.seed)
    evaluator = Evaluator(split.eval, split.eval_indices, num_devices=4)
    for name, rm in (("person's fine-tuned model", args.reward_model),
                     ("shipped (gold-trained) model", None)):
        t0 = time.time()
        run = work / ("person" if rm else "shipped")
        grpo.train(grpo.Args(
            seed=args.seed, iterations=args.iterations,
            clips_per_iteration=args.clips_per_iteration, num_generations=args.num_generations,
            reward="model", reward_model=rm, train_clips=64, eval_clips=args.eval_clips,
            run_dir=str(run), checkpoint_every=args.iterations, eval_every=10**6,
            image_every=10**6, final_report=False, progress=False, device="cpu",
            warmup_iterations=2))
        ckpt = run / "checkpoints" / "latest"
        policy = make_policy(str(ckpt), evaluator.cqts.shape[1:], 4, device="cpu")
        if hasattr(policy, "eval"):
            policy.eval()
        torch.manual_seed(0)
        acts = policy_actions(policy, evaluator.cqts, temperature=0.0)
        taste = np.mean([bench_taste.taste(a, bench_taste.strip_of(c))
                         for a, c in zip(acts, evaluator.cqts)])
        gold = float(np.mean(evaluator.score_actions(acts).gold))
        rows[name] = (taste, gold, time.time() - t0)
    print(f"GRPO: {args.iterations} iterations x {args.clips_per_iteration} clips x "
          f"{args.num_generations} generations, seed {args.seed}, CNN policy, 1 thread; "
          f"{args.eval_clips} held-out clips\n")
    print("| GRPO against | taste score (higher = the person's taste) | gold | seconds |")
    print("|---|---:|---:|---:|")
    for name, (t, g, s) in rows.items():
        print(f"| {name} | {t:.3f} | {g:.3f} | {s:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
