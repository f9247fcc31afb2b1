"""Live outputs on loopback (127.0.0.1 only), received by real receivers: sacn's
sACNreceiver, a raw UDP socket parsing ArtDmx, and a python-osc server. Values equal the
rig-mapped intensities (gamma, 16-bit, RGB), frames arrive in order, and their number is
duration x refresh. A failing output is reported once and the others go on."""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np
import pytest

from cqtml_env.contract import DEFAULT_FRAME_RATE
from cqtml_env.show.outputs import ArtNetOutput, OSCOutput, SACNOutput, make_outputs
from cqtml_env.show.player import WallClock, frame_schedule, play_frames
from cqtml_env.show.rig import parse_rig

REFRESH = 40.0
SECONDS = 1.5


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_rig(artnet_port: int, osc_port: int, sacn: bool = True):
    text = f"""
refresh_hz = {REFRESH}
[artnet]
destination = "127.0.0.1"
port = {artnet_port}
[osc]
host = "127.0.0.1"
port = {osc_port}
"""
    if sacn:
        text += '[sacn]\ndestination = "127.0.0.1"\nbind_address = "127.0.0.1"\nbind_port = 5569\n'
    text += """
[[devices]]
name = "spot"
colour = "#ff8000"
layout = "rgb"
fine = true
universe = 1
channel = 1
gamma = 2.0
[[devices]]
name = "dim"
universe = 1
channel = 7
osc_address = "/dim/level"
"""
    return parse_rig(text, "test-rig")


def schedule():
    n = int(SECONDS * DEFAULT_FRAME_RATE) + 1
    t = np.arange(n) / DEFAULT_FRAME_RATE
    levels = np.stack([t / SECONDS, 0.5 + 0.5 * np.sin(2 * np.pi * t)])  # distinct each frame
    return frame_schedule(levels, DEFAULT_FRAME_RATE, REFRESH, SECONDS)


class ArtNetListener:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[tuple[int, int, bytes]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data, _ = self.sock.recvfrom(1024)
            except OSError:
                continue
            assert data[:8] == b"Art-Net\x00"
            (op,) = struct.unpack("<H", data[8:10])
            (version,) = struct.unpack(">H", data[10:12])
            assert op == 0x5000 and version == 14
            seq = data[12]
            (universe,) = struct.unpack("<H", data[14:16])
            (length,) = struct.unpack(">H", data[16:18])
            self.packets.append((seq, universe, data[18 : 18 + length]))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


class OSCListener:
    def __init__(self, addresses) -> None:
        from pythonosc import dispatcher, osc_server

        self.messages: dict[str, list[float]] = {a: [] for a in addresses}
        d = dispatcher.Dispatcher()
        for a in addresses:
            d.map(a, lambda addr, value: self.messages[addr].append(value))
        self.server = osc_server.ThreadingOSCUDPServer(("127.0.0.1", 0), d)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sacn_artnet_osc_receive_the_rig_mapped_frames():
    sacn = pytest.importorskip("sacn")
    art = ArtNetListener()
    rig = make_rig(art.port, free_udp_port())
    osc = OSCListener([d.osc_address for d in rig.devices])
    rig = make_rig(art.port, osc.port)
    receiver = sacn.sACNreceiver(bind_address="127.0.0.1", bind_port=5568)
    got: list[tuple[int, tuple]] = []
    receiver.register_listener("universe", lambda p: got.append((p.sequence, p.dmxData)),
                               universe=1)
    receiver.start()
    try:
        times, values = schedule()
        outputs = make_outputs(rig)
        assert [o.kind for o in outputs] == ["sacn", "artnet", "osc"]
        report = play_frames(times, values, outputs, clock=WallClock())
        time.sleep(0.3)
    finally:
        receiver.stop()
        art.close()
        osc.close()
    n = len(times)
    assert n == int(SECONDS * REFRESH)
    assert report.errors == {} and report.sent == {"sacn": n, "artnet": n, "osc": n}
    expected = rig.dmx_frames(values)[1]  # [n, 512]
    # Art-Net: every frame, in order, equal to the rig mapping
    assert len(art.packets) == n
    seqs = [p[0] for p in art.packets]
    assert seqs == [(k % 255) + 1 for k in range(n)]
    for k, (_, universe, data) in enumerate(art.packets):
        assert universe == 1
        np.testing.assert_array_equal(np.frombuffer(data, np.uint8), expected[k])
    # sACN: every frame differs, so the receiver reports each one, in sequence order
    assert len(got) == n, len(got)
    seq = np.array([s for s, _ in got])
    assert np.all(np.diff(seq) % 256 == 1)
    for k, (_, dmx) in enumerate(got):
        np.testing.assert_array_equal(np.array(dmx, np.uint8), expected[k])
    # the spot's 16-bit RGB: orange (255, 128, 0) times its intensity, coarse then fine
    dmx = np.array([d for _, d in got], int)
    red = dmx[:, 0] * 256 + dmx[:, 1]
    green = dmx[:, 2] * 256 + dmx[:, 3]
    np.testing.assert_array_equal(red, np.round(values[0] * 65535))
    np.testing.assert_array_equal(green, np.round(values[0] * 128 / 255 * 65535))
    assert np.all(dmx[:, 4:6] == 0) and np.all(dmx[:, 6] == np.round(values[1] * 255))
    # OSC: one address per device, the intensity as a float, in order
    assert len(osc.messages["/dim/level"]) == n
    np.testing.assert_allclose(osc.messages["/dim/level"], values[1], atol=1e-6)
    np.testing.assert_allclose(osc.messages[rig.devices[0].osc_address], values[0], atol=1e-6)


def test_a_failing_output_is_reported_once_and_the_others_go_on():
    art = ArtNetListener()
    osc = OSCListener(["/cqtml/spot", "/dim/level"])
    rig = make_rig(art.port, osc.port, sacn=False)
    bad_rig = parse_rig('[artnet]\ndestination = "256.300.1.1"\n[[devices]]\nname = "x"\n',
                        "bad-rig")

    class ClosingArtNet(ArtNetOutput):
        def send(self, intensities):
            if self.frames_sent == 10:
                self.sock.close()  # the socket dies mid-show
            super().send(intensities)

    logs: list[str] = []
    times, values = schedule()
    try:
        report = play_frames(
            times, values, [ClosingArtNet(rig), OSCOutput(rig), ArtNetOutput(bad_rig)],
            clock=WallClock(), log=logs.append)
        time.sleep(0.2)
    finally:
        art.close()
        osc.close()
    n = len(times)
    assert report.sent["artnet"] in (0, 10)
    assert report.sent["osc"] == n and len(osc.messages["/dim/level"]) == n
    assert len(art.packets) == 10
    assert "artnet" in report.errors
    failures = [m for m in logs if "artnet" in m]
    assert len(failures) == 2, logs  # one for the bad address, one for the closed socket
    assert any("256.300.1.1" in m for m in failures)
    assert any("dropped" in m for m in failures)


def test_missing_receiver_is_not_an_error():
    rig = make_rig(free_udp_port(), free_udp_port(), sacn=False)  # nobody listens
    times, values = schedule()
    report = play_frames(times[:10], values[:, :10], make_outputs(rig), clock=WallClock())
    assert report.errors == {} and report.sent == {"artnet": 10, "osc": 10}


def test_schedule_interpolates_and_latency_sends_early():
    levels = np.array([[0.0, 1.0, 0.0, 1.0]])
    times, values = frame_schedule(levels, 2.0, 4.0, 1.5)
    np.testing.assert_allclose(times, np.arange(6) / 4.0)
    np.testing.assert_allclose(values[0], [0, 0.5, 1.0, 0.5, 0.0, 0.5])

    class Recorder(SACNOutput):
        kind = "recorder"

        def open(self):
            self.at = []

        def send(self, x):
            self.at.append(time.perf_counter())
            self.frames_sent += 1

        def close(self):
            pass

    rig = make_rig(free_udp_port(), free_udp_port(), sacn=False)
    rec = Recorder(rig)
    t = np.arange(5) * 0.05 + 0.1
    clock = WallClock()
    report = play_frames(t, np.zeros((2, 5)), [rec], clock=clock, latency_s=0.08)
    sent = np.array(rec.at) - clock.t0
    np.testing.assert_allclose(sent, t - 0.08, atol=0.02)
    assert report.lateness_s.shape == (5,)
