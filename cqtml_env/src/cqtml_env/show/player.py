"""Live playback: send a show's frames to the rig's outputs in sync with the song.

The clock is the sound card's (``sounddevice``: the song plays and the clock is the time of
the sample being heard, from PortAudio's DAC timestamps) or, when there is no output
device or ``clock="wall"``, a monotonic wall clock (said so in the log). Frames go out at
the rig's ``refresh_hz`` (DMX512 caps at 44 Hz), linearly interpolated from the action
grid (interpolation makes no new extremes, so the flash limit still holds), each sent
``latency_ms`` before its song time (lights that lag get their cue early). A receiver that
is not there is fine (UDP); an output that fails (bad address, closed socket) is reported
once and dropped while the others go on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cqtml_env.show.outputs import Output, OutputError, make_outputs


def frame_schedule(levels: np.ndarray, frame_rate: float, refresh_hz: float, duration: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(times [K], values [D, K])``: the output frames at ``refresh_hz`` over ``duration``."""
    k = max(1, int(np.floor(duration * refresh_hz + 1e-9)))
    times = np.arange(k) / refresh_hz
    grid = np.arange(levels.shape[1]) / frame_rate
    values = np.stack([np.interp(times, grid, levels[i]) for i in range(levels.shape[0])])
    return times, values


class WallClock:
    kind = "wall"

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def stop(self) -> None:
        pass


class AudioClock:
    """Plays the song through sounddevice; ``now()`` is the song time being heard."""

    kind = "audio"

    def __init__(self, song: str, sample_rate: int) -> None:
        import sounddevice as sd

        from cqtml_env.show.stream import AudioReader

        sd.query_devices(kind="output")  # raises when there is no output device
        self.sd = sd
        self.sr = int(sample_rate)
        self.blocks = AudioReader(song, self.sr).blocks(seconds=1.0)
        self.buf = np.zeros((0, 2), np.float32)
        self.played = 0
        self.anchor: tuple[float, int] | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()

    def _callback(self, out, frames, time_info, status) -> None:
        while self.buf.shape[0] < frames:
            try:
                self.buf = np.concatenate([self.buf, next(self.blocks).T])
            except StopIteration:
                break
        n = min(frames, self.buf.shape[0])
        out[:n] = self.buf[:n]
        out[n:] = 0
        self.buf = self.buf[n:]
        with self.lock:
            self.anchor = (time_info.outputBufferDacTime, self.played)
        self.played += n
        if n < frames:
            self.done.set()

    def start(self) -> None:
        self.stream = self.sd.OutputStream(samplerate=self.sr, channels=2, dtype="float32",
                                           callback=self._callback)
        self.stream.start()
        self.t_start = self.stream.time

    def now(self) -> float:
        with self.lock:
            anchor = self.anchor
        if anchor is None:
            return self.stream.time - self.t_start - 1.0  # not started: before the song
        dac, index = anchor
        return index / self.sr + (self.stream.time - dac)

    def stop(self) -> None:
        self.stream.stop()
        self.stream.close()


def make_clock(kind: str, song: str, sample_rate: int, log: Callable[[str], None]) -> Any:
    if kind in ("auto", "audio"):
        try:
            return AudioClock(song, sample_rate)
        except Exception as exc:
            if kind == "audio":
                raise RuntimeError(f"--clock audio: no audio output ({exc})") from exc
            log(f"play: no audio output device ({exc}); using a wall clock, the song is "
                "not played")
    return WallClock()


@dataclass
class PlayReport:
    clock: str
    frames: int
    refresh_hz: float
    lateness_s: np.ndarray
    sent: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        lat = self.lateness_s * 1e3
        if lat.size == 0:
            return {}
        return {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "max_ms": float(lat.max())}


REALTIME_PRIORITY = 10  # SCHED_FIFO priority for --realtime: above every normal process,
# below the kernel's own real-time threads (1..99; audio servers commonly use 5..20)


@contextlib.contextmanager
def realtime_priority(enabled: bool, log: Callable[[str], None],
                      priority: int = REALTIME_PRIORITY):
    """Run the block with this thread under ``SCHED_FIFO`` (Linux), then restore its policy.

    On a loaded machine a normal-priority player wakes late whenever other processes hold
    the cores; a real-time one is scheduled first. Needs root or ``CAP_SYS_NICE`` (or an
    rtprio limit in limits.conf); otherwise it says so and plays at normal priority."""
    if not enabled:
        yield False
        return
    try:
        old = (os.sched_getscheduler(0), os.sched_getparam(0))
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))
    except (AttributeError, OSError) as exc:  # not Linux, or not permitted
        log(f"play: --realtime not available ({exc}); playing at normal priority (needs root, "
            "CAP_SYS_NICE or an rtprio limit)")
        yield False
        return
    log(f"play: real-time scheduling (SCHED_FIFO, priority {priority})")
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, old[0], old[1])


def play_frames(
    times: np.ndarray,
    values: np.ndarray,
    outputs: list[Output],
    *,
    clock: Any,
    latency_s: float = 0.0,
    log: Callable[[str], None] | None = None,
    spin_s: float = 0.002,
    max_nap_s: float = 0.01,
    realtime: bool = False,
) -> PlayReport:
    """Send ``values[:, k]`` at clock time ``times[k] - latency_s`` to every live output.

    ``realtime=True`` runs the loop under real-time scheduling where permitted
    (:func:`realtime_priority`)."""
    log = log or (lambda m: print(m, file=sys.stderr))
    errors: dict[str, str] = {}
    live: list[Output] = []
    for o in outputs:
        try:
            o.open()
            live.append(o)
        except (OutputError, OSError, ImportError) as exc:
            errors[o.kind] = str(exc)
            log(f"play: {o.kind} disabled: {exc}")
    late = np.zeros(len(times))
    with realtime_priority(realtime, log):
        clock.start()
        try:
            for k, t in enumerate(times):
                target = t - latency_s
                while True:
                    dt = target - clock.now()
                    if dt <= 0:
                        break
                    # sleep in short naps: the audio clock may not have started yet (its first
                    # callback re-anchors it) or may run at a slightly different rate
                    time.sleep(min(dt - spin_s, max_nap_s) if dt > spin_s else 0)
                late[k] = clock.now() - target
                frame = values[:, k]
                for o in list(live):
                    try:
                        o.send(frame)
                    except (OutputError, OSError) as exc:
                        errors[o.kind] = str(exc)
                        log(f"play: {o.kind} failed at {t:.2f} s and is dropped ({exc}); "
                            "the other outputs go on")
                        live.remove(o)
                        with contextlib.suppress(Exception):
                            o.close()
        finally:
            clock.stop()
            for o in live:
                o.close()
    sent = {o.kind: o.frames_sent for o in outputs}
    return PlayReport(getattr(clock, "kind", "custom"), len(times), 0.0, late, sent, errors)


def play_show(show, *, clock: str | Any = "auto", latency_ms: float | None = None,
              outputs: list[Output] | None = None, seconds: float | None = None,
              log: Callable[[str], None] | None = None, realtime: bool = False) -> PlayReport:
    """Play a :class:`~cqtml_env.show.api.Show` live to its rig's outputs (``realtime``:
    see :func:`realtime_priority`)."""
    from cqtml_env.contract import SAMPLE_RATE

    log = log or (lambda m: print(m, file=sys.stderr))
    rig = show.rig
    outputs = make_outputs(rig) if outputs is None else outputs
    if not outputs:
        log("play: the rig configures no outputs ([sacn], [artnet], [osc] or [midi]); "
            "nothing to send")
    duration = show.duration if seconds is None else min(seconds, show.duration)
    times, values = frame_schedule(show.levels, show.frame_rate, rig.refresh_hz, duration)
    clk = make_clock(clock, show.song, SAMPLE_RATE, log) if isinstance(clock, str) else clock
    lat = rig.latency_ms if latency_ms is None else latency_ms
    log(f"play: {len(times)} frames at {rig.refresh_hz:g} Hz, clock={clk.kind}, latency "
        f"{lat:g} ms, outputs: {', '.join(o.describe() for o in outputs) or 'none'}")
    report = play_frames(times, values, outputs, clock=clk, latency_s=lat / 1e3, log=log,
                         realtime=realtime)
    report.refresh_hz = rig.refresh_hz
    s = report.summary()
    if s:
        log(f"play: done; lateness p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, max "
            f"{s['max_ms']:.2f} ms; sent {report.sent}")
    return report


__all__ = ["play_show", "play_frames", "frame_schedule", "PlayReport", "WallClock",
           "AudioClock", "realtime_priority"]
