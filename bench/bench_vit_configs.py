"""Which ViT learns per CPU-second: training-step throughput (forward + backward, clips/s) of
ViT sizes and strip widths next to the CNN, at the GRPO (8 clips) and SFT (16 clips) batch
shapes, plus a no-grad rollout forward, measured side by side in one run.

    python bench/bench_vit_configs.py          # prints a table; --threads / --repeats / --quick
"""

from __future__ import annotations

import argparse
import time

import torch

from cqtml_policy import registry

SHAPE = (2, 84, 216)
SMALL = {"embed_dim": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0}
CONFIGS = [
    ("cnn", "cnn", {}),
    ("vit (tiny 192x12, strips of 2)", "vit", {}),
    ("vit tiny, strips of 4", "vit", {"patch_size": (0, 4)}),
    ("192 x 4 blocks, strips of 2", "vit", {"size": {"depth": 4}}),
    ("vit-small (128 x 4, mlp 2), strips of 2", "vit-small", {}),
    ("vit-small, strips of 4", "vit-small", {"patch_size": (0, 4)}),
    ("96 x 2 blocks, mlp 2, strips of 2", "vit",
     {"size": {"embed_dim": 96, "depth": 2, "num_heads": 4, "mlp_ratio": 2.0}}),
]


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="one repeat, GRPO batch only")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    repeats = 1 if a.quick else a.repeats
    batches = (8,) if a.quick else (8, 16)
    rows = []
    for label, name, kw in CONFIGS:
        torch.manual_seed(0)
        m = registry.create_policy(name, SHAPE, num_devices=4, device="cpu", **kw)
        params = sum(p.numel() for p in m.parameters())
        row = [label, f"{params / 1e6:.2f}M"]
        for b in batches:
            x = torch.rand(b, *SHAPE)

            def fwd_bwd(m=m, x=x):
                m.zero_grad(set_to_none=True)
                m(x).logsumexp(-1).mean().backward()

            row.append(b / _time(fwd_bwd, repeats))
        x = torch.rand(8, *SHAPE)

        def rollout(m=m, x=x):
            with torch.inference_mode():
                m(x)

        row.append(8 / _time(rollout, repeats))
        rows.append(row)
    cnn = rows[0]
    print(f"CQT {SHAPE}, {a.threads} thread(s), clips/s (higher is better), ratio = vs the CNN\n")
    head = "| config | params | " + " | ".join(f"fwd+bwd b{b}" for b in batches)
    print(head + " | rollout fwd b8 |")
    print("|---" * (3 + len(batches)) + "|")
    for row in rows:
        cells = [f"{v:.1f} ({v / c:.2f}x)" for v, c in zip(row[2:], cnn[2:])]
        print(f"| {row[0]} | {row[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
