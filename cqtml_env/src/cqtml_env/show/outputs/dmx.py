"""DMX over IP: sACN / E1.31 (the ``sacn`` package) and Art-Net (ArtDmx packets on a UDP
socket; the format is small and fixed, so no library is needed)."""

from __future__ import annotations

import socket
import struct

import numpy as np

from cqtml_env.show.outputs.base import Output, OutputError, register

ARTNET_PORT = 6454
SACN_PORT = 5568


def _dmx_frame(rig, intensities: np.ndarray) -> dict[int, np.ndarray]:
    return {u: v[0] for u, v in rig.dmx_frames(np.asarray(intensities)[:, None]).items()}


@register
class SACNOutput(Output):
    """E1.31 through ``sacn.sACNsender`` with manual flush (one synced send per frame).

    Rig table ``[sacn]``: ``destination`` (unicast IP, default 127.0.0.1) or
    ``multicast = true``, ``priority`` (0-200, default 100), ``bind_address``/``bind_port``.
    """

    kind = "sacn"

    def open(self) -> None:
        import sacn

        cfg = self.rig.sacn or {}
        try:
            self.sender = sacn.sACNsender(
                bind_address=cfg.get("bind_address", "0.0.0.0"),
                bind_port=int(cfg.get("bind_port", SACN_PORT)),
                source_name=cfg.get("source_name", "cqtml-show"),
                fps=max(1, int(round(self.rig.refresh_hz))), universeDiscovery=False)
            self.sender.start()
        except OSError as exc:
            raise OutputError(f"sACN: cannot bind {cfg.get('bind_address', '0.0.0.0')}:"
                              f"{cfg.get('bind_port', SACN_PORT)} ({exc})") from exc
        self.sender.manual_flush = True
        for u in self.rig.universes():
            self.sender.activate_output(u)
            out = self.sender[u]
            if cfg.get("multicast", False):
                out.multicast = True
            else:
                out.destination = cfg.get("destination", "127.0.0.1")
            out.priority = int(cfg.get("priority", 100))

    def send(self, intensities: np.ndarray) -> None:
        for u, data in _dmx_frame(self.rig, intensities).items():
            self.sender[u].dmx_data = tuple(int(v) for v in data)
        try:
            self.sender.flush()
        except OSError as exc:
            raise OutputError(f"sACN: send failed ({exc})") from exc
        self.frames_sent += 1

    def close(self) -> None:
        s = getattr(self, "sender", None)
        if s is not None:
            s.stop()
            self.sender = None


def artdmx_packet(universe: int, data: bytes, sequence: int) -> bytes:
    """An ArtDmx packet: ID, OpCode 0x5000 (LE), protocol 14, sequence, physical, universe
    (15-bit port-address, LE), length (BE, even, 2..512), data."""
    if len(data) % 2:
        data += b"\x00"
    return (b"Art-Net\x00" + struct.pack("<H", 0x5000) + struct.pack(">H", 14)
            + bytes([sequence & 0xFF, 0]) + struct.pack("<H", universe & 0x7FFF)
            + struct.pack(">H", len(data)) + data)


@register
class ArtNetOutput(Output):
    """Art-Net ArtDmx to ``[artnet] destination`` (default 127.0.0.1), port 6454.

    Rig universes are Art-Net port-addresses (universe 1 of the rig -> Art-Net universe 1).
    """

    kind = "artnet"

    def open(self) -> None:
        cfg = self.rig.artnet or {}
        self.addr = (cfg.get("destination", "127.0.0.1"), int(cfg.get("port", ARTNET_PORT)))
        try:
            socket.getaddrinfo(self.addr[0], self.addr[1], socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as exc:
            raise OutputError(f"Art-Net: bad destination {self.addr[0]!r} ({exc})") from exc
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if self.addr[0].endswith(".255"):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sequence = 0

    def send(self, intensities: np.ndarray) -> None:
        self.sequence = self.sequence % 255 + 1  # 1..255 (0 means "sequencing off")
        for u, data in _dmx_frame(self.rig, intensities).items():
            try:
                self.sock.sendto(artdmx_packet(u, data.tobytes(), self.sequence), self.addr)
            except OSError as exc:
                raise OutputError(f"Art-Net: send to {self.addr} failed ({exc})") from exc
        self.frames_sent += 1

    def close(self) -> None:
        s = getattr(self, "sock", None)
        if s is not None:
            s.close()


__all__ = ["SACNOutput", "ArtNetOutput", "artdmx_packet"]
