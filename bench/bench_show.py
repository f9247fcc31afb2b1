"""Show benches (CPU), ratios measured side by side in one run.

1. End-to-end real-time factor of ``make_show`` on a generated 4-minute song (decode + CQT +
   policy + limiter + every file: show.csv, show.json, show.mid, overview.png,
   preview.mp4) against the CQT alone (decode + streamed CQT to disk, the pipeline's own
   first stage run by itself), for the CNN and ViT policies (random-init weights: timing
   only, the shows are meaningless; the ViT as `vit`, `vit-small` and `vit-bands`, the CNN also as `cnn-bands`, and both with the pulse inputs and with the tracked beats) and the band follower. Target: pipeline <= 1.5x CQT.
   Columns: ``cqt`` is the streamed CQT *with the policy windows run alongside it* (the CQT
   in a worker thread; on two idle cores the policy hides behind it), ``policy_tail`` the
   windows left after the CQT ends, then tempo, limiter and each file. Also printed: CPU
   seconds of all threads, pipeline vs CQT alone -- the work, which a loaded machine does
   not distort the way it distorts wall time (on a busy machine there is no idle core to
   overlap onto, so wall ratios there come out worse than on a quiet one).
   ``--no-video`` leaves out preview.mp4 (its H.264 encode alone costs ~5x the CQT's CPU
   at 480x272/20 fps: the floor, see the README).
2. Live timing on loopback: the band-follow show played on a wall clock to real receivers on
   127.0.0.1 (sacn's sACNreceiver, a UDP socket for Art-Net, a python-osc server) for
   ``--seconds`` (default 60); lateness of each sent frame against its schedule,
   p50/p99/max, at normal priority and (where permitted) with ``--realtime``
   (SCHED_FIFO) side by side. Target: p99 <= 2 ms. sacn's receiver calls its listener only when a
   universe's DMX data changes (``fire_callbacks_universe``), so it reports the frames
   whose data changed, printed next to it; Art-Net and OSC count every frame.

The song: 30 s of ``record_like_audio`` (plucked strings, kick, snares, a room) repeated
with a slowly changing gain to the length asked for, written to a temp WAV.

Run: ``python bench/bench_show.py`` (about 3 minutes on a quiet 2-core machine; ``--quick``:
a 1-minute song, the band follower and CNN only, 10 s of live play; ``--no-video``;
``--skip-live``). ``--threads`` sets torch's intra-op threads (default 1: stable numbers on
a shared machine).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def make_song(path: Path, seconds: float) -> None:
    import soundfile as sf

    from cqtml_env.contract import SAMPLE_RATE
    from cqtml_env.datasets.record_like import record_like_audio

    piece = record_like_audio(0, duration=min(30.0, seconds)).T  # [n, 2]
    reps = int(np.ceil(seconds * SAMPLE_RATE / len(piece)))
    gain = np.repeat(0.7 + 0.3 * np.sin(np.arange(reps)), len(piece))[:, None]
    song = (np.tile(piece, (reps, 1)) * gain[: reps * len(piece)])[: int(seconds * SAMPLE_RATE)]
    sf.write(str(path), song.astype(np.float32), SAMPLE_RATE)


def cqt_alone(song: Path, scratch: Path) -> float:
    from cqtml_env import CQTProcessor
    from cqtml_env.show.inference import cqt_to_disk
    from cqtml_env.show.stream import AudioReader

    proc = CQTProcessor(max_duration=5.0)
    t0 = time.perf_counter()
    cqt_to_disk(AudioReader(song, proc.sample_rate), proc, scratch / "alone.f16")
    return time.perf_counter() - t0


def policies(quick: bool):
    import cqtml_policy
    from cqtml_env import CQTProcessor
    from cqtml_env.contract import Contract

    proc = CQTProcessor(max_duration=5.0)
    c = Contract.from_processor(proc, num_devices=4)
    shape = (2, proc.n_bins, c.num_frames)
    yield "band-follow", cqtml_policy.BandFollowPolicy(num_devices=4, frame_rate=c.frame_rate)
    yield "cnn (random init)", cqtml_policy.create_policy("cnn", shape, num_devices=4,
                                                          device="cpu")
    if not quick:
        yield "vit (random init)", cqtml_policy.create_policy("vit", shape, num_devices=4,
                                                              device="cpu")
        yield "vit-small (random init)", cqtml_policy.create_policy("vit-small", shape,
                                                                    num_devices=4, device="cpu")
        # the kinds the README's trained results use
        for name in ("cnn-bands", "vit-bands", "cnn-pulse", "vit-pulse", "cnn-beat", "vit-beat",
                     "cnn-gain", "vit-gain"):
            yield f"{name} (random init)", cqtml_policy.create_policy(name, shape, num_devices=4,
                                                                      device="cpu")


def bench_pipeline(seconds: float, quick: bool, video: bool = True) -> list[dict]:
    import torch

    from cqtml_env.show import make_show

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-show-") as d:
        d = Path(d)
        song = d / "song.wav"
        make_song(song, seconds)
        outputs = ("csv", "json", "midi", "overview") + (("video",) if video else ())
        warm = d / "warm.wav"  # imports and librosa's filter caches, paid once before timing
        make_song(warm, 20.0)
        make_show(warm, next(iter(policies(True)))[1], out=d / "warm", progress=False)
        c0 = time.process_time()
        cqt_s = min(cqt_alone(song, d) for _ in range(2))  # best of two: less noise
        cqt_cpu = (time.process_time() - c0) / 2
        for name, policy in policies(quick):
            if hasattr(policy, "eval"):
                policy.eval()
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.inference_mode():
                show = make_show(song, policy, out=d / "out", progress=False, outputs=outputs)
            total, cpu = time.perf_counter() - t0, time.process_time() - c0
            rows.append({"policy": name, "song_s": show.duration, "cqt_alone_s": cqt_s,
                         "cqt_alone_cpu_s": cqt_cpu, "pipeline_s": total, "cpu_s": cpu,
                         **show.timings})
    return rows


def bench_song_gain(seconds: float, repeats: int = 4) -> list[dict]:
    """What song gain costs: the same show with it on (``cqtml-show``'s fullness), on with
    fullness 0, and off, interleaved, median of ``repeats`` (every file but preview.mp4), for
    the band follower and ``cnn-gain``."""
    import torch

    import cqtml_policy
    from cqtml_env import CQTProcessor
    from cqtml_env.contract import Contract
    from cqtml_env.show import make_show

    proc = CQTProcessor(max_duration=5.0)
    c = Contract.from_processor(proc, num_devices=4)
    shape = (2, proc.n_bins, c.num_frames)
    pols = {"band-follow": cqtml_policy.BandFollowPolicy(num_devices=4, frame_rate=c.frame_rate),
            "cnn-gain (random init)": cqtml_policy.create_policy("cnn-gain", shape, num_devices=4,
                                                                 device="cpu").eval()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-song-gain-") as d:
        d = Path(d)
        song = d / "song.wav"
        make_song(song, seconds)
        for name, policy in pols.items():
            modes = {"on": (True, None), "on0": (True, 0.0), "off": (False, None)}
            times: dict[str, list[float]] = {k: [] for k in modes}
            with torch.inference_mode():
                make_show(song, policy, out=None, progress=False)  # warm
                for i in range(repeats):
                    for key, (on, full) in modes.items():
                        t0 = time.perf_counter()
                        make_show(song, policy, out=d / f"o{i}{key}", progress=False,
                                  outputs=("csv", "json", "midi", "overview"), song_gain=on,
                                  song_fullness=full)
                        times[key].append(time.perf_counter() - t0)
            rows.append({"policy": name, **{f"{k}_s": float(np.median(v)) for k, v in times.items()}})
    return rows


def _receivers(ports_q, stop_ev, result_q) -> None:
    """Real receivers on 127.0.0.1, in their own process (so they do not compete with the
    player for the GIL): sacn's sACNreceiver, a UDP socket for Art-Net, a python-osc server."""
    import sacn
    from pythonosc import dispatcher, osc_server

    counts = {"sacn": 0, "artnet": 0, "osc_messages": 0}
    art = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    art.bind(("127.0.0.1", 0))
    art.settimeout(0.2)

    def art_loop() -> None:
        while not stop_ev.is_set():
            try:
                data, _ = art.recvfrom(1024)
            except OSError:
                continue
            if data[:8] == b"Art-Net\x00":
                counts["artnet"] += 1

    def on_osc(*_a) -> None:
        counts["osc_messages"] += 1

    disp = dispatcher.Dispatcher()
    disp.set_default_handler(on_osc)
    osc = osc_server.ThreadingOSCUDPServer(("127.0.0.1", 0), disp)
    threading.Thread(target=osc.serve_forever, daemon=True).start()
    threading.Thread(target=art_loop, daemon=True).start()
    receiver = sacn.sACNreceiver(bind_address="127.0.0.1", bind_port=5568)

    @receiver.listen_on("universe", universe=1)
    def _on(packet) -> None:
        counts["sacn"] += 1

    receiver.start()
    ports_q.put((art.getsockname()[1], osc.server_address[1]))
    stop_ev.wait()
    receiver.stop()
    osc.shutdown()
    result_q.put(counts)


def realtime_permitted() -> bool:
    """Whether this process may use SCHED_FIFO (root, CAP_SYS_NICE or an rtprio limit)."""
    try:
        old = (os.sched_getscheduler(0), os.sched_getparam(0))
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(0, *old)
        return True
    except (AttributeError, OSError):
        return False


def bench_live(seconds: float, realtime: bool = False) -> dict:
    import multiprocessing as mp

    import cqtml_policy
    from cqtml_env import CQTProcessor
    from cqtml_env.show import make_show
    from cqtml_env.show.outputs import make_outputs
    from cqtml_env.show.player import WallClock, play_show
    from cqtml_env.show.rig import parse_rig

    ctx = mp.get_context("fork")
    ports_q, result_q, stop_ev = ctx.Queue(), ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_receivers, args=(ports_q, stop_ev, result_q), daemon=True)
    proc.start()
    art_port, osc_port = ports_q.get(timeout=30)
    rig = parse_rig(f"""
refresh_hz = 40
[sacn]
destination = "127.0.0.1"
bind_address = "127.0.0.1"
bind_port = 5570
[artnet]
destination = "127.0.0.1"
port = {art_port}
[osc]
host = "127.0.0.1"
port = {osc_port}
""" + "".join(f'[[devices]]\nname = "d{i}"\nuniverse = 1\nchannel = {i + 1}\n'
              for i in range(4)), "bench-rig")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-live-") as d:
            song = Path(d) / "song.wav"
            make_song(song, seconds + 1.0)
            fr = CQTProcessor().frame_rate
            show = make_show(song, cqtml_policy.BandFollowPolicy(num_devices=4, frame_rate=fr),
                             rig=rig, out=None, progress=False)
            report = play_show(show, clock=WallClock(), outputs=make_outputs(rig),
                               seconds=seconds, log=lambda m: None, realtime=realtime)
            # sacn's receiver calls a listener only when a universe's data CHANGES
            # (sacn/receiving/receiver_handler.py, fire_callbacks_universe): count the sent
            # frames whose universe-1 DMX differs from the frame before (the first counts)
            from cqtml_env.show.player import frame_schedule

            _, values = frame_schedule(show.levels, show.frame_rate, rig.refresh_hz,
                                       min(seconds, show.duration))
            dmx = rig.dmx_frames(values)[1]  # [K, 512]
            changes = 1 + int(np.count_nonzero(np.any(np.diff(dmx, axis=0) != 0, axis=1)))
        time.sleep(0.5)
    finally:
        stop_ev.set()
        received = result_q.get(timeout=30)
        proc.join(10)
    return {"frames": report.frames, "refresh_hz": report.refresh_hz, **report.summary(),
            "sent": report.sent, "received": received, "errors": report.errors,
            "sacn_changes": changes}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1-minute song, no ViT, 10 s live")
    ap.add_argument("--song-seconds", type=float, default=None, help="default 240 (60 quick)")
    ap.add_argument("--seconds", type=float, default=None, help="live play, default 60 (10)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--no-video", action="store_true",
                    help="every file but preview.mp4 (the 'no video' ratio, measured directly)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    song_s = a.song_seconds or (60.0 if a.quick else 240.0)
    live_s = a.seconds or (10.0 if a.quick else 60.0)
    print(f"cores: {os.cpu_count()}, torch threads: {a.threads}")
    if not a.skip_pipeline:
        rows = bench_pipeline(song_s, a.quick, video=not a.no_video)
        stages = ["cqt_s", "policy_tail_s", "tempo_s", "limiter_s", "midi_s", "csv_s", "json_s",
                  "overview_s", "video_s"]
        print(f"\n1. make_show on a {song_s:g} s song vs the CQT alone (target ratio <= 1.5)")
        print(f"{'policy':<24}{'CQT alone':>10}{'pipeline':>10}{'ratio':>7}{'no video':>9}"
              f"{'x realtime':>11}  " + " ".join(f"{s[:-2][:8]:>8}" for s in stages))
        for r in rows:
            no_video = (r['pipeline_s'] - r.get('video_s', 0.0)) / r['cqt_alone_s']
            print(f"{r['policy']:<24}{r['cqt_alone_s']:>9.2f}s{r['pipeline_s']:>9.2f}s"
                  f"{r['pipeline_s'] / r['cqt_alone_s']:>6.2f}x{no_video:>8.2f}x"
                  f"{r['song_s'] / r['pipeline_s']:>10.1f}x  "
                  + " ".join(f"{r.get(s, float('nan')):>7.2f}s" for s in stages))
        print("\nCPU seconds, all threads (the work, whatever the load), and the critical path: "
              "max(CQT thread, policy thread) + the serial rest = the wall time on two idle "
              "cores (an estimate; with preview.mp4 pessimistic: its x264/AAC threads count "
              "as serial)")
        print(f"{'policy':<24}{'CQT alone':>10}{'pipeline':>10}{'ratio':>7}{'CQT thr':>9}"
              f"{'policy thr':>11}{'rest':>7}{'crit. path':>11}{'ratio':>7}")
        for r in rows:
            wk, mn = r.get("cqt_cpu_worker_s"), r.get("cqt_cpu_main_s")
            if wk is None or mn is None:  # not overlapped (PyAV-only audio): all serial
                wk, mn = 0.0, 0.0
            rest = r["cpu_s"] - wk - mn
            crit = max(wk, mn) + rest
            print(f"{r['policy']:<24}{r['cqt_alone_cpu_s']:>9.2f}s{r['cpu_s']:>9.2f}s"
                  f"{r['cpu_s'] / r['cqt_alone_cpu_s']:>6.2f}x{wk:>8.2f}s{mn:>10.2f}s"
                  f"{rest:>6.2f}s{crit:>10.2f}s{crit / r['cqt_alone_cpu_s']:>6.2f}x")
        print("CPU seconds (all threads; the work, whatever the load): CQT alone "
              f"{rows[0]['cqt_alone_cpu_s']:.2f} s; "
              + "; ".join(f"{r['policy']} {r['cpu_s']:.2f} s ({r['cpu_s'] / r['cqt_alone_cpu_s']:.2f}x)"
                          for r in rows))
        print(f"\n3. song gain on vs on with fullness 0 vs off ({song_s:g} s song, every file but preview.mp4, "
              "interleaved, median of 4)")
        for r in bench_song_gain(song_s):
            print(f"{r['policy']:<24} on {r['on_s']:.3f} s  on, fullness 0 {r['on0_s']:.3f} s  "
                  f"off {r['off_s']:.3f} s  ratio on/off {r['on_s'] / r['off_s']:.3f}, "
                  f"fullness 0/off {r['on0_s'] / r['off_s']:.3f}")
    if not a.skip_live:
        modes = [False] + ([True] if realtime_permitted() else [])
        print(f"\n2. live play on loopback, {live_s:g} s, wall clock, normal priority"
              + (" then --realtime (SCHED_FIFO)" if len(modes) > 1 else
                 " (--realtime skipped: SCHED_FIFO not permitted here)")
              + f"; load average now {os.getloadavg()[0]:.1f} (target p99 <= 2 ms)")
        print(f"{'priority':<10}{'frames':>7}{'p50':>9}{'p99':>9}{'max':>9}  sent / received")
        for rt in modes:
            live = bench_live(live_s, realtime=rt)
            print(f"{'realtime' if rt else 'normal':<10}{live['frames']:>7}"
                  f"{live.get('p50_ms', float('nan')):>7.3f}ms"
                  f"{live.get('p99_ms', float('nan')):>7.3f}ms"
                  f"{live.get('max_ms', float('nan')):>7.3f}ms"
                  f"  {live['sent']} / {live['received']}"
                  + (f"  errors: {live['errors']}" if live["errors"] else ""))
        print(f"sACN: sacn's receiver fires only when the data changes; frames whose DMX "
              f"changed: {live['sacn_changes']} (received by sacn: {live['received']['sacn']})")

if __name__ == "__main__":
    sys.exit(main())
