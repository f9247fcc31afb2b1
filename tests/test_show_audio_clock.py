"""Live playback against the sound card's clock, with a stand-in ``sounddevice`` module.

The fake PortAudio stream runs its own clock at half the wall clock's speed and reports a
DAC latency (the time a sample takes from the callback to the speaker), so a player that
scheduled on the wall clock, or ignored the DAC time, or the rig's latency offset, would
send frames at clearly different wall times than the ones checked here. The audio the fake
device is asked to play must be the song's samples."""

from __future__ import annotations

import sys
import threading
import time
import types

import numpy as np
import pytest
import soundfile as sf

from cqtml_env.contract import SAMPLE_RATE
from cqtml_env.show.outputs.base import Output
from cqtml_env.show.player import AudioClock, make_clock, play_frames

RATE = 0.5  # the fake sound card's clock runs at half the wall clock's speed
DAC_LATENCY = 0.1  # seconds from the callback to the speaker
BLOCK = 256


class FakeStream:
    """A PortAudio-like output stream: calls ``callback`` when a block is due on its clock."""

    played: list[np.ndarray] = []

    def __init__(self, *, samplerate, channels, dtype, callback) -> None:
        assert channels == 2 and dtype == "float32"
        self.sr, self.callback = int(samplerate), callback
        self.w0 = time.perf_counter()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def time(self) -> float:
        return (time.perf_counter() - self.w0) * RATE

    def _run(self) -> None:
        index = 0
        while not self.stop_ev.is_set():
            due = index / self.sr
            if self.time >= due:
                out = np.zeros((BLOCK, 2), np.float32)
                info = types.SimpleNamespace(outputBufferDacTime=due + DAC_LATENCY)
                self.callback(out, BLOCK, info, None)
                FakeStream.played.append(out)
                index += BLOCK
            else:
                time.sleep(0.0005)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_ev.set()
        self.thread.join(2)

    def close(self) -> None:
        pass


class Recorder(Output):
    kind = "recorder"

    def open(self) -> None:
        self.at: list[float] = []

    def send(self, frame) -> None:
        self.at.append(time.perf_counter())
        self.frames_sent += 1

    def close(self) -> None:
        pass


class CardTimeRecorder(Recorder):
    def send(self, frame) -> None:
        self.at.append(self.clock.stream.time)
        self.frames_sent += 1


@pytest.fixture
def fake_sounddevice(monkeypatch):
    fake = types.ModuleType("sounddevice")
    fake.query_devices = lambda kind=None: {"name": "fake output", "max_output_channels": 2}
    fake.OutputStream = FakeStream
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    FakeStream.played = []
    return fake


@pytest.fixture
def song(tmp_path):
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((SAMPLE_RATE * 2, 2))).astype(np.float32)
    path = tmp_path / "song.wav"
    sf.write(str(path), audio, SAMPLE_RATE)
    return path, audio


def test_frames_follow_the_audio_clock_with_the_latency_offset(fake_sounddevice, song):
    path, audio = song
    clock = make_clock("auto", str(path), SAMPLE_RATE, log=print)
    assert isinstance(clock, AudioClock) and clock.kind == "audio"
    rec = CardTimeRecorder(rig=None)
    rec.clock = clock
    times = np.array([0.6, 0.65, 0.7, 0.75, 0.8])  # song times of the frames
    latency = 0.5  # the lights lag: each frame goes out this much before its song time
    report = play_frames(times, np.zeros((1, len(times))), [rec], clock=clock,
                         latency_s=latency, log=print)
    assert report.clock == "audio" and report.sent == {"recorder": len(times)}
    card = np.array(rec.at)  # the sound card's own clock when each frame went out
    # heard song time = card time - DAC latency; a frame is due when heard time reaches
    # t - latency, i.e. at card time t - latency + DAC latency. Never early (a wall-clock
    # player, or one ignoring the DAC time, would be early by >= 0.1 s of card time); late
    # by less than the latency offset (a player ignoring it would be late by all of it).
    expected = times - latency + DAC_LATENCY
    assert np.all(card >= expected - 0.005), card - expected
    # 0.3 s of card time (0.6 s of wall time) of slack for a loaded machine, still clearly
    # short of the 0.5 s a player ignoring the offset would be late by
    assert np.all(card - expected < 0.3), card - expected
    # and the card was fed the song itself, in order
    fed = np.concatenate(FakeStream.played)
    n = min(len(fed), 4096)
    assert len(fed) >= BLOCK
    np.testing.assert_allclose(fed[:n], audio[:n], atol=1e-4)


def test_without_an_output_device_the_wall_clock_is_used_and_said(monkeypatch, song):
    fake = types.ModuleType("sounddevice")

    def no_device(kind=None):
        raise RuntimeError("no output device")

    fake.query_devices = no_device
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    logs: list[str] = []
    clock = make_clock("auto", str(song[0]), SAMPLE_RATE, log=logs.append)
    assert clock.kind == "wall" and any("wall clock" in m for m in logs)
    with pytest.raises(RuntimeError, match="no audio output"):
        make_clock("audio", str(song[0]), SAMPLE_RATE, log=logs.append)


def test_realtime_scheduling_is_applied_during_play_and_restored(monkeypatch):
    """--realtime: the playing thread runs under SCHED_FIFO and gets its old policy back
    afterwards; where that is not permitted it says so and plays at normal priority."""
    import os

    from cqtml_env.show import player

    calls: list[tuple] = []
    state = {"policy": 0, "prio": 0}

    def get_sched(pid):
        return state["policy"]

    def get_param(pid):
        return os.sched_param(state["prio"])

    def set_sched(pid, policy, param):
        calls.append((policy, param.sched_priority))
        state["policy"], state["prio"] = policy, param.sched_priority

    monkeypatch.setattr(os, "sched_getscheduler", get_sched)
    monkeypatch.setattr(os, "sched_getparam", get_param)
    monkeypatch.setattr(os, "sched_setscheduler", set_sched)

    seen: list[int] = []

    class Probe(Output):
        kind = "probe"

        def open(self) -> None:
            pass

        def send(self, frame) -> None:
            seen.append(state["policy"])
            self.frames_sent += 1

        def close(self) -> None:
            pass

    logs: list[str] = []
    times = np.arange(5) * 0.01
    player.play_frames(times, np.zeros((1, 5)), [Probe(rig=None)], clock=player.WallClock(),
                       log=logs.append, realtime=True)
    assert seen == [os.SCHED_FIFO] * 5  # every frame was sent under SCHED_FIFO
    assert calls == [(os.SCHED_FIFO, player.REALTIME_PRIORITY), (0, 0)]  # then restored
    assert any("SCHED_FIFO" in m for m in logs)

    def refuse(pid, policy, param):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    seen.clear()
    logs.clear()
    player.play_frames(times, np.zeros((1, 5)), [Probe(rig=None)], clock=player.WallClock(),
                       log=logs.append, realtime=True)
    assert len(seen) == 5 and any("normal priority" in m for m in logs)
    seen.clear()
    player.play_frames(times, np.zeros((1, 5)), [Probe(rig=None)], clock=player.WallClock(),
                       log=logs.append)  # off by default: never asked for
    assert len(seen) == 5
