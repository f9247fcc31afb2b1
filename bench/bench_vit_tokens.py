"""What time-resolving ViT tokens cost: forward and forward+backward of the ViT policy with
0.1's 16 x 16 patches vs full-height strips (the registry's default) and small rectangles,
measured side by side in one run on one thread.

    python bench/bench_vit_tokens.py            # prints a table; --batch / --repeats to change
"""

from __future__ import annotations

import argparse
import time

import torch

from cqtml_policy import CQTViTModel

PATCHES = [(16, "16 x 16 (0.1)"), ((0, 4), "all bins x 4"), ((0, 2), "all bins x 2 (default)"),
           ((21, 4), "21 bins x 4")]


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    shape = (2, 84, 216)
    x = torch.rand(a.batch, *shape)
    rows = []
    for patch, label in PATCHES:
        torch.manual_seed(0)
        m = CQTViTModel.create_model(shape, patch_size=patch, device="cpu", relative_input=True)
        _, h, w = m.backbone.grid_shape(*shape[1:])

        def fwd(m=m):
            with torch.no_grad():
                m(x)

        def fwd_bwd(m=m):
            m.zero_grad(set_to_none=True)
            m(x).logsumexp(-1).mean().backward()

        rows.append((label, h * w, m.patch_size[1], _time(fwd, a.repeats), _time(fwd_bwd, a.repeats)))
    base = rows[0]
    print(f"ViT-tiny policy, CQT {shape}, batch {a.batch}, {a.threads} thread(s)\n")
    print("| patch | tokens | frames/token | forward ms | fwd+bwd ms | fwd+bwd vs 16x16 |")
    print("|---|---|---|---|---|---|")
    for label, n, f, t1, t2 in rows:
        print(f"| {label} | {n} | {f} | {t1 * 1e3:.0f} | {t2 * 1e3:.0f} | {t2 / base[4]:.2f}x |")


if __name__ == "__main__":
    main()
