"""Independent light-show metrics, computed from the clip's AUDIO (never from the CQT or the
gold scorer's features), so that a policy that games the gold scorer cannot game them too.

From the stage-lighting and dance-generation literature (Kohl et al., ACM MM'25; Wursthorn,
PETRA'25; Bailando's beat alignment, made an F-measure because recall alone rewards noise)
and from photosensitivity practice (WCAG 2.3.1):

* ``beat_f``       F-measure of the rig's brightness peaks vs the tracked beats (±50 ms).
* ``novelty_corr`` Pearson correlation of the rise in rig brightness with onset strength
  (both smoothed over ~35 ms).
* ``loudness_corr`` Pearson correlation of rig brightness with mel loudness (dB).
* ``band_corr``    per device: correlation with the audio energy (dB) in its band's frequency
  range (band edges from the CQT bins of that device); the mean over devices.
* ``flashes``      most flashes in any 1 s on any device (a flash is a pair of opposing
  swings of >= 10 % of full scale); ``flash_safe`` = at most 3.
* ``ssm_corr``     (inputs of ``SSM_MIN_SECONDS`` or more) correlation of the music's and the
  light's self-similarity (distance) matrices over half-second windows.
* ``mean_brightness``, ``std_time``: how bright the show is and how much it moves.

The "rig brightness" is the mean over devices. A metric that is undefined (a constant light
has no correlation with anything) is 0, never NaN: a light that does nothing follows nothing.

Example:
    >>> from cqtml_env import CQTProcessor
    >>> p = CQTProcessor(max_duration=2.0)
    >>> audio = np.zeros((2, p.num_samples), np.float32); audio[:, ::11025] = 1.0  # clicks
    >>> feats = audio_features(audio, processor=p, num_devices=4)
    >>> m = show_metrics(np.zeros((4, p.num_frames), np.float32), feats)
    >>> m["flashes"], m["novelty_corr"]
    (0.0, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cqtml_env.contract import device_bands

BEAT_TOLERANCE_S = 0.05  # ±50 ms (Kohl et al.; mir_eval's default is 70 ms)
NOVELTY_SIGMA_S = 0.035  # smoothing of both novelty curves (1.5 frames at the default rate)
PEAK_PROMINENCE = 0.05  # a light "peak" rises at least 5 % of full scale above its surroundings
FLASH_SWING = 0.10  # WCAG 2.3.1: opposing changes of >= 10 % (of full scale here)
MAX_SAFE_FLASHES = 3  # per any 1 s
SSM_WINDOW_S = 0.5
SSM_MIN_SECONDS = 10.0
METRICS = ("beat_f", "beat_precision", "beat_recall", "novelty_corr", "loudness_corr",
           "band_corr", "flashes", "flash_safe", "mean_brightness", "std_time", "ssm_corr")


@dataclass
class AudioFeatures:
    """What the metrics need from a clip's audio, on the CQT's frame grid (``T`` frames)."""

    frame_rate: float
    loudness: np.ndarray  # [T] mel loudness, dB
    onset: np.ndarray  # [T] librosa onset strength
    beats: np.ndarray  # beat times, s (librosa's tracker on ``onset``)
    band_energy: np.ndarray  # [D, T] dB of the STFT power in each device band's range
    band_hz: list[tuple[float, float]]  # [D] frequency range of each device band
    mel_db: np.ndarray  # [M, T] mel spectrogram (dB), for the self-similarity matrix

    @property
    def num_frames(self) -> int:
        return int(self.loudness.shape[0])


def band_edges_hz(processor, num_devices: int) -> list[tuple[float, float]]:
    """Frequency range of each device's CQT bins: half a bin below the first centre to half a
    bin above the last (``device_bands`` over ``processor.frequencies()``)."""
    freqs = np.asarray(processor.frequencies(), dtype=np.float64)
    half = 2.0 ** (0.5 / processor.config.bins_per_octave)
    return [(float(freqs[lo] / half), float(freqs[hi - 1] * half))
            for lo, hi in device_bands(len(freqs), num_devices)]


def audio_features(audio: np.ndarray, *, processor, num_devices: int, n_mels: int = 64,
                   n_fft: int = 4096) -> AudioFeatures:
    """Loudness, onset strength, beats and band energies of ``audio`` (``[S]`` or ``[C, S]`` at
    ``processor.sample_rate``), framed like the processor's CQT (same hop, centred frames).

    ``n_fft`` 4096 resolves the lowest device band (tens of Hz) at 22.05 kHz.
    """
    import librosa

    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=0)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"audio must be [samples] or [channels, samples], got {np.shape(audio)}")
    if not np.all(np.isfinite(a)):
        raise ValueError("audio contains NaN or inf")
    sr, hop = int(processor.sample_rate), int(processor.hop_length)
    t_len = 1 + a.size // hop  # librosa's centred framing, as the CQT's
    # loudness and onsets on librosa's usual 2048-sample frames (sharp in time); band energies
    # on n_fft-sample frames (sharp in frequency: the lowest band is tens of Hz wide)
    mel = librosa.feature.melspectrogram(y=a, sr=sr, n_fft=2048, hop_length=hop, n_mels=n_mels)
    mel_db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    loudness = librosa.power_to_db(mel.sum(axis=0), ref=1.0, amin=1e-10, top_db=None)
    onset = librosa.onset.onset_strength(S=librosa.power_to_db(mel, ref=np.max), sr=sr,
                                         hop_length=hop)
    power = np.abs(librosa.stft(a, n_fft=n_fft, hop_length=hop)) ** 2  # [1 + n_fft/2, T]
    beats = np.zeros(0)
    if a.size >= 2 * sr and onset.max() > 0:  # the tracker needs a couple of seconds
        _, bf = librosa.beat.beat_track(onset_envelope=onset, sr=sr, hop_length=hop,
                                        units="frames")
        beats = np.asarray(bf, dtype=np.float64) / processor.frame_rate
    fft_hz = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    edges = band_edges_hz(processor, num_devices)
    band = np.zeros((num_devices, power.shape[1]), dtype=np.float64)
    for d, (lo, hi) in enumerate(edges):
        sel = (fft_hz >= lo) & (fft_hz < hi)
        band[d] = power[sel].sum(axis=0) if sel.any() else 0.0
    band_db = librosa.power_to_db(band, ref=1.0, amin=1e-10, top_db=None)

    def fit(x: np.ndarray) -> np.ndarray:  # exactly T frames
        x = np.asarray(x, dtype=np.float64)[..., :t_len]
        pad = t_len - x.shape[-1]
        return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)], mode="edge") if pad else x

    return AudioFeatures(float(processor.frame_rate), fit(loudness), fit(onset), beats,
                         fit(band_db), edges, fit(mel_db).astype(np.float32))


# -- single metrics ------------------------------------------------------------------------
def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is (numerically) constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xm, ym = x - x.mean(), y - y.mean()
    sx, sy = np.sqrt((xm**2).mean()), np.sqrt((ym**2).mean())
    if sx < 1e-6 or sy < 1e-9:
        return 0.0
    return float(np.clip((xm * ym).mean() / (sx * sy), -1.0, 1.0))


def light_peaks(brightness: np.ndarray, frame_rate: float,
                prominence: float = PEAK_PROMINENCE) -> np.ndarray:
    """Times (s) of the peaks of a brightness curve ``[T]`` (prominence >= ``prominence``)."""
    from scipy.signal import find_peaks

    b = np.concatenate([[0.0], np.asarray(brightness, np.float64), [0.0]])  # dark around the clip
    peaks, _ = find_peaks(b, prominence=prominence)
    return (peaks - 1) / float(frame_rate)


def match_events(ref: np.ndarray, est: np.ndarray, tol: float) -> int:
    """Size of a maximum one-to-one matching of two sorted event-time lists within ``tol``
    (greedy two-pointer: optimal for a fixed window on a line)."""
    ref, est = np.sort(np.asarray(ref)), np.sort(np.asarray(est))
    i = j = hits = 0
    while i < len(ref) and j < len(est):
        if abs(ref[i] - est[j]) <= tol:
            hits += 1
            i += 1
            j += 1
        elif est[j] < ref[i]:
            j += 1
        else:
            i += 1
    return hits


def beat_f_measure(brightness: np.ndarray, beats: np.ndarray, frame_rate: float,
                   tol: float = BEAT_TOLERANCE_S) -> tuple[float, float, float]:
    """(F, precision, recall) of the light's peaks against beat times, one-to-one within ``tol``.

    No beats and no peaks: 1 (nothing to hit, nothing wrongly hit); one side empty: 0.
    """
    peaks = light_peaks(brightness, frame_rate)
    if len(beats) == 0 and len(peaks) == 0:
        return 1.0, 1.0, 1.0
    if len(beats) == 0 or len(peaks) == 0:
        return 0.0, 0.0, 0.0
    hits = match_events(beats, peaks, tol)
    p, r = hits / len(peaks), hits / len(beats)
    return (2 * p * r / (p + r) if hits else 0.0), p, r


def novelty_correlation(brightness: np.ndarray, onset: np.ndarray, frame_rate: float,
                        sigma_s: float = NOVELTY_SIGMA_S) -> float:
    """Correlation of the rise in brightness (positive first difference) with onset strength,
    both smoothed by a Gaussian of ``sigma_s`` so that a response a frame early or late still
    counts (as the beat metric's ±50 ms window does)."""
    from scipy.ndimage import gaussian_filter1d

    b = np.asarray(brightness, np.float64)
    rise = np.maximum(np.diff(b, prepend=b[:1]), 0.0)
    sigma = sigma_s * float(frame_rate)
    return pearson(gaussian_filter1d(rise, sigma), gaussian_filter1d(np.asarray(onset, np.float64), sigma))


def transitions(activations: np.ndarray, swing: float) -> np.ndarray:
    """Transition events ``[D, T]`` of ``activations [D, T]``: a swing of >= ``swing`` from the
    last extreme (hysteresis turning points, starting from the first frame's level: a clip is
    an excerpt, so switching on at its start is not assumed). Written here, not shared with
    the gold scorer, so that the metric stays independent of it."""
    a = np.atleast_2d(np.asarray(activations, np.float64))
    events = np.zeros(a.shape, dtype=bool)
    sign = -np.ones(a.shape[0])  # "falling" from the first level: a rise from it counts
    ext = -a[:, 0] if a.shape[1] else np.zeros(a.shape[0])  # sign * extreme since the last turn
    for t in range(a.shape[1]):
        z = sign * a[:, t]
        ext = np.maximum(ext, z)
        ev = ext - z >= swing
        events[:, t] = ev
        sign = np.where(ev, -sign, sign)
        ext = np.where(ev, -z, ext)
    return events


def flash_count(activations: np.ndarray, frame_rate: float, swing: float = FLASH_SWING) -> float:
    """Most flashes in any 1-s window on any row of ``activations`` (``[T]`` or ``[D, T]``).

    A transition is a swing of >= ``swing`` from the last extreme (hysteresis); a flash is a
    pair of opposing transitions, so flashes in a window = transitions / 2.
    """
    a = np.atleast_2d(np.clip(np.asarray(activations, np.float64), 0.0, 1.0))
    ev = transitions(a, swing).astype(np.int64)  # [D, T]
    win = max(1, int(round(frame_rate)))
    csum = np.concatenate([np.zeros((a.shape[0], 1), np.int64), np.cumsum(ev, axis=1)], axis=1)
    t_len = a.shape[1]
    if t_len <= win:
        return float(csum[:, -1].max() / 2.0)
    in_win = csum[:, win:] - csum[:, :-win]
    return float(in_win.max() / 2.0)


def _windows(x: np.ndarray, size: int) -> np.ndarray:
    """``[C, T]`` -> ``[W, 2C]``: mean and std of each non-overlapping window of ``size`` frames."""
    w = x.shape[1] // size
    blocks = x[:, : w * size].reshape(x.shape[0], w, size)
    return np.concatenate([blocks.mean(axis=2), blocks.std(axis=2)], axis=0).T


def ssm_correlation(activations: np.ndarray, feats: AudioFeatures,
                    window_s: float = SSM_WINDOW_S) -> float:
    """Correlation of the music's and the light's self-similarity over ``window_s`` windows.

    Each window is described by the mean and std of every mel band (music) or device (light),
    z-scored over the song; the two Euclidean distance matrices' upper triangles are
    correlated (Kohl et al.'s SSM correlation). NaN on inputs shorter than ``SSM_MIN_SECONDS``.
    """
    from scipy.spatial.distance import pdist

    if feats.num_frames / feats.frame_rate < SSM_MIN_SECONDS:
        return float("nan")
    size = max(1, int(round(window_s * feats.frame_rate)))

    def dist(x: np.ndarray) -> np.ndarray:
        w = _windows(np.asarray(x, np.float64), size)
        sd = w.std(axis=0)
        w = (w - w.mean(axis=0)) / np.where(sd > 1e-9, sd, 1.0)
        return pdist(w)

    return pearson(dist(activations), dist(feats.mel_db))


def show_metrics(actions: np.ndarray, feats: AudioFeatures) -> dict[str, float]:
    """Every metric of one show ``actions [D, T]`` (in [0, 1]) on one clip's audio features."""
    a = np.asarray(actions, np.float64)
    if a.ndim != 2 or a.shape[1] != feats.num_frames or a.shape[0] != feats.band_energy.shape[0]:
        raise ValueError(f"actions must be [{feats.band_energy.shape[0]}, {feats.num_frames}] "
                         f"(devices, frames of the clip), got {a.shape}")
    fr = feats.frame_rate
    rig = a.mean(axis=0)
    f, p, r = beat_f_measure(rig, feats.beats, fr)
    flashes = flash_count(a, fr)
    return {
        "beat_f": f, "beat_precision": p, "beat_recall": r,
        "novelty_corr": novelty_correlation(rig, feats.onset, fr),
        "loudness_corr": pearson(rig, feats.loudness),
        "band_corr": float(np.mean([pearson(a[d], feats.band_energy[d]) for d in range(len(a))])),
        "flashes": flashes,
        "flash_safe": float(flashes <= MAX_SAFE_FLASHES),
        "mean_brightness": float(a.mean()),
        "std_time": float(a.std(axis=1).mean()),
        "ssm_corr": ssm_correlation(a, feats),
    }


def metrics_batch(actions: np.ndarray, feats: list[AudioFeatures]) -> dict[str, np.ndarray]:
    """Per-clip metrics ``{name: [N]}`` of actions ``[N, D, T]`` on N clips' features."""
    if len(actions) != len(feats):
        raise ValueError(f"{len(actions)} actions for {len(feats)} clips")
    rows = [show_metrics(a, f) for a, f in zip(actions, feats)]
    return {k: np.array([r[k] for r in rows], dtype=np.float64) for k in METRICS}


def summarise(per_clip: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over clips (``flash_safe``: the fraction of safe clips; ``flashes``: the mean and,
    as ``flashes_max``, the worst clip). NaN-only metrics (``ssm_corr`` on short clips) -> NaN."""
    out: dict[str, float] = {}
    for k, v in per_clip.items():
        v = np.asarray(v, np.float64)
        out[k] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    if "flashes" in per_clip and len(per_clip["flashes"]):
        out["flashes_max"] = float(np.max(per_clip["flashes"]))
    return out


__all__ = [
    "METRICS", "AudioFeatures", "audio_features", "band_edges_hz", "beat_f_measure",
    "flash_count", "light_peaks", "match_events", "metrics_batch", "novelty_correlation",
    "pearson", "show_metrics", "ssm_correlation", "summarise", "transitions",
]
