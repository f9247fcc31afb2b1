"""Stream a song of any length: decode block by block, resample, and compute its CQT in
blocks with enough audio context on each side that the result equals the whole-file CQT.

A 1-hour set never needs its whole audio or CQT in memory: at most one block (default
30 s) of audio plus the context is decoded at a time (``StreamStats`` records the largest).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cqtml_env.features.audio import AUDIO_EXTENSIONS, AV_EXTENSIONS, AudioLoadError, to_stereo


@dataclass
class StreamStats:
    """What the streaming reader did (tests use it to prove memory stays bounded)."""

    blocks: int = 0
    samples: int = 0
    max_block_samples: int = 0  # the largest audio array handed to the CQT at once
    reads: list[int] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # thread CPU s (cqt_to_disk)


def _probe_av(path: Path) -> tuple[int, float, int]:
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            raise AudioLoadError(f"{path}: no audio stream")
        s = c.streams.audio[0]
        dur = None
        if s.duration is not None and s.time_base is not None:
            dur = float(s.duration * s.time_base)
        elif c.duration is not None:
            dur = c.duration / 1e6
        return int(s.rate or s.codec_context.sample_rate), float(dur or 0.0), int(s.channels)


class AudioReader:
    """Decode ``path`` block by block as float32 stereo ``[2, n]`` at ``sample_rate``.

    libsndfile reads wav/flac/ogg/opus/mp3/aiff; PyAV (``cqtml-env[show]``) reads m4a/aac.
    Raises :class:`AudioLoadError` naming the file and the extensions that are supported.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int) -> None:
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        p = self.path
        if not p.is_file():
            raise AudioLoadError(f"{p}: no such file")
        if p.stat().st_size == 0:
            raise AudioLoadError(f"{p}: empty file")
        self.backend = "soundfile"
        suffix = p.suffix.lower()
        try:
            import soundfile as sf

            info = sf.info(str(p))
            self.source_rate, self.duration = int(info.samplerate), float(info.duration)
            self.channels = int(info.channels)
            self.source_frames = int(info.frames)
        except Exception as exc:
            try:
                self.source_rate, self.duration, self.channels = _probe_av(p)
                self.backend = "av"
            except ImportError:
                raise AudioLoadError(
                    f"{p}: libsndfile cannot read it and PyAV is not installed "
                    f"(pip install 'cqtml-env[show]' for {', '.join(AV_EXTENSIONS)})"
                ) from exc
            except Exception as exc2:
                hint = "" if suffix in AUDIO_EXTENSIONS else (
                    f" ('{suffix}' is not a supported extension: {', '.join(AUDIO_EXTENSIONS)})"
                )
                raise AudioLoadError(f"{p}: not readable as audio ({exc2}){hint}") from exc
        if self.source_rate <= 0:
            raise AudioLoadError(f"{p}: bad sample rate {self.source_rate}")
        if self.backend == "soundfile" and self.duration <= 0:
            raise AudioLoadError(f"{p}: no audio frames")

    def _raw_blocks(self, block: int) -> Iterator[np.ndarray]:
        """Source-rate blocks ``[2, n]``."""
        if self.backend == "soundfile":
            import soundfile as sf

            try:
                with sf.SoundFile(str(self.path)) as f:
                    while True:
                        data = f.read(block, dtype="float32", always_2d=True)
                        if data.shape[0] == 0:
                            break
                        yield to_stereo(data.T)
            except AudioLoadError:
                raise
            except Exception as exc:
                raise AudioLoadError(f"{self.path}: cannot decode audio ({exc})") from exc
            return
        import av

        try:
            with av.open(str(self.path)) as c:
                s = c.streams.audio[0]
                rs = av.AudioResampler(format="fltp", layout="stereo", rate=self.source_rate)
                pending: list[np.ndarray] = []
                n = 0
                for frame in c.decode(s):
                    for f in rs.resample(frame):
                        a = f.to_ndarray().astype(np.float32, copy=False)
                        pending.append(a)
                        n += a.shape[1]
                    if n >= block:
                        yield np.concatenate(pending, axis=1)
                        pending, n = [], 0
                for f in rs.resample(None):
                    pending.append(f.to_ndarray().astype(np.float32, copy=False))
                if pending:
                    yield np.concatenate(pending, axis=1)
        except Exception as exc:
            raise AudioLoadError(f"{self.path}: cannot decode audio ({exc})") from exc

    def estimated_samples(self) -> int | None:
        """Samples at the target rate from the file's header (exact when no resampling;
        ``None`` for PyAV files, whose container durations are approximate)."""
        if self.backend != "soundfile":
            return None
        return int(round(self.source_frames * self.sample_rate / self.source_rate))

    def segment(self, start: int, n: int) -> np.ndarray | None:
        """``[2, n]`` float32 of target-rate samples ``start .. start + n`` (zeros outside the
        file), read with a seek; resampled one-shot when the rates differ (the same signal
        as :meth:`blocks` to within the resampler's precision). ``None`` for PyAV files."""
        if self.backend != "soundfile":
            return None
        import soundfile as sf

        out = np.zeros((2, int(n)), np.float32)
        ratio = self.source_rate / self.sample_rate
        pad = 0 if ratio == 1 else 64 + int(0.01 * self.source_rate)
        # start on a whole period of the rate ratio, so target sample start - s0 / ratio is
        # an integer (no fractional-sample shift against the streamed resampler)
        period = self.source_rate // math.gcd(self.source_rate, self.sample_rate)
        s0 = (int(math.floor(start * ratio)) - pad) // period * period
        s1 = int(math.ceil((start + n) * ratio)) + pad
        a, b = max(s0, 0), min(s1, self.source_frames)
        if b <= a:
            return out
        raw = np.zeros((2, s1 - s0), np.float32)
        try:
            with sf.SoundFile(str(self.path)) as f:
                f.seek(a)
                data = f.read(b - a, dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioLoadError(f"{self.path}: cannot decode audio ({exc})") from exc
        raw[:, a - s0 : a - s0 + data.shape[0]] = to_stereo(data.T)
        if not np.all(np.isfinite(raw)):
            raise AudioLoadError(f"{self.path}: audio contains NaN or inf")
        if ratio == 1:
            return raw
        import soxr

        y = soxr.resample(raw.T, self.source_rate, self.sample_rate, quality="HQ").T
        j0 = int(round(start - s0 / ratio))
        got = y[:, max(j0, 0) : j0 + n]
        out[:, : got.shape[1]] = got
        return out

    def blocks(self, seconds: float = 10.0) -> Iterator[np.ndarray]:
        """Blocks of about ``seconds`` at the target rate (streaming soxr resampler)."""
        block = max(1024, int(seconds * self.source_rate))
        resampler = None
        if self.source_rate != self.sample_rate:
            import soxr

            resampler = soxr.ResampleStream(
                self.source_rate, self.sample_rate, 2, dtype="float32", quality="HQ"
            )
        got = False
        for raw in self._raw_blocks(block):
            if not np.all(np.isfinite(raw)):
                raise AudioLoadError(f"{self.path}: audio contains NaN or inf")
            out = raw if resampler is None else resampler.resample_chunk(raw.T.copy()).T
            if out.shape[1]:
                got = True
                yield np.ascontiguousarray(out, dtype=np.float32)
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros((0, 2), np.float32), last=True).T
            if tail.shape[1]:
                got = True
                yield np.ascontiguousarray(tail, dtype=np.float32)
        if not got:
            raise AudioLoadError(f"{self.path}: no samples decoded")


def cqt_context_samples(processor) -> int:
    """Audio context (samples, a whole number of hops) each side of a block so its CQT
    frames equal the whole-file CQT: the longest filter (lowest bin) plus slack for
    librosa's octave-wise resampling."""
    q = 1.0 / (2.0 ** (1.0 / processor.config.bins_per_octave) - 1.0)
    longest = q * processor.sample_rate / processor.config.fmin
    hops = math.ceil((longest * 0.75 + 4096) / processor.hop_length)
    return hops * processor.hop_length


def stream_cqt(
    reader: AudioReader,
    processor,
    *,
    block_frames: int = 1292,
    stats: StreamStats | None = None,
    audio_sink=None,
) -> Iterator[np.ndarray]:
    """Yield consecutive normalised CQT blocks ``[2, n_bins, n]`` of the whole song.

    Frame ``j`` is centred at sample ``j * hop`` (librosa's centred framing); the blocks
    together have ``1 + samples // hop`` frames, like ``processor`` on the whole file.
    ``audio_sink(block)`` sees every resampled audio block once (e.g. the video encoder).
    """
    hop = processor.hop_length
    ctx = cqt_context_samples(processor)
    step = int(block_frames) * hop
    buf = np.zeros((2, ctx), np.float32)  # left zero context = librosa's centre padding
    buf_start = -ctx  # global sample index of buf[:, 0]
    next_frame = 0
    total = 0
    ended = False
    blocks = reader.blocks()
    while True:
        # fill until the next block of frames has its right context
        need_end = next_frame * hop + step + ctx
        while not ended and buf_start + buf.shape[1] < need_end:
            try:
                b = next(blocks)
            except StopIteration:
                ended = True
                break
            if audio_sink is not None:
                audio_sink(b)
            total += b.shape[1]
            buf = np.concatenate([buf, b], axis=1)
            if stats is not None:
                stats.reads.append(b.shape[1])
        n_frames_total = 1 + total // hop if ended else None
        start = next_frame
        end = start + int(block_frames)
        if n_frames_total is not None:
            end = min(end, n_frames_total)
        if end <= start:
            return
        lo = start * hop - ctx
        hi = (end - 1) * hop + ctx + 1
        seg = buf[:, lo - buf_start : hi - buf_start]
        if seg.shape[1] < hi - lo:  # past the end of the song: zeros (librosa pads too)
            seg = np.pad(seg, ((0, 0), (0, hi - lo - seg.shape[1])))
        if stats is not None:
            stats.blocks += 1
            stats.max_block_samples = max(stats.max_block_samples, seg.shape[1])
        mag = processor.magnitude(np.ascontiguousarray(seg))
        c0 = ctx // hop
        out = processor.normalise(mag[..., c0 : c0 + (end - start)])
        yield out
        next_frame = end
        if stats is not None:
            stats.samples = total
        # drop audio no longer needed
        keep_from = next_frame * hop - ctx
        if keep_from > buf_start:
            buf = buf[:, keep_from - buf_start :]
            buf_start = keep_from


__all__ = ["AudioReader", "StreamStats", "stream_cqt", "cqt_context_samples"]
