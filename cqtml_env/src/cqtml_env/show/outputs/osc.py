"""OSC (python-osc): one message per device per frame, ``<osc_address> <intensity float>``."""

from __future__ import annotations

import socket

import numpy as np

from cqtml_env.show.outputs.base import Output, OutputError, register


@register
class OSCOutput(Output):
    """Rig table ``[osc]``: ``host`` (default 127.0.0.1), ``port`` (default 9000)."""

    kind = "osc"

    def open(self) -> None:
        from pythonosc.udp_client import SimpleUDPClient

        cfg = self.rig.osc or {}
        host, port = cfg.get("host", "127.0.0.1"), int(cfg.get("port", 9000))
        try:
            socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
            self.client = SimpleUDPClient(host, port)
        except OSError as exc:
            raise OutputError(f"OSC: bad address {host!r}:{port} ({exc})") from exc
        self.addr = (host, port)

    def send(self, intensities: np.ndarray) -> None:
        try:
            for d, v in zip(self.rig.devices, np.asarray(intensities)):
                self.client.send_message(d.osc_address, float(v))
        except OSError as exc:
            raise OutputError(f"OSC: send to {self.addr} failed ({exc})") from exc
        self.frames_sent += 1

    def close(self) -> None:
        c = getattr(self, "client", None)
        if c is not None:
            c._sock.close()


@register
class MIDIOutput(Output):
    """Live MIDI CC through ``mido`` (needs python-rtmidi and a port; ``[midi] port``)."""

    kind = "midi"

    def open(self) -> None:
        import mido

        cfg = self.rig.midi or {}
        try:
            names = mido.get_output_names()
        except Exception as exc:  # no rtmidi backend
            raise OutputError(f"MIDI: no MIDI backend ({exc}); pip install python-rtmidi") from exc
        name = cfg.get("port") or (names[0] if names else None)
        if name is None or name not in names:
            raise OutputError(f"MIDI: port {name!r} not found (ports: {names})")
        self.port = mido.open_output(name)
        self.last = [-1] * self.rig.num_devices

    def send(self, intensities: np.ndarray) -> None:
        import mido

        for i, (d, v) in enumerate(zip(self.rig.devices, np.asarray(intensities))):
            value = int(round(float(v) * 127))
            if value != self.last[i]:
                self.port.send(mido.Message("control_change", channel=d.midi_channel - 1,
                                            control=d.midi_cc, value=value))
                self.last[i] = value
        self.frames_sent += 1

    def close(self) -> None:
        p = getattr(self, "port", None)
        if p is not None:
            p.close()


__all__ = ["OSCOutput", "MIDIOutput"]
