"""Policy benches, ratios measured in one run (CPU).

1. ``generate_actions`` with G samples per state vs one plain forward pass (target <= 1.25x):
   sampling must reuse one forward pass, not run one per sample.
2. Weight bytes of the ViT backbone's Linear layers, bitsandbytes 8-bit vs float32
   (target >= 3.5x less). Counts weights, biases and the 8-bit per-row scales.
3. Peak memory of one forward+backward at batch 64, gradient checkpointing vs plain
   (target <= 0.6x). Method (no GPU here): each mode runs in a fresh subprocess under
   ``torch.profiler`` with ``profile_memory=True``; the CPU allocator's "[memory]" events
   carry a running "Total Allocated" for allocations made inside the profiled window, so its
   maximum is the peak of activations + gradients + temporaries (weights and the input batch
   exist before the window and are excluded; they are the same in both modes). As a
   cross-check the process's peak RSS growth (``VmHWM`` after resetting it through
   ``/proc/self/clear_refs``) is reported too.
4. CNN inference on whole-song show windows (batch 8 x 432 frames: a window and its song
   context), the frequency stack's channels-last convolutions (what runs without gradients)
   vs the default layout (what training uses): the same numbers, checked here, in less time.

Run: ``python bench/bench_policy.py`` (about 1-2 minutes on 2 cores). ``--threads`` sets
torch's intra-op threads (default 1: stable numbers on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CQT_SHAPE = (2, 84, 216)


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds (one warm-up call first)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_sampling(batch: int, group: int, repeats: int) -> dict[str, float]:
    from cqtml_policy import CQTViTModel, TemporalCNNModel

    torch.manual_seed(0)
    states = torch.rand(batch, *CQT_SHAPE)
    out: dict[str, float] = {}
    for name, model in (
        ("vit", CQTViTModel.create_model(CQT_SHAPE, device="cpu")),
        ("cnn", TemporalCNNModel.create_model(CQT_SHAPE, device="cpu")),
    ):
        model.eval()

        def forward(model=model) -> None:
            with torch.no_grad():
                model(states)

        def generate(model=model) -> None:
            model.generate_actions(states, num_actions_per_state=group)

        t_fwd, t_gen = timed(forward, repeats), timed(generate, repeats)
        out[f"{name}_forward_ms"] = 1e3 * t_fwd
        out[f"{name}_generate_ms"] = 1e3 * t_gen
        out[f"{name}_ratio"] = t_gen / t_fwd
    return out


def bench_int8_bytes() -> dict[str, float]:
    from cqtml_policy import CQTViTModel
    from cqtml_policy.int8 import linear_weight_bytes

    torch.manual_seed(0)
    fp32 = CQTViTModel.create_model(CQT_SHAPE, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        fp32.save_pretrained(tmp)
        int8 = CQTViTModel.from_pretrained(tmp, device="cpu", use_8bit=True)
    b32, b8 = linear_weight_bytes(fp32.backbone), linear_weight_bytes(int8.backbone)
    x = torch.rand(4, *CQT_SHAPE)
    with torch.no_grad():
        err = (fp32(x).exp() - int8(x).exp()).abs().max().item()
    return {"fp32_bytes": b32, "int8_bytes": b8, "ratio": b32 / b8, "max_prob_error": err}


def _peak_child(checkpointing: bool, batch: int) -> dict[str, float]:
    """Runs in a fresh process: peak memory of one forward+backward."""
    from torch.profiler import ProfilerActivity, profile

    from cqtml_policy import CQTViTModel

    torch.manual_seed(0)
    model = CQTViTModel.create_model(
        CQT_SHAPE, device="cpu", gradient_checkpointing=checkpointing
    ).train()
    x = torch.rand(batch, *CQT_SHAPE)
    index = torch.randint(0, model.distribution_size, (batch, model.num_devices, CQT_SHAPE[-1], 1))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).gather(-1, index).sum().backward()

    step()  # warm-up: allocator caches, lazy inits; gradients then exist in both modes
    model.zero_grad(set_to_none=True)
    rss_before = _vm_kib("VmRSS")
    reset_ok = _reset_peak_rss()
    step()
    rss_peak = _vm_kib("VmHWM")
    model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    trace = Path(tempfile.mkstemp(suffix=".json")[1])
    try:
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    finally:
        trace.unlink(missing_ok=True)
    totals = [
        e["args"]["Total Allocated"]
        for e in events
        if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type") == 0
    ]
    return {
        "profiler_peak_bytes": float(max(totals)),
        "rss_growth_bytes": float((rss_peak - rss_before) * 1024) if reset_ok else float("nan"),
    }


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def bench_checkpointing(batch: int, threads: int) -> dict[str, float]:
    out: dict[str, float] = {}
    env = {**os.environ, "KINETO_LOG_LEVEL": "5"}  # keep the profiler's own log quiet
    for mode in ("plain", "checkpointing"):
        cmd = [sys.executable, __file__, "--child", mode, "--memory-batch", str(batch)]
        cmd += ["--threads", str(threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"child {mode} failed:\n{res.stderr[-2000:]}")
        data = json.loads(res.stdout.strip().splitlines()[-1])
        out.update({f"{mode}_{k}": v for k, v in data.items()})
    out["ratio"] = out["checkpointing_profiler_peak_bytes"] / out["plain_profiler_peak_bytes"]
    out["rss_ratio"] = out["checkpointing_rss_growth_bytes"] / out["plain_rss_growth_bytes"]
    return out


def bench_cnn_layout(repeats: int) -> dict[str, float]:
    from cqtml_policy import create_policy
    from cqtml_policy.cnn import FrequencyStack

    torch.manual_seed(0)
    model = create_policy("cnn", CQT_SHAPE, num_devices=4, device="cpu").eval()
    x = torch.rand(8, 2, CQT_SHAPE[1], 432)
    stacks = [m for m in model.modules() if isinstance(m, FrequencyStack)]
    out, ms = {}, {}
    for name, on in (("default", False), ("channels_last", True)):
        for m in stacks:
            m.channels_last_inference = on
        with torch.inference_mode():
            ms[name] = 1000 * timed(lambda: model(x), repeats)
            out[name] = model(x)
    for m in stacks:
        m.channels_last_inference = True
    return {"default_ms": ms["default"], "channels_last_ms": ms["channels_last"],
            "ratio": ms["channels_last"] / ms["default"],
            "max_diff": float((out["default"] - out["channels_last"]).abs().max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="states per generate_actions call")
    parser.add_argument("--group", type=int, default=8, help="G: samples per state")
    parser.add_argument("--memory-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=["plain", "checkpointing"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(_peak_child(args.child == "checkpointing", args.memory_batch)))
        return

    mib = 1024**2
    print(f"torch {torch.__version__}, threads={args.threads}, CQT {list(CQT_SHAPE)}\n")
    s = bench_sampling(args.batch, args.group, args.repeats)
    print(f"[1] generate_actions, {args.batch} states x G={args.group} vs one forward (median)")
    for name in ("vit", "cnn"):
        print(
            f"    {name}: forward {s[f'{name}_forward_ms']:8.1f} ms   generate "
            f"{s[f'{name}_generate_ms']:8.1f} ms   ratio {s[f'{name}_ratio']:.3f}x"
        )
    q = bench_int8_bytes()
    print("[2] ViT backbone Linear weight bytes, float32 vs 8-bit")
    print(
        f"    fp32 {q['fp32_bytes'] / mib:.2f} MiB   int8 {q['int8_bytes'] / mib:.2f} MiB   "
        f"{q['ratio']:.2f}x less   (max prob. error {q['max_prob_error']:.4f})"
    )
    c = bench_checkpointing(args.memory_batch, args.threads)
    print(f"[3] ViT forward+backward peak memory, batch {args.memory_batch}")
    print(
        f"    profiler: plain {c['plain_profiler_peak_bytes'] / mib:8.1f} MiB   checkpointing "
        f"{c['checkpointing_profiler_peak_bytes'] / mib:8.1f} MiB   ratio {c['ratio']:.3f}x"
    )
    print(
        f"    RSS     : plain {c['plain_rss_growth_bytes'] / mib:8.1f} MiB   checkpointing "
        f"{c['checkpointing_rss_growth_bytes'] / mib:8.1f} MiB   ratio {c['rss_ratio']:.3f}x"
    )
    lay = bench_cnn_layout(args.repeats)
    print("[4] CNN inference, 8 show windows of 432 frames: default layout vs channels-last")
    print(f"    default {lay['default_ms']:8.1f} ms   channels-last {lay['channels_last_ms']:8.1f} ms"
          f"   ratio {lay['ratio']:.3f}x   (max log-prob difference {lay['max_diff']:.1e})")
    rows = [
        ("generate G=8 / forward (ViT)", s["vit_ratio"], "<= 1.25", s["vit_ratio"] <= 1.25),
        ("CNN inference channels-last / default", lay["ratio"], "< 1", lay["ratio"] < 1),
        ("fp32 / int8 linear weight bytes", q["ratio"], ">= 3.5", q["ratio"] >= 3.5),
        ("checkpointing / plain peak memory", c["ratio"], "<= 0.6", c["ratio"] <= 0.6),
    ]
    print("\nSUMMARY")
    for label, value, target, ok in rows:
        print(f"    {label:36s} {value:7.3f}x   target {target:8s} {'OK' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
