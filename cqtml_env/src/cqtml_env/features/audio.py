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


class AudioLoadError(ValueError):
    """A file that cannot be used as audio (empty, truncated, not audio, silent, too short)."""


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
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for bad files
        if Path(path).suffix.lower() in AV_EXTENSIONS:
            data, sr = _decode_av(Path(path))
            return sr, int(data.shape[0]), int(data.shape[1])
        raise AudioLoadError(f"{path}: not readable as audio ({exc})") from exc
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioLoadError(f"{path}: empty audio (frames={info.frames})")
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
        raise AudioLoadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioLoadError(f"{path}: empty file")
    try:
        with sf.SoundFile(str(path)) as f:
            sr = int(f.samplerate)
            start = int(round(offset * sr))
            if start > 0:
                f.seek(min(start, max(f.frames - 1, 0)))
            frames = -1 if duration is None else int(round(duration * sr))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:
        if path.suffix.lower() not in AV_EXTENSIONS:
            raise AudioLoadError(f"{path}: cannot decode audio ({exc})") from exc
        data, sr = _decode_av(path, offset, duration)
    if data.size == 0:
        raise AudioLoadError(f"{path}: no samples at offset {offset:.2f}s")
    if not np.all(np.isfinite(data)):
        raise AudioLoadError(f"{path}: audio contains NaN or inf")
    audio = to_stereo(data.T)
    if sample_rate is not None and sr != sample_rate:
        audio = resample(audio, sr, sample_rate).astype(np.float32, copy=False)
        sr = int(sample_rate)
    return audio, sr
