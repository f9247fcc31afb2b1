"""Audio -> fixed-size, [0, 1]-normalised stereo Constant-Q Transform (librosa's CQT).

Normalisation (absolute, not per clip, so quiet passages stay dark):
``value = clip((20*log10(|CQT_k|) - ref_db_k + top_db) / top_db, 0, 1)`` where ``ref_db_k`` is
the level a full-scale sinusoid reaches in bin ``k`` (librosa's scaled CQT gives a sinusoid of
amplitude A the magnitude ``A/2 * sqrt(L_k)``, ``L_k = Q * sr / f_k`` the filter length), and
``top_db`` (default 80) the dynamic range kept. So 1.0 = a full-scale tone in any bin,
0.0 = ``top_db`` below it or silence; the scale is flat across frequency.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cqtml_env.contract import HOP_LENGTH, MAX_DURATION, N_BINS, SAMPLE_RATE
from cqtml_env.features.audio import load_audio, resample, to_stereo

C1_HZ = 32.70319566257483  # librosa.note_to_hz("C1")


@dataclass(frozen=True)
class CQTConfig:
    """Everything that changes the features; hashed into the feature-cache key."""

    sample_rate: int = SAMPLE_RATE
    hop_length: int = HOP_LENGTH
    n_bins: int = N_BINS
    bins_per_octave: int = 12
    fmin: float = C1_HZ
    max_duration: float = MAX_DURATION
    top_db: float = 80.0
    normalisation: str = "fullscale-sine-db-v1"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class CQTProcessor:
    """Turn audio (array or file) into ``float32 [2, n_bins, num_frames]`` in [0, 1].

    Audio is ``[samples]`` or ``[channels, samples]`` at any rate (``sample_rate=`` says
    which; resampled to the processor's rate). Mono is duplicated, >2 channels downmixed,
    clips shorter than ``max_duration`` zero-padded and longer ones cut, so the frame count
    is fixed per config: ``processor.num_frames``.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        hop_length: int = HOP_LENGTH,
        n_bins: int = N_BINS,
        bins_per_octave: int = 12,
        fmin: float = C1_HZ,
        max_duration: float = MAX_DURATION,
        top_db: float = 80.0,
    ) -> None:
        if sample_rate <= 0 or hop_length <= 0 or n_bins <= 0 or bins_per_octave <= 0:
            raise ValueError("sample_rate, hop_length, n_bins and bins_per_octave must be > 0")
        if max_duration <= 0:
            raise ValueError(f"max_duration must be > 0 seconds, got {max_duration}")
        if top_db <= 0:
            raise ValueError(f"top_db must be > 0, got {top_db}")
        fmax = fmin * 2 ** ((n_bins - 1) / bins_per_octave)
        if fmax >= sample_rate / 2:
            raise ValueError(
                f"top CQT bin {fmax:.0f} Hz is above Nyquist ({sample_rate / 2:.0f} Hz): "
                "lower n_bins or fmin, or raise sample_rate"
            )
        self.config = CQTConfig(
            sample_rate=int(sample_rate),
            hop_length=int(hop_length),
            n_bins=int(n_bins),
            bins_per_octave=int(bins_per_octave),
            fmin=float(fmin),
            max_duration=float(max_duration),
            top_db=float(top_db),
        )

    # -- derived sizes -------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def n_bins(self) -> int:
        return self.config.n_bins

    @property
    def max_duration(self) -> float:
        return self.config.max_duration

    @property
    def num_samples(self) -> int:
        return int(round(self.config.max_duration * self.config.sample_rate))

    @property
    def num_frames(self) -> int:
        """Frames per clip (librosa centres frames: ``1 + samples // hop``)."""
        return 1 + self.num_samples // self.config.hop_length

    @property
    def shape(self) -> tuple[int, int, int]:
        return (2, self.n_bins, self.num_frames)

    @property
    def frame_rate(self) -> float:
        return self.config.sample_rate / self.config.hop_length

    def frequencies(self) -> np.ndarray:
        """Centre frequency (Hz) of each bin."""
        c = self.config
        return c.fmin * 2.0 ** (np.arange(c.n_bins) / c.bins_per_octave)

    def __repr__(self) -> str:
        return f"CQTProcessor({self.config})"

    # -- processing ----------------------------------------------------------------------
    def prepare_audio(self, audio: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """Stereo, resampled, padded/cut to exactly ``num_samples``: float32 ``[2, samples]``."""
        a = to_stereo(audio)
        if sample_rate is not None:
            a = resample(a, int(sample_rate), self.sample_rate)
        n = self.num_samples
        if a.shape[1] >= n:
            a = a[:, :n]
        else:
            a = np.pad(a, ((0, 0), (0, n - a.shape[1])))
        if not np.all(np.isfinite(a)):
            raise ValueError("audio contains NaN or inf")
        return np.ascontiguousarray(a, dtype=np.float32)

    def magnitude(self, audio: np.ndarray) -> np.ndarray:
        """librosa CQT magnitude of prepared audio ``[..., samples]``."""
        import librosa

        c = self.config
        return np.abs(
            librosa.cqt(
                audio,
                sr=c.sample_rate,
                hop_length=c.hop_length,
                fmin=c.fmin,
                n_bins=c.n_bins,
                bins_per_octave=c.bins_per_octave,
            )
        )

    def normalise(self, magnitude: np.ndarray) -> np.ndarray:
        """Log-magnitude -> [0, 1] on the absolute scale documented in the module."""
        c = self.config
        db = 20.0 * np.log10(np.maximum(magnitude, 1e-10))
        rel = db - self.full_scale_db()[:, None]
        return np.clip((rel + c.top_db) / c.top_db, 0.0, 1.0).astype(np.float32)

    def full_scale_db(self) -> np.ndarray:
        """Per-bin dB level of a full-scale sinusoid in librosa's scaled CQT (see module doc)."""
        q = 1.0 / (2.0 ** (1.0 / self.config.bins_per_octave) - 1.0)
        lengths = q * self.config.sample_rate / self.frequencies()
        return 20.0 * np.log10(0.5 * np.sqrt(lengths))

    def __call__(
        self,
        audio: np.ndarray | str | os.PathLike,
        sample_rate: int | None = None,
        offset: float = 0.0,
    ) -> np.ndarray:
        """CQT of an array (``sample_rate`` = its rate; default: the processor's) or a file."""
        if isinstance(audio, (str, os.PathLike)):
            audio, sample_rate = load_audio(
                Path(audio), self.sample_rate, offset=offset, duration=self.max_duration
            )
        elif not isinstance(audio, np.ndarray):
            try:  # torch tensors and lists
                audio = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio)
            except Exception as exc:
                raise TypeError(
                    f"expected a numpy array [channels, samples] or a file path, got {type(audio)}"
                ) from exc
        prepared = self.prepare_audio(audio, sample_rate)
        out = self.normalise(self.magnitude(prepared))
        t = self.num_frames
        if out.shape[-1] != t:  # librosa's frame count is 1 + n // hop; guard anyway
            out = out[..., :t] if out.shape[-1] > t else np.pad(
                out, ((0, 0), (0, 0), (0, t - out.shape[-1]))
            )
        return out

    def batch(self, audios: list[np.ndarray], sample_rate: int | None = None) -> np.ndarray:
        """Several clips at once (one librosa call): ``[N, 2, n_bins, num_frames]``."""
        if len(audios) == 0:
            return np.zeros((0, *self.shape), dtype=np.float32)
        prepared = np.stack([self.prepare_audio(a, sample_rate) for a in audios])
        return self.normalise(self.magnitude(prepared))[..., : self.num_frames]


def seconds_to_frames(seconds: float | np.ndarray, sample_rate: int, hop_length: int):
    """Time in seconds -> nearest CQT frame index (librosa's centred framing)."""
    return np.round(np.asarray(seconds) * sample_rate / hop_length).astype(int)


def frames_for(duration: float, sample_rate: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH) -> int:
    """Frame count of a clip of ``duration`` seconds (what ``CQTProcessor.num_frames`` gives)."""
    return 1 + int(round(duration * sample_rate)) // hop_length


__all__ = ["CQTConfig", "CQTProcessor", "seconds_to_frames", "frames_for"]
