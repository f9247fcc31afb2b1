"""Audio loading and channel/sample-rate normalisation shared by the processor and data sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# libsndfile 1.2 reads these (opus inside ogg; mp3 since 1.1); PyAV (the ``show`` extra)
# reads the AV ones. One list used by AudioFolder and ``cqtml-show``.
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
AV_EXTENSIONS = (".m4a", ".aac")
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS + AV_EXTENSIONS

SILENCE_PEAK = 1e-4
"""A file whose peak |sample| stays below this (-80 dBFS) is ``silent``: no music to follow."""
MAX_PEAK = 1e3
"""A peak |sample| above this (+60 dBFS) is not audio a CQT can use (float files scaled by
mistake, garbage; librosa fails near 1e35): reason ``too_loud``."""


class AudioLoadError(ValueError):
    """A file that cannot be used as audio (empty, truncated, not audio, silent, too short).

    ``reason`` is the data sets' skip reason for it (``decode_error`` unless known better).
    """

    def __init__(self, message: str, reason: str = "decode_error") -> None:
        super().__init__(message)
        self.reason = reason


class BadClipError(AudioLoadError):
    """A clip whose file turned out bad only when it was decoded (``ds[i]``, batch reads).

    ``path``, ``reason`` (a skip reason: decode_error, too_loud, silent, unreadable...) and
    ``clips`` (the data set indices that failed) say what; the data set has already recorded
    the file in ``ds.skipped`` (and the clips in ``ds.bad_clips``), so a caller can catch
    this, count the clip as skipped and go on.
    """

    def __init__(self, message: str, path: str = "", reason: str = "decode_error",
                 clips: tuple[int, ...] = ()) -> None:
        super().__init__(message, reason)
        self.path = path
        self.clips = tuple(clips)


def soundfile_path(path: str | os.PathLike) -> str | bytes:
    """What to hand soundfile: bytes on POSIX, so file names that are not valid UTF-8
    (``b"caf\\xe9.wav"``, surrogate-escaped by ``os.fsdecode``) open like any other."""
    if os.name == "nt":  # pragma: no cover - Windows paths are UTF-16, soundfile takes str
        return str(path)
    return os.fsencode(path)


def display_path(path: str | os.PathLike) -> str:
    """A file name safe to print on any terminal: bytes that are not UTF-8 as ``\\xe9``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def to_stereo(audio: np.ndarray) -> np.ndarray:
    """``[samples]`` or ``[channels, samples]`` -> float32 ``[2, samples]``.

    Mono is duplicated; more than two channels are downmixed by averaging the even-indexed
    channels into left and the odd-indexed ones into right (the usual L/R interleaving of
    multichannel layouts).
    """
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"audio must be [samples] or [channels, samples], got shape {a.shape}")
    if a.shape[0] > 16 and a.shape[1] <= 16:
        raise ValueError(
            f"audio of shape {a.shape} looks like [samples, channels]; pass [channels, samples]"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"audio is empty (shape {a.shape})")
    a = a.astype(np.float32, copy=False)
    if a.shape[0] == 1:
        return np.repeat(a, 2, axis=0)
    if a.shape[0] == 2:
        return a
    return np.stack([a[0::2].mean(axis=0), a[1::2].mean(axis=0)])


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``[channels, samples]`` with librosa (soxr) when the rates differ."""
    if int(orig_sr) == int(target_sr):
        return audio
    if orig_sr <= 0:
        raise ValueError(f"sample rate must be positive, got {orig_sr}")
    import librosa

    return librosa.resample(audio, orig_sr=int(orig_sr), target_sr=int(target_sr), axis=-1)


def _decode_av(path: Path, offset: float = 0.0, duration: float | None = None
               ) -> tuple[np.ndarray, int]:
    """Decode with PyAV (m4a/aac, which libsndfile does not read): ``[samples, ch]``, rate."""
    try:
        import av
    except ImportError as exc:
        raise AudioLoadError(
            f"{path}: {path.suffix} needs PyAV (pip install 'cqtml-env[show]')") from exc
    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise AudioLoadError(f"{path}: no audio stream")
            s = c.streams.audio[0]
            sr = int(s.rate)
            parts = [f.to_ndarray().reshape(-1, f.samples) if f.format.is_planar
                     else f.to_ndarray().reshape(f.samples, -1).T for f in c.decode(s)]
    except AudioLoadError:
        raise
    except Exception as exc:
        raise AudioLoadError(f"{path}: cannot decode audio ({exc})") from exc
    if not parts:
        raise AudioLoadError(f"{path}: no samples decoded")
    data = np.concatenate(parts, axis=1).astype(np.float32).T
    start = int(round(offset * sr))
    stop = None if duration is None else start + int(round(duration * sr))
    return data[start:stop], sr


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample_rate, frames, channels) read from the header, without decoding
    (m4a/aac: decoded with PyAV)."""
    import soundfile as sf

    try:
        info = sf.info(soundfile_path(path))
    except Exception as exc:  # soundfile raises several types for bad files
        if Path(path).suffix.lower() in AV_EXTENSIONS:
            data, sr = _decode_av(Path(path))
            return sr, int(data.shape[0]), int(data.shape[1])
        raise AudioLoadError(f"{display_path(path)}: not readable as audio ({exc})") from exc
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioLoadError(f"{display_path(path)}: empty audio (frames={info.frames})")
    return int(info.samplerate), int(info.frames), int(info.channels)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read ``duration`` seconds from ``offset`` as float32 ``[2, samples]``.

    Returns ``(audio, sample_rate)``; resamples when ``sample_rate`` is given. Raises
    :class:`AudioLoadError` naming the file for anything that is not usable audio.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioLoadError(f"{display_path(path)}: no such file", "missing")
    if path.stat().st_size == 0:
        raise AudioLoadError(f"{display_path(path)}: empty file", "empty_file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise AudioLoadError(f"{display_path(path)}: unreadable ({exc.strerror or exc})", "unreadable") from exc
    try:
        with sf.SoundFile(soundfile_path(path)) as f:
            sr = int(f.samplerate)
            start = int(round(offset * sr))
            if start > 0:
                f.seek(min(start, max(f.frames - 1, 0)))
            frames = -1 if duration is None else int(round(duration * sr))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:
        if path.suffix.lower() not in AV_EXTENSIONS:
            raise AudioLoadError(f"{display_path(path)}: cannot decode audio ({exc})") from exc
        data, sr = _decode_av(path, offset, duration)
    if data.size == 0:
        raise AudioLoadError(f"{display_path(path)}: no samples at offset {offset:.2f}s", "truncated")
    if not np.all(np.isfinite(data)):
        raise AudioLoadError(f"{display_path(path)}: audio contains NaN or inf")
    peak = float(np.max(np.abs(data)))
    if peak > MAX_PEAK:
        raise AudioLoadError(
            f"{display_path(path)}: peak sample {peak:.3g} is above {MAX_PEAK:g} (+60 dBFS): not usable audio",
            "too_loud",
        )
    audio = to_stereo(data.T)
    if sample_rate is not None and sr != sample_rate:
        audio = resample(audio, sr, sample_rate).astype(np.float32, copy=False)
        sr = int(sample_rate)
    return audio, sr
