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

from cqtml_env.datasets.windowing import Windowing
from cqtml_env.features.audio import (
    AV_EXTENSIONS,
    MAX_PEAK,
    SILENCE_PEAK,
    AudioLoadError,
    BadClipError,
    display_path,
    load_audio,
    soundfile_path,
)
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
        *,
        processor: CQTProcessor | None = None,
        windowing: Windowing | None = None,
        max_duration: float | None = None,
        output_format: OutputFormat = "cqt",
        cache: FeatureCache | str | os.PathLike | None = None,
        seed: int = 0,
    ) -> None:
        if output_format not in ("cqt", "audio"):
            raise ValueError(f"output_format must be 'cqt' or 'audio', got {output_format!r}")
        w = Windowing.build(windowing, max_duration=max_duration)
        # A given processor wins: its max_duration fixes the clip window so that T matches.
        self.processor = (
            processor if processor is not None else CQTProcessor(max_duration=w.max_duration)
        )
        self.windowing = w.with_overrides(max_duration=float(self.processor.max_duration))
        self.output_format: OutputFormat = output_format
        self.cache = as_cache(cache)
        self.seed = int(seed)
        self._bad: dict[int, BadClipError] = {}  # clips found bad at decode time

    @property
    def max_duration(self) -> float:
        """Clip length in s (``windowing.max_duration``, the processor's window)."""
        return self.windowing.max_duration

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
        """Stereo audio of the clip, padded/cut to the window: ``float32 [2, num_samples]``.

        Raises :class:`~cqtml_env.features.audio.BadClipError` for a clip whose file turns
        out bad only now (see :meth:`bad_clips`).
        """
        i = self._check_index(index)
        return self.processor.prepare_audio(self._checked_audio(i))

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

    # -- bad clips: found at decode time, skipped, counted and reported ------------------
    @property
    def bad_clips(self) -> dict[int, str]:
        """Clips found bad when decoded (index -> ``"reason: detail"``); ``ds[i]`` of one of
        them raises :class:`~cqtml_env.features.audio.BadClipError` again, without decoding."""
        return {i: f"{e.reason}: {e}" for i, e in self._bad.items()}

    def is_bad(self, index: int) -> bool:
        """Whether clip ``index`` is already known to be bad (never decodes)."""
        return self._check_index(index) in self._bad

    def _bad_clip(self, i: int, reason: str, message: str) -> BadClipError:
        """Record clip ``i`` as bad (once) and return the error to raise."""
        err = self._bad.get(i)
        if err is None:
            err = BadClipError(message, self._clip_source(i), reason, (i,))
            self._bad[i] = err
            self._record_bad(i, err)
        return err

    def _record_bad(self, i: int, err: BadClipError) -> None:  # noqa: B027 (optional hook)
        """Hook: file data sets add the file to ``ds.skipped`` and warn once."""

    def _clip_source(self, i: int) -> str:
        return str(self._clip_info(i).get("source", f"clip {i}"))

    def _raise_if_bad(self, i: int) -> None:
        err = self._bad.get(i)
        if err is not None:
            raise BadClipError(str(err), err.path, err.reason, (i,))

    def _checked_audio(self, i: int) -> np.ndarray:
        """``_clip_audio(i)`` with late failures turned into a recorded BadClipError."""
        self._raise_if_bad(i)
        try:
            audio = np.asarray(self._clip_audio(i))
        except BadClipError:
            raise
        except AudioLoadError as exc:
            raise self._bad_clip(i, exc.reason, str(exc)) from exc
        if audio.size and audio.dtype.kind == "f":
            if not np.all(np.isfinite(audio)):
                raise self._bad_clip(i, "decode_error", f"{self._where(i)}: NaN or inf samples")
            peak = float(np.max(np.abs(audio)))
            if peak > MAX_PEAK:
                raise self._bad_clip(
                    i, "too_loud",
                    f"{self._where(i)}: peak sample {peak:.3g} above {MAX_PEAK:g} (+60 dBFS)",
                )
        return audio

    def _where(self, i: int) -> str:
        return f"{display_path(self._clip_source(i))} (clip {i})"

    def _cqt(self, i: int, audio: np.ndarray) -> np.ndarray:
        """The CQT of checked audio; a failure inside librosa becomes a BadClipError."""
        import librosa

        try:
            return self.processor(audio)
        except (ValueError, ArithmeticError, librosa.util.exceptions.ParameterError) as exc:
            raise self._bad_clip(
                i, "decode_error", f"{self._where(i)}: CQT failed ({type(exc).__name__}: {exc})"
            ) from exc

    def _compute(self, i: int) -> np.ndarray:
        return self._cqt(i, self._checked_audio(i))

    def _cached(self, i: int) -> np.ndarray | None:
        if self.cache is None:
            return None
        return self.cache.get(self.cache_key(i), shape=self.processor.shape)

    def _features(self, i: int) -> np.ndarray:
        self._raise_if_bad(i)
        arr = self._cached(i)
        if arr is not None:
            return arr
        arr = self._compute(i)
        if self.cache is not None:
            self.cache.put(self.cache_key(i), arr)
        return arr

    def get_many(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stack several clips: ``[N, 2, n_bins, T]`` (or ``[N, 2, samples]`` for audio).

        Uncached CQTs are computed in one batched librosa call, which is cheaper than N calls.
        If some clips turn out bad, the good ones are still computed (and cached), then one
        :class:`~cqtml_env.features.audio.BadClipError` names every bad clip (``.clips``);
        :meth:`get_usable` returns the good ones instead.
        """
        out, kept, errors = self._get_many(indices)
        if errors:
            first = errors[0]
            names = "; ".join(str(e) for e in errors[:3])
            more = f"; ... {len(errors) - 3} more" if len(errors) > 3 else ""
            raise BadClipError(
                f"{len(errors)} of {len(out)} clips are bad (see ds.bad_clips): {names}{more}",
                first.path, first.reason, tuple(c for e in errors for c in e.clips),
            )
        return out

    def get_usable(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Like :meth:`get_many` but skips bad clips: ``(stack of the good ones, their
        indices)``; the bad ones are in :attr:`bad_clips` and (file data sets) ``ds.skipped``."""
        out, kept, _ = self._get_many(indices)
        return out[kept], [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)[kept]]

    def _get_many(self, indices) -> tuple[np.ndarray, list[int], list[BadClipError]]:
        """(stack with zeros in bad rows, positions of good rows, errors of bad rows)."""
        idx = [self._check_index(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        errors: dict[int, BadClipError] = {}  # position -> error
        if self.output_format == "audio":
            out = np.zeros((len(idx), 2, self.processor.num_samples), dtype=np.float32)
            for pos, i in enumerate(idx):
                try:
                    out[pos] = self.get_audio(i)
                except BadClipError as exc:
                    errors[pos] = exc
        else:
            out = np.zeros((len(idx), *self.processor.shape), dtype=np.float32)
            todo: list[int] = []  # positions in idx
            for pos, i in enumerate(idx):
                if i in self._bad:
                    errors[pos] = self._bad[i]
                    continue
                arr = self._cached(i)
                if arr is not None:
                    out[pos] = arr
                else:
                    todo.append(pos)
            audios, ok = [], []
            for pos in todo:
                try:
                    audios.append(self._checked_audio(idx[pos]))
                    ok.append(pos)
                except BadClipError as exc:
                    errors[pos] = exc
            feats: Any = None
            if audios:
                try:
                    feats = self.processor.batch(audios)
                except Exception:  # one bad clip spoils the batch: find it clip by clip
                    feats = None
            for k, pos in enumerate(ok):
                try:
                    feat = feats[k] if feats is not None else self._cqt(idx[pos], audios[k])
                except BadClipError as exc:
                    errors[pos] = exc
                    continue
                out[pos] = feat
                if self.cache is not None:
                    self.cache.put(self.cache_key(idx[pos]), feat)
        kept = [pos for pos in range(len(idx)) if pos not in errors]
        return out, kept, [errors[pos] for pos in sorted(errors)]

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
Validate = Literal["header", "probe", "full"]
SKIP_REASONS = (
    "missing", "unreadable", "empty_file", "not_audio", "no_frames", "bad_sample_rate",
    "bad_channels", "too_short", "truncated", "decode_error", "silent", "too_loud",
)
"""Every reason a file can be skipped for (``ds.skipped`` rows are ``(path, reason[: detail])``)."""


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


def _peak_reason(peak: float) -> str | None:
    if peak > MAX_PEAK:
        return "too_loud"
    return None


def check_audio_file(
    path: Path, min_duration: float, validate: Validate = "probe", window: float = 5.0
) -> tuple[str | None, float, int, int]:
    """``(reason or None, duration, sample_rate, channels)`` of a candidate file.

    Reasons (:data:`SKIP_REASONS`): unreadable (no read permission), empty_file, not_audio,
    no_frames, bad_sample_rate, bad_channels, too_short, truncated, decode_error, silent
    (peak below :data:`~cqtml_env.features.audio.SILENCE_PEAK`, -80 dBFS), too_loud (peak
    above :data:`~cqtml_env.features.audio.MAX_PEAK`, +60 dBFS). ``header`` reads only the
    header (soundfile.info; WAV/OGG truncation shows there). ``probe`` also decodes the first
    second, one in the middle and the last one (a truncated FLAC or MP3 fails there: a few ms
    per file), decodes files no longer than ``window + 1`` s whole, and decodes a file whole
    when those probes are all silent, so silent files of any length are caught. ``full``
    decodes every file whole (corrupt or too loud long files too): exact, but slow.
    """
    import soundfile as sf

    try:
        if path.stat().st_size == 0:
            return "empty_file", 0.0, 0, 0
        if path.suffix.lower() in AV_EXTENSIONS:  # m4a/aac: libsndfile cannot; PyAV decodes
            return check_av_file(path, min_duration)
        with open(path, "rb"):
            pass
    except OSError:
        return "unreadable", 0.0, 0, 0
    src = soundfile_path(path)
    try:
        info = sf.info(src)
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
    if frames > sr:
        try:
            with sf.SoundFile(src) as f:
                # First, middle and last second: a truncated FLAC fails at the end, and a
                # truncated MP3 returns nothing there (read sequentially, libsndfile pads it
                # with zeros). The peaks catch absurd levels and hint at a silent file.
                peak = 0.0
                for start in (0, (frames - sr) // 2, frames - sr):
                    f.seek(start)
                    block = f.read(sr, dtype="float32", always_2d=True)
                    if block.shape[0] < sr // 2:
                        return "truncated", duration, sr, ch
                    if not np.all(np.isfinite(block)):
                        return "decode_error", duration, sr, ch
                    peak = max(peak, float(np.max(np.abs(block))))
        except Exception:
            return "truncated", duration, sr, ch
        if _peak_reason(peak):
            return _peak_reason(peak), duration, sr, ch
        if not whole and peak >= SILENCE_PEAK:
            return None, duration, sr, ch
        # (all three probes silent: decode the whole file to tell a quiet intro from silence)
    try:
        with sf.SoundFile(src) as f:
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
    if _peak_reason(peak):
        return _peak_reason(peak), duration, sr, ch
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
    * A clip whose file turns out bad only when decoded in ``ds[i]``, ``get_audio`` or
      ``get_many`` (a FLAC corrupted mid-stream with ``validate="header"``, a float file
      with absurd peaks that librosa rejects, a silent file) is skipped, counted and
      reported exactly like one found up front: its file goes to ``ds.skipped`` with the
      reason (decode_error, too_loud, silent, unreadable...), the clip to
      ``ds.bad_clips`` and ``clip_info(i)["error"]``, nothing is written to the feature
      cache, the first such failure warns once, and the call raises
      :class:`~cqtml_env.features.audio.BadClipError` (an ``AudioLoadError``) naming the
      file and reason, never silence or NaN in its place. Callers skip it by catching
      that error (or use :meth:`get_usable` for batches). ``strict`` is kept for
      compatibility: bad clips always raise now.
    * No usable file at all: ValueError naming the root.

    Windows (:class:`~cqtml_env.datasets.windowing.Windowing`, or its fields as keywords):
    ``max_duration`` s long, every ``clip_hop`` s (default: non-overlapping), at most
    ``max_clips_per_file``; or ``clip_selection="random"`` with ``clips_per_file`` offsets
    drawn from ``(seed, crc32(relative path))`` so adding files never moves other files' clips.
    """

    kind = "files"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        processor: CQTProcessor | None = None,
        windowing: Windowing | None = None,
        max_duration: float | None = None,
        min_duration: float | None = None,
        clip_hop: float | None = None,
        max_clips_per_file: int | None = None,
        clip_selection: Literal["sequential", "random"] | None = None,
        clips_per_file: int | None = None,
        output_format: OutputFormat = "cqt",
        cache: FeatureCache | str | os.PathLike | None = None,
        seed: int = 0,
        validate: Validate = "probe",
        strict: bool = False,
    ) -> None:
        w = Windowing.build(
            windowing,
            max_duration=max_duration,
            min_duration=min_duration,
            clip_hop=clip_hop,
            max_clips_per_file=max_clips_per_file,
            clip_selection=clip_selection,
            clips_per_file=clips_per_file,
        )
        super().__init__(
            processor=processor, windowing=w, output_format=output_format, cache=cache, seed=seed
        )
        if validate not in ("header", "probe", "full"):
            raise ValueError(f"validate must be 'header', 'probe' or 'full', got {validate!r}")
        self.root = Path(root).expanduser()
        self.validate = validate
        self.strict = bool(strict)
        self.files: list[AudioFile] = []
        self.clips: list[tuple[int, float]] = []  # (file index, offset s)
        self.skipped: list[tuple[str, str]] = []
        self._failed_files: set[int] = set()  # files with a clip found bad in ds[i]
        self._silent_files: dict[int, bool] = {}  # file index -> whole file silent

    # windowing fields, read through (one source of truth: ``self.windowing``)
    @property
    def min_duration(self) -> float:
        return self.windowing.min_duration

    @property
    def clip_hop(self) -> float | None:
        return self.windowing.clip_hop

    @property
    def max_clips_per_file(self) -> int | None:
        return self.windowing.max_clips_per_file

    @property
    def clip_selection(self) -> str:
        return self.windowing.clip_selection

    @property
    def clips_per_file(self) -> int:
        return self.windowing.clips_per_file

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
                self.skipped.append((str(path), "unreadable"))
                continue
            fi = len(self.files)
            self.files.append(AudioFile(path, rel, duration, sr, ch, dict(meta), ident))
            rng = np.random.default_rng([self.seed, zlib.crc32(rel.encode("utf-8", "surrogateescape"))])
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
                f"{type(self).__name__}: no usable audio under {display_path(self.root)} ({counts})"
            )

    def skip_counts(self) -> dict[str, int]:
        """Skipped files per reason."""
        return dict(Counter(r.split(":")[0] for _, r in self.skipped).most_common())

    def skipped_summary(self, examples: int = 3) -> str:
        counts = self.skip_counts()
        total = sum(counts.values())
        parts = []
        for reason, n in counts.items():
            names = [
                display_path(Path(p).name) for p, r in self.skipped if r.split(":")[0] == reason
            ][:examples]
            more = ", ..." if n > len(names) else ""
            parts.append(f"{n} {reason} ({', '.join(names)}{more})")
        return (
            f"{type(self).__name__}({display_path(self.root)}): skipped {total} file(s): "
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
            "clip_id": f"{self.kind}:{display_path(f.rel)}@{off:.3f}",
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
        if index in self._bad:
            info["error"] = f"{self._bad[index].reason}: {self._bad[index]}"
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

    def _clip_source(self, i: int) -> str:
        return str(self.files[self.clips[i][0]].path)

    def _clip_audio(self, index: int) -> np.ndarray:
        fi, off = self.clips[index]
        f = self.files[fi]
        audio, _ = load_audio(f.path, self.processor.sample_rate, off, self.max_duration)
        if audio.size and float(np.max(np.abs(audio))) < SILENCE_PEAK and self._file_silent(fi):
            raise self._bad_clip(
                index, "silent",
                f"{display_path(f.path)}: the whole file is silent (peak below -80 dBFS)",
            )
        return audio

    def _file_silent(self, fi: int) -> bool:
        """Whether the whole file is silent (decoded once, only when a window was silent:
        a pause in a song is music, a file of zeros is not)."""
        if fi not in self._silent_files:
            reason, *_ = check_audio_file(self.files[fi].path, 0.0, "full", self.max_duration)
            self._silent_files[fi] = reason == "silent"
        return self._silent_files[fi]

    def _record_bad(self, i: int, err: BadClipError) -> None:
        fi = self.clips[i][0]
        first = not self._failed_files
        if fi not in self._failed_files:
            self._failed_files.add(fi)
            self.skipped.append((str(self.files[fi].path), f"{err.reason}: {err}"))
        if first:
            warnings.warn(
                f"{type(self).__name__}({display_path(self.root)}): {err} [{err.reason}]. "
                "ds[i] raises BadClipError for such clips (catch it to skip and count them; "
                "ds.bad_clips and ds.skipped list them); later failures are only recorded "
                "there. Use validate='full' to find such files up front.",
                DataWarning,
                stacklevel=5,
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
    "Windowing",
    "check_audio_file",
    "clip_offsets",
]
