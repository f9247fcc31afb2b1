"""Which ViT learns per CPU-second: training-step throughput (forward + backward, clips/s) of
ViT sizes and strip widths next to the CNN, at the GRPO (8 clips) and SFT (16 clips) batch
shapes, plus a no-grad rollout forward, measured side by side in one run.

    python bench/bench_vit_configs.py          # prints a table; --threads / --repeats / --quick

Configs are timed round-robin (each repeat times every config once) and the median is
reported, so a drifting load on a shared machine hits all configs alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cqtml_policy import registry

SHAPE = (2, 84, 216)
CONFIGS = [
    ("cnn", "cnn", {}),
    ("vit (tiny 192x12, strips of 2)", "vit", {}),
    ("vit tiny, strips of 4", "vit", {"patch_size": (0, 4)}),
    ("192 x 4 blocks, strips of 2", "vit", {"size": {"depth": 4}}),
    ("vit-small (128 x 4, mlp 2), strips of 2", "vit-small", {}),
    ("vit-small, strips of 4", "vit-small", {"patch_size": (0, 4)}),
    ("vit-small, strips of 4, frame_conv 5", "vit-small", {"patch_size": (0, 4), "frame_conv": 5}),
    ("96 x 2 blocks, mlp 2, strips of 2", "vit",
     {"size": {"embed_dim": 96, "depth": 2, "num_heads": 4, "mlp_ratio": 2.0}}),
]


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="one repeat, GRPO batch only")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    repeats = 1 if a.quick else a.repeats
    batches = (8,) if a.quick else (8, 16)
    inputs = {b: torch.rand(b, *SHAPE) for b in batches}
    models, jobs = [], []  # jobs[i] = [(clips, fn), ...] for config i, one per table column
    for label, name, kw in CONFIGS:
        torch.manual_seed(0)
        m = registry.create_policy(name, SHAPE, num_devices=4, device="cpu", **kw)
        models.append((label, f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f}M"))

        def fwd_bwd(m=m, x=None):
            m.zero_grad(set_to_none=True)
            m(x).logsumexp(-1).mean().backward()

        def rollout(m=m):
            with torch.inference_mode():
                m(inputs[8] if 8 in inputs else torch.rand(8, *SHAPE))

        cols = [(b, lambda f=fwd_bwd, x=inputs[b]: f(x=x)) for b in batches] + [(8, rollout)]
        for _, fn in cols:
            fn()  # warm-up
        jobs.append(cols)
    # round-robin: every repeat times each config once, so a change in the machine's load
    # hits all configs alike (a shared machine's load drifts over a minute); then medians
    times = [[[] for _ in cols] for cols in jobs]
    for _ in range(repeats):
        for i, cols in enumerate(jobs):
            for j, (_, fn) in enumerate(cols):
                times[i][j].append(_once(fn))
    rate = [[jobs[i][j][0] / statistics.median(t) for j, t in enumerate(ts)]
            for i, ts in enumerate(times)]
    print(f"CQT {SHAPE}, {a.threads} thread(s), {repeats} round-robin repeats, median clips/s "
          "(higher is better), ratio = vs the CNN\n")
    head = "| config | params | " + " | ".join(f"fwd+bwd b{b}" for b in batches)
    print(head + " | rollout fwd b8 |")
    print("|---" * (3 + len(batches)) + "|")
    for (label, params), row in zip(models, rate):
        cells = [f"{v:.1f} ({v / c:.2f}x)" for v, c in zip(row, rate[0])]
        print(f"| {label} | {params} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
