"""Show files: ``show.csv``, ``show.json``, ``show.mid`` and ``overview.png``.

All of them hold the *limited* intensities (what the lights get: after gamma, min/max and
the flash limiter), one value per device per action frame, time in seconds.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.show.rig import Rig

TICKS_PER_BEAT = 480
DEFAULT_BPM = 120.0


def write_csv(path: Path, levels: np.ndarray, rig: Rig, frame_rate: float) -> None:
    """``time_s,<device names...>``, one row per frame, 4 decimals."""
    d, t = levels.shape
    times = np.arange(t) / frame_rate
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("time_s," + ",".join(rig.names) + "\n")
        step = 8192
        for s in range(0, t, step):
            block = np.column_stack([times[s : s + step], levels[:, s : s + step].T])
            np.savetxt(f, block, fmt="%.4f", delimiter=",")


def _rounded_lists(values: np.ndarray, names) -> dict[str, list[float]]:
    """``{name: row rounded to 4 decimals}``; numpy rounds and converts (vectorised: the same
    floats as ``round(float(v), 4)`` one by one, for a fraction of the time)."""
    rows = np.round(np.asarray(values, dtype=np.float64), 4).tolist()
    return dict(zip(names, rows))


def write_json(path: Path, levels: np.ndarray, rig: Rig, frame_rate: float,
               meta: dict[str, Any], activations: np.ndarray | None = None) -> None:
    """``show.json`` (format ``cqtml-show-v1``), one object:

    - ``frame_rate``: frames per second of every per-frame list (the contract's action grid);
      frame ``k`` is at ``k / frame_rate`` seconds. ``num_frames``: the length of each list.
    - ``devices``: the rig's devices (name, colour, layout, addresses, gamma, min/max).
    - ``levels``: ``{device name: [value per frame]}``, what the lights get, in [0, 1]
      (after the rig's gamma and min/max and the flash limiter: the values CSV/MIDI hold).
    - ``activations``: ``{device name: [value per frame]}``, the policy's raw cross-faded
      activations in [0, 1], before gamma, min/max and the limiter.
    - ``song``, ``duration_s``, ``bpm`` (``null`` when no clear beat), ``midi_bpm``,
      ``limiter`` (enabled, settings, how much it changed), ``contract`` (the CQT/action
      contract the policy was run under).
    """
    doc = {
        "format": "cqtml-show-v1",
        "frame_rate": frame_rate,
        "num_frames": int(levels.shape[1]),
        "devices": rig.to_dict()["devices"],
        "levels": _rounded_lists(levels, rig.names),
        **meta,
    }
    if activations is not None:
        if activations.shape != levels.shape:
            raise ValueError(f"activations {activations.shape} and levels {levels.shape} differ")
        doc["activations"] = _rounded_lists(activations, rig.names)
    path.write_text(json.dumps(doc, indent=None, separators=(",", ":")), encoding="utf-8")


def detect_tempo(onset: np.ndarray, frame_rate: float, *, stride: int = 8) -> float | None:
    """Global tempo (BPM) from the onset envelope, or ``None`` when there is no clear beat.

    librosa's estimator (mean autocorrelation tempogram, 8-s windows, log-normal prior around
    120 BPM), with the tempogram taken every ``stride`` frames instead of every frame: the
    mean over a song is the same to within a bin, for 1/``stride`` of the work (librosa's
    per-frame tempogram cost about a CQT's time on a 4-minute song)."""
    if onset.size < frame_rate * 4 or not np.any(onset > 0):
        return None
    import librosa

    from cqtml_env.contract import HOP_LENGTH

    # librosa wants sr / hop; any pair with the same ratio gives the same frame rate
    hop = HOP_LENGTH
    sr = frame_rate * hop
    try:
        env = onset.astype(np.float64)
        win = int(librosa.time_to_frames(8.0, sr=sr, hop_length=hop))
        env = np.pad(env, (win // 2, win // 2), mode="linear_ramp", end_values=(0, 0))
        frames = librosa.util.frame(env, frame_length=win, hop_length=max(1, int(stride)))
        frames = frames[:, : max(1, -(-onset.size // max(1, int(stride))))]
        window = librosa.filters.get_window("hann", win, fftbins=True)[:, None]
        tg = librosa.util.normalize(librosa.autocorrelate(frames * window, axis=0),
                                    norm=np.inf, axis=0)
        bpm = float(np.atleast_1d(librosa.feature.tempo(tg=tg, sr=sr, hop_length=hop))[0])
    except Exception:
        return None
    return bpm if 30.0 <= bpm <= 300.0 else None


def _vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, levels: np.ndarray, rig: Rig, frame_rate: float,
               bpm: float | None) -> float:
    """One control-change lane per device (the rig's MIDI channel and CC), values 0..127,
    an event only when the value changes; at ``bpm`` (120 if unknown). Returns the BPM.

    A standard MIDI file, format 0, written directly (the events found with numpy): building
    one ``mido.Message`` per event cost more than the CQT on a 4-minute song. Tests read it
    back with mido."""
    import mido

    bpm = float(bpm or DEFAULT_BPM)
    values = np.round(np.clip(levels, 0, 1) * 127).astype(np.int64)  # [D, T]
    d, t = values.shape
    ticks = np.round(np.arange(t) / frame_rate * TICKS_PER_BEAT * bpm / 60.0).astype(np.int64)
    prev = np.concatenate([np.full((d, 1), -1), values[:, :-1]], axis=1)
    ft, fd = np.nonzero((values != prev).T)  # events frame-major, devices in rig order
    deltas = np.diff(ticks[ft], prepend=0).tolist()
    status = [0xB0 | (dev.midi_channel - 1) for dev in rig.devices]
    ccs = [dev.midi_cc for dev in rig.devices]
    vals = values[fd, ft].tolist()
    cache: dict[int, bytes] = {}
    body = bytearray()
    tempo = mido.bpm2tempo(bpm)
    body += b"\x00\xff\x51\x03" + int(tempo).to_bytes(3, "big")
    name = b"cqtml show"
    body += b"\x00\xff\x03" + _vlq(len(name)) + name
    for delta, i, v in zip(deltas, fd.tolist(), vals):
        vb = cache.get(delta)
        if vb is None:
            vb = cache[delta] = _vlq(delta)
        body += vb
        body.append(status[i])
        body.append(ccs[i])
        body.append(v)
    body += b"\x00\xff\x2f\x00"
    data = (b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
            + b"MTrk" + struct.pack(">I", len(body)) + bytes(body))
    Path(path).write_bytes(data)
    return bpm


def write_png(path: Path, rgb: np.ndarray) -> None:
    """A minimal RGB PNG encoder (zlib), so no imaging library is needed."""
    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    # level 1: a third of level 6's time for a ~20 % larger file (190 KB for an overview)
    png += chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def overview_image(song, levels: np.ndarray, rig: Rig, width: int = 1200) -> np.ndarray:
    """The whole song's CQT with each device's limited intensity traced over its band and
    a light lane per device, in the rig's colours (the clip renderer, with time pooled to
    ``width`` columns)."""
    from cqtml_env.contract import device_bands
    from cqtml_env.env.render import render_activations

    width = max(1, min(width, levels.shape[1]))
    cqt = song.pooled(width)
    edges = np.linspace(0, levels.shape[1], width + 1).astype(int)
    lv = np.stack([levels[:, a:max(b, a + 1)].max(axis=1) for a, b in zip(edges[:-1], edges[1:])],
                  axis=1)
    cols_per_s = width / max(levels.shape[1] / song.frame_rate, 1e-6)
    return render_activations(cqt, lv, frame_rate=cols_per_s, px_per_frame=1, px_per_bin=3,
                              bands=device_bands(song.n_bins, rig.num_devices),
                              title="cqtml show", subtitle=", ".join(rig.names),
                              colours=[d.colour for d in rig.devices])


__all__ = ["write_csv", "write_json", "write_midi", "write_png", "overview_image",
           "detect_tempo"]
