"""The one interface every clip source shares (synthetic music, audio folders, FMA, MusicNet).

``len(ds)``, ``ds[i]`` (CQT ``float32 [2, n_bins, T]``, or audio ``float32 [2, samples]`` at the
processor's rate with ``output_format="audio"``), ``ds.clip_info(i)`` (metadata dict with at
least ``clip_id``, ``source``, ``offset``, ``duration``) and ``ds.get_many(indices)``. Indices
are plain: negative or out-of-range ones raise IndexError (no Python wrap-around, so an
off-by-one in a sampler fails loudly instead of silently reusing the last clip).
"""

from __future__ import annotations

import operator
import os
import warnings
import zlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cqtml_env.features.audio import AV_EXTENSIONS, AudioLoadError, load_audio
from cqtml_env.features.cache import FeatureCache, as_cache, file_identity
from cqtml_env.features.cqt import CQTProcessor

OutputFormat = Literal["cqt", "audio"]


class ClipDataset(ABC):
    """Base class: subclasses say how many clips there are, how to get a clip's audio
    (already at the processor's rate, any length) and its metadata; the base adds the CQT,
    the feature cache, index checking and batching.
    """

    def __init__(
        self,
        processor: CQTProcessor | None = None,
        max_duration: float = 5.0,
        output_format: OutputFormat = "cqt",
        cache: FeatureCache | str | os.PathLike | None = None,
        seed: int = 0,
    ) -> None:
        if output_format not in ("cqt", "audio"):
            raise ValueError(f"output_format must be 'cqt' or 'audio', got {output_format!r}")
        # A given processor wins: its max_duration fixes the clip window so that T matches.
        self.processor = processor if processor is not None else CQTProcessor(max_duration=max_duration)
        self.max_duration = float(self.processor.max_duration)
        self.output_format: OutputFormat = output_format
        self.cache = as_cache(cache)
        self.seed = int(seed)

    # -- to implement --------------------------------------------------------------------
    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _clip_info(self, index: int) -> dict[str, Any]:
        """Metadata of a valid index (the base copies it for the caller)."""

    @abstractmethod
    def _clip_audio(self, index: int) -> np.ndarray:
        """Audio ``[channels, samples]`` at ``processor.sample_rate`` (padding is done here)."""

    @abstractmethod
    def _cache_identity(self, index: int) -> str:
        """What identifies the clip's source content (file identity, generator version...)."""

    # -- public API ----------------------------------------------------------------------
    @property
    def num_clips(self) -> int:
        return len(self)

    def _check_index(self, index: Any) -> int:
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__} indices must be integers, got {type(index).__name__}"
            ) from None
        n = len(self)
        if i < 0 or i >= n:
            raise IndexError(f"clip index {i} out of range for {type(self).__name__} of {n} clips")
        return i

    def __getitem__(self, index: int) -> np.ndarray:
        i = self._check_index(index)
        if self.output_format == "audio":
            return self.get_audio(i)
        return self._features(i)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def clip_info(self, index: int) -> dict[str, Any]:
        """Metadata dict of clip ``index`` (a fresh copy: callers may mutate it)."""
        return dict(self._clip_info(self._check_index(index)))

    def get_audio(self, index: int) -> np.ndarray:
        """Stereo audio of the clip, padded/cut to the window: ``float32 [2, num_samples]``."""
        i = self._check_index(index)
        return self.processor.prepare_audio(self._clip_audio(i))

    def get_cqt(self, index: int) -> np.ndarray:
        """The CQT whatever ``output_format`` says."""
        return self._features(self._check_index(index))

    def cache_key(self, index: int) -> str:
        """Feature-cache key of a clip (window + source identity + processor config)."""
        i = self._check_index(index)
        info = self._clip_info(i)
        return FeatureCache.key(
            self._cache_identity(i),
            float(info.get("offset", 0.0)),
            self.max_duration,
            self.processor.config.to_json(),
        )

    def _compute(self, i: int) -> np.ndarray:
        return self.processor(self._clip_audio(i))

    def _features(self, i: int) -> np.ndarray:
        if self.cache is None:
            return self._compute(i)
        key = self.cache_key(i)
        arr = self.cache.get(key)
        if arr is not None and arr.shape == self.processor.shape and arr.dtype == np.float32:
            return arr
        arr = self._compute(i)
        if self._cacheable(i):
            self.cache.put(key, arr)
        return arr

    def _cacheable(self, i: int) -> bool:
        """Whether a computed CQT may be stored (not e.g. the zeros stood in for a bad file)."""
        return True

    def get_many(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stack several clips: ``[N, 2, n_bins, T]`` (or ``[N, 2, samples]`` for audio).

        Uncached CQTs are computed in one batched librosa call, which is cheaper than N calls.
        """
        idx = [self._check_index(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        if self.output_format == "audio":
            if not idx:
                return np.zeros((0, 2, self.processor.num_samples), dtype=np.float32)
            return np.stack([self.get_audio(i) for i in idx])
        out = np.zeros((len(idx), *self.processor.shape), dtype=np.float32)
        todo: list[int] = []  # positions in idx
        for pos, i in enumerate(idx):
            if self.cache is not None:
                arr = self.cache.get(self.cache_key(i))
                if arr is not None and arr.shape == self.processor.shape:
                    out[pos] = arr
                    continue
            todo.append(pos)
        if todo:
            audios = [self._clip_audio(idx[pos]) for pos in todo]
            feats = self.processor.batch(audios)
            for pos, feat in zip(todo, feats):
                out[pos] = feat
                if self.cache is not None and self._cacheable(idx[pos]):
                    self.cache.put(self.cache_key(idx[pos]), feat)
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(clips={len(self)}, max_duration={self.max_duration}, "
            f"output_format={self.output_format!r}, seed={self.seed})"
        )




# ---------------------------------------------------------------------------------------
# Data sets of audio files
# ---------------------------------------------------------------------------------------
class DataWarning(UserWarning):
    """Files skipped or failing in a data set (filter with ``warnings.simplefilter``)."""


MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
MAX_CHANNELS = 8
SILENCE_PEAK = 1e-4
Validate = Literal["header", "probe", "full"]


@dataclass
class AudioFile:
    """One usable file: header facts plus the labels its loader attached."""

    path: Path
    rel: str  # path relative to the data set root (stable part of clip ids)
    duration: float  # s (decoded length when validate="full")
    sample_rate: int
    channels: int
    meta: dict[str, Any] = field(default_factory=dict)
    identity: str = ""  # cache identity (path + size + mtime_ns)


def check_av_file(path: Path, min_duration: float) -> tuple[str | None, float, int, int]:
    """:func:`check_audio_file` for PyAV-only formats (m4a/aac): decoded whole."""
    try:
        audio, sr = load_audio(path)
    except AudioLoadError:
        return "decode_error", 0.0, 0, 0
    duration = audio.shape[1] / sr
    if duration < min_duration:
        return "too_short", duration, sr, 2
    if float(np.max(np.abs(audio))) < SILENCE_PEAK:
        return "silent", duration, sr, 2
    return None, duration, sr, 2


def check_audio_file(
    path: Path, min_duration: float, validate: Validate = "probe", window: float = 5.0
) -> tuple[str | None, float, int, int]:
    """``(reason or None, duration, sample_rate, channels)`` of a candidate file.

    Reasons: empty_file, not_audio, no_frames, bad_sample_rate, bad_channels, too_short,
    truncated, decode_error, silent. ``header`` reads only the header (soundfile.info;
    WAV/OGG truncation shows there). ``probe`` also seeks to and decodes the last second (a
    truncated FLAC or MP3 fails there: a few ms per file) and decodes files no longer than
    ``window + 1`` s whole, so short silent or corrupt files are caught. ``full`` decodes
    every file whole (silent or corrupt long files too): exact, but slow on big sets.
    """
    import soundfile as sf

    try:
        if path.stat().st_size == 0:
            return "empty_file", 0.0, 0, 0
        if path.suffix.lower() in AV_EXTENSIONS:  # m4a/aac: libsndfile cannot; PyAV decodes
            return check_av_file(path, min_duration)
        info = sf.info(str(path))
    except Exception:
        return "not_audio", 0.0, 0, 0
    sr, frames, ch = int(info.samplerate), int(info.frames), int(info.channels)
    if ch <= 0 or ch > MAX_CHANNELS:
        return "bad_channels", 0.0, sr, ch
    if sr < MIN_SAMPLE_RATE or sr > MAX_SAMPLE_RATE:
        return "bad_sample_rate", 0.0, sr, ch
    if frames <= 0:
        return "no_frames", 0.0, sr, ch
    extra = info.extra_info or ""
    if "(should be" in extra or "lacks an end-of-stream" in extra:
        return "truncated", frames / sr, sr, ch
    duration = frames / sr
    if duration < min_duration:
        return "too_short", duration, sr, ch
    if validate == "header":
        return None, duration, sr, ch
    whole = validate == "full" or duration <= window + 1.0
    try:
        with sf.SoundFile(str(path)) as f:
            if frames > sr:
                # Seek-and-read the last second: a truncated FLAC fails here, and a truncated
                # MP3 returns nothing (read sequentially, libsndfile pads it with zeros).
                f.seek(frames - sr)
                if f.read(sr, dtype="float32", always_2d=True).shape[0] < sr // 2:
                    return "truncated", duration, sr, ch
                f.seek(0)
    except Exception:
        return "truncated", duration, sr, ch
    if not whole:
        return None, duration, sr, ch
    try:
        with sf.SoundFile(str(path)) as f:
            got, peak = 0, 0.0
            for block in f.blocks(blocksize=1 << 18, dtype="float32", always_2d=True):
                if not np.all(np.isfinite(block)):
                    return "decode_error", duration, sr, ch
                got += block.shape[0]
                if block.size:
                    peak = max(peak, float(np.max(np.abs(block))))
    except Exception:
        return "decode_error", duration, sr, ch
    if got < 0.9 * frames:
        return "truncated", got / sr, sr, ch
    duration = got / sr
    if duration < min_duration:
        return "too_short", duration, sr, ch
    if peak < SILENCE_PEAK:
        return "silent", duration, sr, ch
    return None, duration, sr, ch


def clip_offsets(
    duration: float,
    window: float,
    selection: str = "sequential",
    hop: float | None = None,
    max_clips: int | None = None,
    clips_per_file: int = 1,
    rng: np.random.Generator | None = None,
) -> list[float]:
    """Window start times (s) for a file of ``duration`` s.

    ``sequential``: 0, hop, 2*hop... while the window fits (a tail shorter than a window is
    dropped), at most ``max_clips``. ``random``: ``clips_per_file`` sorted uniform offsets.
    A file no longer than one window gives one clip at 0 (zero-padded later).
    """
    if duration <= window + 1e-6:
        return [0.0]
    span = duration - window
    if selection == "random":
        rng = rng if rng is not None else np.random.default_rng(0)
        offs = np.sort(rng.uniform(0.0, span, int(clips_per_file)))
    else:
        step = float(hop) if hop else window
        offs = np.arange(0.0, span + 1e-6, step)
    out = [float(np.round(o, 3)) for o in offs]
    if max_clips is not None:
        out = out[: int(max_clips)]
    return out


class FileClipDataset(ClipDataset):
    """Clips cut from audio files; subclasses list the files (and their labels).

    Bad-file policy, so a pass over real-world data never crashes:

    * At construction every file is checked (``validate``, see :func:`check_audio_file`);
      bad ones are skipped, listed in ``ds.skipped`` as ``(path, reason)`` and reported in
      ONE :class:`DataWarning` with counts per reason and a few names.
    * A clip whose decoding still fails in ``ds[i]`` (e.g. a FLAC corrupted mid-stream with
      ``validate="header"``) returns silence (zeros), is flagged in ``clip_info(i)["error"]``,
      is never written to the feature cache, and its file is added to ``ds.skipped`` with
      reason ``decode_error``; the first such failure warns once. With ``strict=True`` it
      raises :class:`~cqtml_env.features.audio.AudioLoadError` instead.
    * No usable file at all: ValueError naming the root.

    Windows: ``max_duration`` s long, every ``clip_hop`` s (default: non-overlapping), at most
    ``max_clips_per_file``; or ``clip_selection="random"`` with ``clips_per_file`` offsets
    drawn from ``(seed, crc32(relative path))`` so adding files never moves other files' clips.
    """

    kind = "files"

    def __init__(
        self,
        root: str | os.PathLike,
        processor: CQTProcessor | None = None,
        max_duration: float = 5.0,
        output_format: OutputFormat = "cqt",
        cache: FeatureCache | str | os.PathLike | None = None,
        seed: int = 0,
        min_duration: float = 1.0,
        clip_hop: float | None = None,
        max_clips_per_file: int | None = None,
        clip_selection: Literal["sequential", "random"] = "sequential",
        clips_per_file: int = 1,
        validate: Validate = "probe",
        strict: bool = False,
    ) -> None:
        super().__init__(processor, max_duration, output_format, cache, seed)
        if clip_selection not in ("sequential", "random"):
            raise ValueError(f"clip_selection must be 'sequential' or 'random', got {clip_selection!r}")
        if validate not in ("header", "probe", "full"):
            raise ValueError(f"validate must be 'header', 'probe' or 'full', got {validate!r}")
        if clip_hop is not None and clip_hop <= 0:
            raise ValueError(f"clip_hop must be > 0 seconds, got {clip_hop}")
        if clips_per_file < 1:
            raise ValueError(f"clips_per_file must be >= 1, got {clips_per_file}")
        self.root = Path(root).expanduser()
        self.min_duration = float(min_duration)
        self.clip_hop = clip_hop
        self.max_clips_per_file = max_clips_per_file
        self.clip_selection = clip_selection
        self.clips_per_file = int(clips_per_file)
        self.validate = validate
        self.strict = bool(strict)
        self.files: list[AudioFile] = []
        self.clips: list[tuple[int, float]] = []  # (file index, offset s)
        self.skipped: list[tuple[str, str]] = []
        self._failed: dict[int, str] = {}  # clip index -> error, from decoding in ds[i]
        self._failed_files: set[int] = set()

    # -- construction helpers for subclasses ---------------------------------------------
    def _build(
        self,
        candidates: Sequence[tuple[Path, dict[str, Any]]],
        skipped: Sequence[tuple[str, str]] = (),
        notes: Sequence[str] = (),
    ) -> None:
        """Check candidate files, cut windows, warn once about what was skipped (and about
        the loader's ``notes``, e.g. label problems, in the same warning)."""
        self.skipped = list(skipped)
        for path, meta in candidates:
            reason, duration, sr, ch = check_audio_file(
                path, self.min_duration, self.validate, self.max_duration
            )
            if reason is not None:
                self.skipped.append((str(path), reason))
                continue
            try:
                rel = path.relative_to(self.root).as_posix()
            except ValueError:
                rel = path.as_posix()
            try:
                ident = file_identity(path)
            except OSError:
                self.skipped.append((str(path), "not_audio"))
                continue
            fi = len(self.files)
            self.files.append(AudioFile(path, rel, duration, sr, ch, dict(meta), ident))
            rng = np.random.default_rng([self.seed, zlib.crc32(rel.encode())])
            for off in clip_offsets(
                duration, self.max_duration, self.clip_selection, self.clip_hop,
                self.max_clips_per_file, self.clips_per_file, rng,
            ):
                self.clips.append((fi, off))
        if self.skipped or notes:
            parts = ([self.skipped_summary()] if self.skipped else []) + list(notes)
            warnings.warn(" ".join(parts), DataWarning, stacklevel=3)
        if not self.clips:
            counts = ", ".join(f"{n} {r}" for r, n in self.skip_counts().items()) or "no candidates"
            raise ValueError(
                f"{type(self).__name__}: no usable audio under {self.root} ({counts})"
            )

    def skip_counts(self) -> dict[str, int]:
        """Skipped files per reason."""
        return dict(Counter(r.split(":")[0] for _, r in self.skipped).most_common())

    def skipped_summary(self, examples: int = 3) -> str:
        counts = self.skip_counts()
        total = sum(counts.values())
        parts = []
        for reason, n in counts.items():
            names = [Path(p).name for p, r in self.skipped if r.split(":")[0] == reason][:examples]
            more = ", ..." if n > len(names) else ""
            parts.append(f"{n} {reason} ({', '.join(names)}{more})")
        return (
            f"{type(self).__name__}({self.root}): skipped {total} file(s): "
            + "; ".join(parts)
            + ". See ds.skipped for the full list."
        )

    # -- ClipDataset ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.clips)

    def _clip_info(self, index: int) -> dict[str, Any]:
        fi, off = self.clips[index]
        f = self.files[fi]
        info: dict[str, Any] = {
            "clip_id": f"{self.kind}:{f.rel}@{off:.3f}",
            "source": str(f.path),
            "offset": off,
            # seconds of real audio in the window (the rest of max_duration is zero padding)
            "duration": float(min(self.max_duration, max(f.duration - off, 0.0))),
            "file_duration": f.duration,
            "sample_rate": f.sample_rate,
            "channels": f.channels,
        }
        info.update(f.meta)
        info.update(self._window_labels(f, off))
        if index in self._failed:
            info["error"] = self._failed[index]
        return info

    def _window_labels(self, f: AudioFile, offset: float) -> dict[str, Any]:
        """Labels that depend on the window (MusicNet notes); none by default."""
        return {}

    def _cache_identity(self, index: int) -> str:
        return self.files[self.clips[index][0]].identity

    def cache_key(self, index: int) -> str:
        i = self._check_index(index)
        fi, off = self.clips[i]
        return FeatureCache.key(
            self.files[fi].identity, off, self.max_duration, self.processor.config.to_json()
        )

    def _cacheable(self, i: int) -> bool:
        return i not in self._failed

    def _clip_audio(self, index: int) -> np.ndarray:
        fi, off = self.clips[index]
        f = self.files[fi]
        try:
            audio, _ = load_audio(f.path, self.processor.sample_rate, off, self.max_duration)
            return audio
        except AudioLoadError as exc:
            if self.strict:
                raise
            self._mark_failed(index, fi, str(exc))
            return np.zeros((2, self.processor.num_samples), dtype=np.float32)

    def _mark_failed(self, index: int, fi: int, message: str) -> None:
        first = not self._failed
        self._failed[index] = message
        if fi not in self._failed_files:
            self._failed_files.add(fi)
            self.skipped.append((str(self.files[fi].path), f"decode_error: {message}"))
        if first:
            warnings.warn(
                f"{type(self).__name__}({self.root}): {message}. Returning silence for this "
                "clip (clip_info['error'] says why); later failures are only added to "
                "ds.skipped. Use validate='full' to find such files up front, strict=True "
                "to raise.",
                DataWarning,
                stacklevel=4,
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, files={len(self.files)}, "
            f"clips={len(self)}, skipped={len(self.skipped)}, max_duration={self.max_duration})"
        )


__all__ = [
    "ClipDataset",
    "FileClipDataset",
    "AudioFile",
    "DataWarning",
    "OutputFormat",
    "check_audio_file",
    "clip_offsets",
]
