"""Whole-song inference: a policy made for clips run over a song of any length.

1. :func:`cqt_to_disk` streams the song's CQT (:mod:`cqtml_env.show.stream`) into a
   frames-major float16 file (about 13 MB per hour per channel pair of 84 bins), so no
   step holds the whole CQT in memory; it also keeps an onset envelope for tempo.
2. :func:`windowed_actions` runs the policy on windows of its clip length that overlap by
   ``overlap_s`` and cross-fades them (zero weight in a ``margin_s`` at each inner edge,
   where a clip policy's context is cut, then complementary linear ramps), so the show is
   seamless.

Song-level context. The policies normalise by per-clip statistics (``clip_relative``
quantiles per bin, the CNN's ``ClipContext`` mean/max, the band-follower's floor/ceiling
quantiles). Run window by window these would jump at every window. So every window is fed
as ``[window | song context]``: ``context_s`` of frames in 1-second chunks spread evenly
over the whole song, appended after the window (the policy's outputs for those frames are
dropped). Every statistic is then taken over a population most of which is the same for
all windows: the same song-level reference, with no policy API change. ``context_s=0``
switches it off (plain windows).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.show.stream import AudioReader, StreamStats, stream_cqt


@dataclass
class SongCQT:
    """A song's CQT on disk, frames-major ``[N, 2, n_bins]`` float16, read by slices."""

    path: Path
    num_frames: int
    n_bins: int
    frame_rate: float
    duration: float  # seconds of audio
    onset: np.ndarray  # [N] spectral flux, for tempo
    stats: StreamStats

    def frames(self, start: int, stop: int) -> np.ndarray:
        """``[2, n_bins, stop - start]`` float32 (zero-padded past the end)."""
        mm = np.memmap(self.path, dtype=np.float16, mode="r", shape=(self.num_frames, 2,
                                                                   self.n_bins))
        lo, hi = max(start, 0), min(stop, self.num_frames)
        out = np.zeros((stop - start, 2, self.n_bins), np.float32)
        if hi > lo:
            out[lo - start : hi - start] = mm[lo:hi]
        del mm
        return np.ascontiguousarray(out.transpose(1, 2, 0))

    def pooled(self, width: int) -> np.ndarray:
        """Mono ``[n_bins, width]`` (max over channels, mean over each column's frames)."""
        width = max(1, min(width, self.num_frames))
        edges = np.linspace(0, self.num_frames, width + 1).astype(int)
        out = np.zeros((self.n_bins, width), np.float32)
        step = 4096
        mm = np.memmap(self.path, dtype=np.float16, mode="r", shape=(self.num_frames, 2,
                                                                   self.n_bins))
        for s in range(0, self.num_frames, step):
            block = mm[s : s + step].astype(np.float32).max(axis=1)  # [n, F]
            cols = np.searchsorted(edges, np.arange(s, s + block.shape[0]), side="right") - 1
            np.add.at(out.T, cols, block)
        counts = np.maximum(np.diff(edges), 1)
        del mm
        return out / counts


def cqt_to_disk(
    reader: AudioReader,
    processor: Any,
    path: str | os.PathLike,
    *,
    progress: Callable[[int], None] | None = None,
    audio_sink: Callable[[np.ndarray], None] | None = None,
    block_frames: int = 1292,
) -> SongCQT:
    """Stream ``reader``'s CQT into ``path`` (float16, frames-major)."""
    path = Path(path)
    stats = StreamStats()
    onset: list[np.ndarray] = []
    n = 0
    last: np.ndarray | None = None
    with open(path, "wb") as f:
        for block in stream_cqt(reader, processor, stats=stats, audio_sink=audio_sink,
                                block_frames=block_frames):
            f.write(np.ascontiguousarray(block.transpose(2, 0, 1)).astype(np.float16).tobytes())
            mono = block.mean(axis=0)  # [F, n]
            prev = mono[:, :1] if last is None else last
            flux = np.maximum(np.diff(np.concatenate([prev, mono], axis=1), axis=1), 0).mean(0)
            onset.append(flux.astype(np.float32))
            last = mono[:, -1:]
            n += block.shape[-1]
            if progress is not None:
                progress(block.shape[-1])
    return SongCQT(path, n, int(processor.n_bins), float(processor.frame_rate),
                   stats.samples / processor.sample_rate, np.concatenate(onset), stats)


def crossfade_weights(length: int, left: int, right: int, margin: int) -> np.ndarray:
    """Weights ``[length]`` of one window overlapping its neighbours by ``left`` / ``right``
    frames (0: the song's own start/end): 0 in the inner margins, then a linear ramp across
    the rest of each overlap, 1 in the middle. A neighbour's ramp over the same overlap is
    the complement, so the weights of adjacent windows sum to 1."""
    w = np.ones(length, np.float64)
    if left > 0:
        m = min(margin, max((left - 1) // 2, 0))
        ramp = left - 2 * m
        w[:m] = 0.0
        w[m : m + ramp] = (np.arange(ramp) + 0.5) / ramp
    if right > 0:
        m = min(margin, max((right - 1) // 2, 0))
        ramp = right - 2 * m
        w[length - m :] = 0.0
        seg = slice(length - m - ramp, length - m)
        w[seg] = np.minimum(w[seg], ((np.arange(ramp) + 0.5) / ramp)[::-1])
    return w


def window_starts(num_frames: int, window: int, hop: int) -> list[int]:
    """Evenly spaced starts, at most ``hop`` apart, the last window ending at the song's end."""
    if num_frames <= window:
        return [0]
    k = math.ceil((num_frames - window) / hop) + 1
    return [int(round(x)) for x in np.linspace(0, num_frames - window, k)]


def context_frames(song: SongCQT, context: int, chunk: int) -> np.ndarray:
    """``[2, F, context]``: ``context // chunk`` chunks spread evenly over the song."""
    if context <= 0:
        return np.zeros((2, song.n_bins, 0), np.float32)
    k = max(1, math.ceil(context / chunk))
    chunk = min(chunk, song.num_frames)
    starts = np.linspace(0, max(song.num_frames - chunk, 0), k).round().astype(int)
    parts = [song.frames(int(s), int(s) + chunk) for s in starts]
    return np.concatenate(parts, axis=-1)[..., :context]


def windowed_actions(
    policy: Any,
    song: SongCQT,
    *,
    window: int,
    num_devices: int,
    overlap: int,
    margin: int,
    context: int,
    chunk: int,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Cross-faded greedy activations ``[num_devices, N]`` of ``policy`` over the song."""
    import torch

    n = song.num_frames
    overlap = min(overlap, window - 1) if n > window else 0
    hop = max(window - overlap, 1)
    starts = window_starts(n, window, hop)
    ctx = context_frames(song, context, chunk) if len(starts) > 1 else context_frames(song, 0, 1)
    acc = np.zeros((num_devices, n), np.float64)
    wsum = np.zeros(n, np.float64)
    for b0 in range(0, len(starts), batch_size):
        group = starts[b0 : b0 + batch_size]
        states = []
        for s in group:
            states.append(torch.from_numpy(np.concatenate([song.frames(s, s + window), ctx], -1)))
        with torch.no_grad():
            actions = policy.generate_actions(states, num_actions_per_state=1, temperature=0.0)
        for k, s in enumerate(group):
            a = actions[k][0]
            a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
            if a.shape[0] != num_devices:
                raise ValueError(
                    f"the policy drives {a.shape[0]} devices but the rig has {num_devices}: "
                    "use a rig with as many devices as the policy")
            a = a[:, :window]
            length = min(window, n - s)
            i = b0 + k
            left = starts[i - 1] + window - s if i > 0 else 0
            right = s + window - starts[i + 1] if i + 1 < len(starts) else 0
            w = crossfade_weights(window, left, right, margin)[:length]
            acc[:, s : s + length] += a[:, :length] * w
            wsum[s : s + length] += w
            if progress is not None:
                progress(1)
    if np.any(wsum <= 0):
        raise RuntimeError("internal error: a frame got no window (cross-fade weights)")
    out = (acc / wsum).astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("the policy returned NaN or inf activations")
    return np.clip(out, 0.0, 1.0)


__all__ = ["SongCQT", "cqt_to_disk", "crossfade_weights", "windowed_actions", "window_starts",
           "context_frames"]
