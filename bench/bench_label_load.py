"""The labelling server under load: 8 simulated labellers at once, latency and no lost label.

    python bench/bench_label_load.py                  # 8 labellers, 60 s, 1 s thinking per pair
    python bench/bench_label_load.py --think 0        # no thinking: a stress test

Starts ``cqtml-label serve`` in its own process on 127.0.0.1 (as a user would), then each
labeller (a thread with its own httpx client) loops: think, answer A/B/tie, and the next pair
is *ready* when the answer's response (which carries the next pair) has arrived and that
pair's audio has been fetched -- what the page waits for before it can play. A real person
watches a 5 s clip per pair, so 1 s thinking is already a fast labeller. At the end the
server is stopped (SIGINT: it merges), and the labels in the journals and in the merged store
(``label_meta``, validated) are counted against the answers the server acknowledged.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def labeller(base: str, name: str, clock: dict, think: float, seed: int, out: dict) -> None:
    try:
        _labeller(base, name, clock, think, seed, out)
    except Exception as exc:  # counted, printed: a dead labeller must not pass silently
        print(f"{name}: {exc!r}", file=sys.stderr)
        out.setdefault(name, {"lat": [], "acked": 0, "errors": 0})["errors"] += 1


def _labeller(base: str, name: str, clock: dict, think: float, seed: int, out: dict) -> None:
    import httpx

    rng = np.random.default_rng(seed)
    lat, acked, errors = [], 0, 0
    with httpx.Client(base_url=base, timeout=120.0) as c:
        try:  # warm-up: the first pair of every labeller, before the clock starts
            p = c.post("/api/next", json={"labeller": name}).json()
            c.get(p["audio_url"], params={"labeller": name})
        finally:
            clock["barrier"].wait()
        while time.time() < clock["stop_at"]:
            time.sleep(think * rng.uniform(0.5, 1.5))
            choice = str(rng.choice(["a", "b", "tie"], p=[0.45, 0.45, 0.1]))
            t0 = time.perf_counter()
            r = c.post("/api/answer", json={"labeller": name, "pair_id": p["pair_id"],
                                            "choice": choice, "played_fraction": 1.0})
            if r.status_code != 200:
                errors += 1
                p = c.post("/api/next", json={"labeller": name}).json()
                continue
            acked += 1
            p = r.json()["next"]
            a = c.get(p["audio_url"], params={"labeller": name})
            lat.append(time.perf_counter() - t0)
            errors += int(a.status_code != 200)
            out[name] = {"lat": lat, "acked": acked, "errors": errors}
        out[name] = {"lat": lat, "acked": acked, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labellers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--think", type=float, default=1.0, help="mean seconds per pair")
    ap.add_argument("--clips", type=int, default=64, help="synthetic clips served")
    args = ap.parse_args(argv)
    import httpx

    from cqtml_env import PreferenceDataset
    from cqtml_env.labelling.journal import Journal, effective_answers

    store = Path(tempfile.mkdtemp(prefix="bench-label-load-")) / "store"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "cqtml_env" / "src"), str(ROOT / "cqtml_policy" / "src"),
         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cqtml_env.cli.label", "serve", "--data",
         f"synthetic:{args.clips}", "--store", str(store), "--port", str(port),
         "--merge-every", "2", "--undo-window", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while True:
        if proc.poll() is not None:
            print(proc.stdout.read(), file=sys.stderr)
            return 1
        try:
            if httpx.get(f"{base}/api/info", timeout=1.0).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
        if time.time() - t0 > 120:
            proc.kill()
            raise SystemExit("server did not start")
    out: dict = {}
    clock: dict = {}
    clock["barrier"] = threading.Barrier(
        args.labellers, action=lambda: clock.update(stop_at=time.time() + args.seconds))
    threads = [threading.Thread(target=labeller, args=(base, f"load-{i}", clock, args.think,
                                                       i, out)) for i in range(args.labellers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = httpx.get(f"{base}/api/stats", timeout=10).json()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
    lat = np.concatenate([np.asarray(v["lat"]) for v in out.values()] + [np.zeros(0)]) * 1e3
    if len(lat) == 0:
        print("no answer got through", file=sys.stderr)
        return 1
    acked = sum(v["acked"] for v in out.values())
    errors = sum(v["errors"] for v in out.values())
    records, bad = Journal(store / "journal").read()
    journal = len([r for r in effective_answers(records) if r.get("choice") in ("a", "b", "tie")])
    ds = PreferenceDataset(store)
    problems = ds.validate()
    stored = len(ds.label_meta())
    ok = acked == journal == stored == stats["acknowledged"] and not problems and errors == 0
    print(f"{args.labellers} labellers x {args.seconds:.0f} s, think {args.think} s/pair, "
          f"synthetic:{args.clips}, server in its own process (OMP_NUM_THREADS=1)\n")
    print("| answers | answers/s | p50 ms | p95 ms | p99 ms | max ms | acknowledged "
          "| in journals | in store | errors | store valid |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print(f"| {len(lat)} | {len(lat) / args.seconds:.1f} | {np.percentile(lat, 50):.0f} "
          f"| {np.percentile(lat, 95):.0f} | {np.percentile(lat, 99):.0f} | {lat.max():.0f} "
          f"| {acked} (server: {stats['acknowledged']}) | {journal} | {stored} | {errors} "
          f"| {'yes' if not problems else problems[:2]} |")
    print(f"\nlatency = answer sent -> next pair (in the answer's response) and its audio fetched;"
          f" labels written == acknowledged: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
