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
        "levels": {n: [round(float(v), 4) for v in levels[i]] for i, n in enumerate(rig.names)},
        **meta,
    }
    if activations is not None:
        if activations.shape != levels.shape:
            raise ValueError(f"activations {activations.shape} and levels {levels.shape} differ")
        doc["activations"] = {n: [round(float(v), 4) for v in activations[i]]
                              for i, n in enumerate(rig.names)}
    path.write_text(json.dumps(doc, indent=None, separators=(",", ":")), encoding="utf-8")


def detect_tempo(onset: np.ndarray, frame_rate: float) -> float | None:
    """Global tempo (BPM) from the onset envelope, or ``None`` when there is no clear beat."""
    if onset.size < frame_rate * 4 or not np.any(onset > 0):
        return None
    import librosa

    from cqtml_env.contract import HOP_LENGTH

    # librosa wants sr / hop; any pair with the same ratio gives the same frame rate
    hop = HOP_LENGTH
    sr = frame_rate * hop
    try:
        bpm = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset.astype(np.float64),
                                                        sr=sr, hop_length=hop))[0])
    except Exception:
        return None
    return bpm if 30.0 <= bpm <= 300.0 else None


def write_midi(path: Path, levels: np.ndarray, rig: Rig, frame_rate: float,
               bpm: float | None) -> float:
    """One control-change lane per device (the rig's MIDI channel and CC), values 0..127,
    an event only when the value changes; at ``bpm`` (120 if unknown). Returns the BPM."""
    import mido

    bpm = float(bpm or DEFAULT_BPM)
    mid = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.MetaMessage("track_name", name="cqtml show", time=0))
    values = np.round(np.clip(levels, 0, 1) * 127).astype(int)  # [D, T]
    ticks = np.round(np.arange(levels.shape[1]) / frame_rate * TICKS_PER_BEAT * bpm / 60.0)
    last_tick = 0
    prev = np.full(levels.shape[0], -1)
    for t in range(levels.shape[1]):
        changed = np.nonzero(values[:, t] != prev)[0]
        for i in changed:
            dev = rig.devices[i]
            track.append(mido.Message("control_change", channel=dev.midi_channel - 1,
                                      control=dev.midi_cc, value=int(values[i, t]),
                                      time=int(ticks[t] - last_tick)))
            last_tick = int(ticks[t])
        prev = values[:, t]
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid.save(str(path))
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
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
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
