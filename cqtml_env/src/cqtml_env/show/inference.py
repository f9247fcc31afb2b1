"""Whole-song inference: a policy made for clips run over a song of any length.

1. :func:`cqt_to_disk` streams the song's CQT (:mod:`cqtml_env.show.stream`) into a
   frames-major float16 file (about 13 MB per hour per channel pair of 84 bins), so no
   step holds the whole CQT in memory; it also keeps an onset envelope for tempo.
2. :class:`WindowRunner` runs the policy on windows of its clip length that overlap by
   ``overlap_s`` and cross-fades them (zero weight in a ``margin_s`` at each inner edge,
   where a clip policy's context is cut, then complementary linear ramps), so the show is
   seamless. ``make_show`` feeds it the CQT blocks as they stream (``cqt_to_disk(...,
   on_block=runner.feed, threaded=True)``: the CQT in a worker thread, the policy here, so
   two cores do both at once); :func:`windowed_actions` feeds it from a stored CQT.

Song-level context. The policies normalise by per-clip statistics (``clip_relative``
quantiles per bin, the CNN's ``ClipContext`` mean/max, the band-follower's floor/ceiling
quantiles). Run window by window these would jump at every window. So every window is fed
as ``[window | song context]``: ``context_s`` of frames in 1-second chunks, one from the
middle of each of that many equal parts of the song (:func:`context_starts`), appended after
the window (the policy's outputs for those frames are
dropped). Every statistic is then taken over a population most of which is the same for
all windows: the same song-level reference, with no policy API change. ``context_s=0``
switches it off (plain windows).

Song gain. The window is still half of that population, so each window's output stays
relative to its own range. With a :class:`~cqtml_env.show.song_gain.SongGain`, ``finish``
maps every window's output from the range of what the policy saw onto the whole song's range
before the cross-fade, so a quiet verse is darker than the chorus.
"""

from __future__ import annotations

import math
import os
import time
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
            # the columns this block touches, as runs of consecutive frames (reduceat, not
            # np.add.at: a sum per run instead of one scattered add per frame)
            lo = int(np.searchsorted(edges, s, side="right")) - 1
            hi = int(np.searchsorted(edges, s + block.shape[0] - 1, side="right")) - 1
            starts = np.maximum(edges[lo : hi + 1], s) - s
            out[:, lo : hi + 1] += np.add.reduceat(block, starts, axis=0).T
        counts = np.maximum(np.diff(edges), 1)
        del mm
        return out / counts


def _in_thread(it, maxsize: int = 2, cpu: dict | None = None):
    """Iterate ``it`` in a worker thread, ``maxsize`` items ahead; its errors re-raised here.
    ``cpu["worker_s"]``: the worker's own CPU seconds (for the bench's critical path)."""
    import queue
    import threading
    import time

    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        c0 = time.thread_time()
        try:
            for x in it:
                if not put((True, x)):
                    return
            if cpu is not None:
                cpu["worker_s"] = time.thread_time() - c0
            put((True, done))
        except BaseException as exc:
            put((False, exc))

    t = threading.Thread(target=work, daemon=True, name="cqt-stream")
    t.start()
    try:
        while True:
            ok, x = q.get()
            if not ok:
                raise x
            if x is done:
                return
            yield x
    finally:
        stop.set()
        t.join()


def cqt_to_disk(
    reader: AudioReader,
    processor: Any,
    path: str | os.PathLike,
    *,
    progress: Callable[[int], None] | None = None,
    audio_sink: Callable[[np.ndarray], None] | None = None,
    block_frames: int = 1292,
    on_block: Callable[[np.ndarray], None] | None = None,
    threaded: bool = False,
) -> SongCQT:
    """Stream ``reader``'s CQT into ``path`` (float16, frames-major).

    ``on_block(block)`` sees each ``[2, n_bins, n]`` block (as stored: float16-rounded) in
    order, e.g. :class:`WindowRunner` running the policy while the CQT goes on. With
    ``threaded=True`` the CQT is computed in a worker thread (one block ahead) while this
    thread stores the blocks and runs ``on_block``: librosa's FFTs and torch both release
    the GIL, so on two cores the policy costs little wall time on top of the CQT."""
    path = Path(path)
    stats = StreamStats()
    onset: list[np.ndarray] = []
    n = 0
    last: np.ndarray | None = None
    blocks = stream_cqt(reader, processor, stats=stats, audio_sink=audio_sink,
                        block_frames=block_frames)
    c0 = time.thread_time()
    if threaded:
        blocks = _in_thread(blocks, cpu=stats.cpu)
    with open(path, "wb") as f:
        for block in blocks:
            stored = np.ascontiguousarray(block.transpose(2, 0, 1)).astype(np.float16)
            f.write(stored.tobytes())
            if on_block is not None:
                on_block(stored.astype(np.float32).transpose(1, 2, 0))
            mono = block.mean(axis=0)  # [F, n]
            prev = mono[:, :1] if last is None else last
            flux = np.maximum(np.diff(np.concatenate([prev, mono], axis=1), axis=1), 0).mean(0)
            onset.append(flux.astype(np.float32))
            last = mono[:, -1:]
            n += block.shape[-1]
            if progress is not None:
                progress(block.shape[-1])
    stats.cpu["main_s"] = time.thread_time() - c0
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
    """Window starts, at most ``hop`` apart, the last window ending at the song's end, no
    frame in more than two windows (so cross-fade weights sum to one).

    Regular starts ``0, hop, 2 hop, ...`` (known while the CQT streams in, so the policy can
    run on them at once), then the tail, from the last regular start that leaves at least
    ``hop * window / (2 hop - window)`` frames to the end, spread evenly (gaps between
    ``window / 2`` and ``hop``). With an overlap of half a window or more, evenly spaced
    over the whole song. (A song under ``window + need`` frames may get three windows on a
    frame; :class:`WindowRunner` divides by the summed weights, so that is still a weighted
    mean.)"""
    if num_frames <= window:
        return [0]
    hop = max(int(hop), 1)
    final = num_frames - window
    if final <= hop:
        return [0, final]
    if 2 * hop <= window:
        k = math.ceil(final / hop) + 1
        return [int(round(x)) for x in np.linspace(0, final, k)]
    need = hop * window / (2 * hop - window)
    regular = [s for s in range(0, final, hop) if final - s >= need] or [0]
    a = regular[-1]
    m = max(1, math.ceil((final - a) / hop))
    tail = [int(round(x)) for x in np.linspace(a, final, m + 1)[1:]]
    return regular + tail


def context_starts(num_frames: int, context: int, chunk: int) -> np.ndarray:
    """Start frames of the ``ceil(context / chunk)`` song-context chunks: the middle of each
    of that many equal parts of the song. Not its first and last frames: intros and endings
    are often silent or fading, and a silent chunk in every window's context would stand for
    far more of the song than it is (the song gain then darkens the whole show)."""
    k = max(1, math.ceil(context / chunk))
    chunk = min(chunk, num_frames)
    mid = (np.arange(k) + 0.5) * num_frames / k - chunk / 2
    return np.clip(np.round(mid), 0, max(num_frames - chunk, 0)).astype(int)


def context_frames(song: SongCQT, context: int, chunk: int) -> np.ndarray:
    """``[2, F, context]``: the chunks of :func:`context_starts`, from the stored CQT."""
    if context <= 0:
        return np.zeros((2, song.n_bins, 0), np.float32)
    chunk = min(chunk, song.num_frames)
    starts = context_starts(song.num_frames, context, chunk)
    parts = [song.frames(int(s), int(s) + chunk) for s in starts]
    return np.concatenate(parts, axis=-1)[..., :context]


class WindowRunner:
    """Runs a policy on the song's windows as its CQT arrives, then cross-fades them.

    ``feed(block)`` takes consecutive ``[2, n_bins, n]`` CQT blocks and runs the policy on
    every window (:func:`window_starts`) that is complete, ``batch_size`` windows at a time,
    each as ``[window | ctx]``; ``finish(num_frames)`` runs the rest and returns the
    cross-faded activations ``[num_devices, num_frames]``. Only the frames still needed for
    a window are kept, so memory does not grow with the song. The song-level context
    ``ctx`` must be known before the first window (:func:`context_from_audio` computes it
    from a few seeks into the audio ahead of the stream)."""

    def __init__(self, policy: Any, *, window: int, num_devices: int, overlap: int,
                 margin: int, ctx: np.ndarray, batch_size: int = 8,
                 progress: Callable[[int], None] | None = None,
                 song_gain: Any = None) -> None:
        self.policy, self.window, self.num_devices = policy, int(window), int(num_devices)
        # song gain (cqtml_env.show.song_gain): the band level of every frame as it arrives
        self.song_gain = song_gain
        self.ctx_levels = song_gain.levels(ctx) if song_gain is not None else None
        self.levels: list[np.ndarray] = []
        self.means: list[np.ndarray] = []  # each band's mean (song gain's fullness)
        self.song_range: tuple[np.ndarray, np.ndarray] | None = None
        self.overlap = min(int(overlap), self.window - 1)
        self.hop = max(self.window - self.overlap, 1)
        self.margin, self.ctx, self.batch_size = int(margin), ctx, int(batch_size)
        self.progress = progress
        self.buf: np.ndarray | None = None  # frames [buf_start, have)
        self.buf_start = 0
        self.have = 0
        self.next_start = 0
        self.queued: list[tuple[int, np.ndarray]] = []
        self.outputs: dict[int, np.ndarray] = {}  # start -> [num_devices, window]

    def feed(self, block: np.ndarray) -> None:
        block = np.asarray(block, np.float32)
        if self.song_gain is not None:
            self.levels.append(self.song_gain.levels(block))
            if self.song_gain.fullness > 0:
                self.means.append(self.song_gain.fullness_levels(block))
        self.buf = block if self.buf is None else np.concatenate([self.buf, block], axis=-1)
        self.have += block.shape[-1]
        while self.next_start + self.window <= self.have:
            self._queue(self.next_start, self.ctx)
            self.next_start += self.hop
        if len(self.queued) >= self.batch_size:
            self._run()
        keep = self.next_start  # later windows are read back from disk in finish()
        if keep > self.buf_start:
            self.buf = self.buf[..., keep - self.buf_start :]
            self.buf_start = keep

    def _slice(self, s: int) -> np.ndarray:
        x = self.buf[..., s - self.buf_start : s - self.buf_start + self.window]
        if x.shape[-1] < self.window:  # a song shorter than a window: zeros (as on disk)
            x = np.pad(x, ((0, 0), (0, 0), (0, self.window - x.shape[-1])))
        return x

    def _queue(self, s: int, ctx: np.ndarray) -> None:
        self.queued.append((s, np.concatenate([self._slice(s), ctx], axis=-1)))

    def _run(self) -> None:
        import torch

        for b0 in range(0, len(self.queued), self.batch_size):
            group = self.queued[b0 : b0 + self.batch_size]
            states = [torch.from_numpy(x) for _, x in group]
            with torch.inference_mode():
                actions = self.policy.generate_actions(states, num_actions_per_state=1,
                                                       temperature=0.0)
            for (s, _), act in zip(group, actions):
                a = act[0]
                a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
                if a.shape[0] != self.num_devices:
                    raise ValueError(
                        f"the policy drives {a.shape[0]} devices but the rig has "
                        f"{self.num_devices}: use a rig with as many devices as the policy")
                self.outputs[s] = np.asarray(a[:, : self.window], np.float32)
                if self.progress is not None:
                    self.progress(1)
        self.queued = []

    def _apply_song_gain(self, starts: list[int], n: int) -> None:
        """Map every window's output from the range of what the policy saw (``[window | ctx]``)
        onto the song's range, from the band level of each frame (computed once, as fed), with
        the song's fullness offset added (``SongGain.offset``; none with ``fullness=0``)."""
        sg, window = self.song_gain, self.window
        level = np.concatenate(self.levels, axis=-1) if self.levels else np.zeros((self.num_devices, 0))
        if level.shape[1] < n:  # every caller feeds the whole song before finish()
            raise RuntimeError(f"internal error: song gain saw {level.shape[1]} of {n} frames")
        level = level[:, :n]
        offset = (sg.offset(level, np.concatenate(self.means, axis=-1)[:, :n]) if self.means
                  else np.zeros(level.shape))
        self.song_range = sg.range(level + offset)
        pad = np.zeros((self.num_devices, window), level.dtype)  # past the end: silent frames
        for s in starts:
            lv, off = level[:, s : s + window], offset[:, s : s + window]
            if lv.shape[1] < window:
                lv = np.concatenate([lv, pad[:, : window - lv.shape[1]]], axis=-1)
                off = np.pad(off, ((0, 0), (0, window - off.shape[1])), mode="edge")
            seen = sg.range(np.concatenate([lv, self.ctx_levels], axis=-1))
            self.outputs[s] = sg.apply(self.outputs[s], seen, self.song_range, off)

    def finish(self, num_frames: int, frames: Callable[[int, int], np.ndarray]) -> np.ndarray:
        """Run the windows still missing (their frames read with ``frames(start, stop)``,
        e.g. :meth:`SongCQT.frames`) and cross-fade. Windows run while streaming that the
        final layout does not use (at most a few near the end) are dropped."""
        n, window = int(num_frames), self.window
        if self.buf is None or n <= 0:
            raise ValueError("no CQT frames: the song is empty")
        starts = window_starts(n, window, self.hop)
        if len(starts) == 1:  # one window: no song context (as a plain clip)
            self.queued, self.outputs = [], {}
            self.queued.append((0, np.asarray(frames(0, window), np.float32)))
        else:
            have = set(self.outputs) | {s for s, _ in self.queued}
            for s in starts:
                if s not in have:
                    x = np.asarray(frames(s, s + window), np.float32)
                    self.queued.append((s, np.concatenate([x, self.ctx], axis=-1)))
        self._run()
        if self.song_gain is not None and len(starts) > 1:  # one window: the song is its range
            self._apply_song_gain(starts, n)
        acc = np.zeros((self.num_devices, n), np.float64)
        wsum = np.zeros(n, np.float64)
        for i, s in enumerate(starts):
            a = self.outputs[s]
            length = min(window, n - s)
            left = starts[i - 1] + window - s if i > 0 else 0
            right = s + window - starts[i + 1] if i + 1 < len(starts) else 0
            w = crossfade_weights(window, left, right, self.margin)[:length]
            acc[:, s : s + length] += a[:, :length] * w
            wsum[s : s + length] += w
        if np.any(wsum <= 0):
            raise RuntimeError("internal error: a frame got no window (cross-fade weights)")
        out = (acc / wsum).astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise ValueError("the policy returned NaN or inf activations")
        return np.clip(out, 0.0, 1.0)


def context_from_audio(reader: AudioReader, processor: Any, *, context: int, chunk: int,
                       window: int) -> np.ndarray | None:
    """The song-level context of :func:`context_frames`, computed before the CQT streams:
    the chunks of :func:`context_starts` (positions from the file's header length), each
    CQT'd from a seek into the audio with the same context as
    :func:`~cqtml_env.show.stream.stream_cqt` (so the same frames, float16-rounded like the
    stored CQT). ``None`` when the reader cannot seek (PyAV files) or the song is at most
    one window long: then :func:`windowed_actions` after the CQT does the same job."""
    from cqtml_env.show.stream import cqt_context_samples

    hop = processor.hop_length
    est = reader.estimated_samples()
    if est is None:
        return None
    n_est = 1 + est // hop
    if n_est <= window:
        return None
    if context <= 0:
        return np.zeros((2, processor.n_bins, 0), np.float32)
    chunk = min(chunk, n_est)
    starts = context_starts(n_est, context, chunk)
    ctx_s = cqt_context_samples(processor)
    segs = []
    for s in starts:
        seg = reader.segment(int(s) * hop - ctx_s, (chunk - 1) * hop + 2 * ctx_s + 1)
        if seg is None:
            return None
        segs.append(seg)
    # one librosa call for all chunks ([k, 2, samples]): its filter bank is built once, not
    # once per chunk (that was most of this step's time)
    mag = processor.magnitude(np.ascontiguousarray(np.stack(segs)))
    c0 = ctx_s // hop
    parts = processor.normalise(mag[..., c0 : c0 + chunk]).astype(np.float16).astype(np.float32)
    return np.concatenate(list(parts), axis=-1)[..., :context]


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
    song_gain: Any = None,
    runner_out: list | None = None,
) -> np.ndarray:
    """Cross-faded greedy activations ``[num_devices, N]`` of ``policy`` over a song whose
    CQT is already on disk (the context read from it): :class:`WindowRunner` fed from disk.
    ``song_gain``: a :class:`~cqtml_env.show.song_gain.SongGain` (None: windows keep their
    own range); ``runner_out``: a list that gets the runner (for its ``song_range``)."""
    n = song.num_frames
    ctx = context_frames(song, context, chunk) if n > window else context_frames(song, 0, 1)
    runner = WindowRunner(policy, window=window, num_devices=num_devices, overlap=overlap,
                          margin=margin, ctx=ctx, batch_size=batch_size, progress=progress,
                          song_gain=song_gain)
    if runner_out is not None:
        runner_out.append(runner)
    step = 4096
    for s in range(0, n, step):
        runner.feed(song.frames(s, min(s + step, n)))
    return runner.finish(n, song.frames)


__all__ = ["SongCQT", "cqt_to_disk", "crossfade_weights", "windowed_actions", "window_starts",
           "context_starts", "context_frames", "context_from_audio", "WindowRunner"]
