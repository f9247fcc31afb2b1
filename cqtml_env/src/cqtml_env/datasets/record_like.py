"""Record-like test audio: made differently from ``SyntheticMusic`` (plucked strings, noisy
drums, human timing, a room, a noise floor, bus saturation), to check transfer beyond it."""

from __future__ import annotations

import numpy as np

from cqtml_env.contract import MAX_DURATION, SAMPLE_RATE


def record_like_audio(seed: int, duration: float = MAX_DURATION, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Non-synthetic-style test audio, made differently from ``SyntheticMusic``.

    Karplus–Strong plucked strings and a physically-ish kick (pitch-swept, clicky), band-pass
    noise snares and shakers, human timing (swing, jitter), a room (convolution with decaying
    noise), a noise floor at about -60 dB, a soft-clipping master bus and stereo width:
    the texture of a recording rather than clean wavetables.
    """
    rng = np.random.default_rng([seed, 77])
    n = int(duration * sr)
    out = np.zeros((2, n), np.float64)
    bpm = rng.uniform(70, 170)
    beat = 60.0 / bpm
    swing = rng.uniform(0.0, 0.12) * beat

    def put(sig: np.ndarray, start: float, pan: float, gain: float) -> None:
        s = int(start * sr)
        if s >= n or s < 0:
            return
        e = min(n, s + len(sig))
        out[0, s:e] += gain * np.sqrt(1 - pan) * sig[: e - s]
        out[1, s:e] += gain * np.sqrt(pan) * sig[: e - s]

    def pluck(freq: float, dur: float, bright: float) -> np.ndarray:
        from scipy.signal import lfilter

        period = max(2, int(sr / freq))
        m = int(dur * sr)
        excite = np.zeros(m)
        excite[:period] = rng.uniform(-1, 1, min(period, m))
        den = np.zeros(period + 2)
        den[0], den[period], den[period + 1] = 1.0, -0.5 * bright, -0.5 * bright
        y = lfilter([1.0], den, excite)  # Karplus-Strong: a damped, averaging delay line
        return y * np.exp(-np.arange(m) / (sr * dur * 0.6))

    def noise_hit(lo: float, hi: float, dur: float, decay: float) -> np.ndarray:
        from scipy.signal import butter, sosfilt

        m = int(dur * sr)
        sos = butter(2, [lo, min(hi, sr / 2 - 100)], btype="band", fs=sr, output="sos")
        return sosfilt(sos, rng.standard_normal(m)) * np.exp(-np.arange(m) / (decay * sr))

    tt = np.arange(int(0.35 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(45 + 120 * np.exp(-tt * 35)) / sr) * np.exp(-tt * 9)
    kick[:40] += rng.standard_normal(40) * 0.3
    root = rng.uniform(40, 65)
    scale = (
        np.array([0, 2, 3, 5, 7, 8, 10]) if rng.random() < 0.5 else np.array([0, 2, 4, 5, 7, 9, 11])
    )
    t, k = rng.uniform(0, 0.3), 0
    drop = (rng.uniform(1.5, 3.5), rng.uniform(0.4, 1.0)) if rng.random() < 0.4 else (99, 0)
    dense = rng.random() < 0.6
    while t < duration:
        jit = rng.normal(0, 0.008)
        if not (drop[0] <= t < drop[0] + drop[1]):
            if dense or k % 2 == 0:
                put(kick, t + jit, 0.5, 0.45 * rng.uniform(0.8, 1.0))
            if k % 2 == 1:
                put(noise_hit(900, 5000, 0.25, 0.05), t + jit, 0.45, 0.25)
            for h in range(2 if dense else 1):
                put(
                    noise_hit(6000, 10000, 0.08, 0.015),
                    t + h * beat / 2 + (swing if h else 0),
                    0.7,
                    0.12,
                )
            deg = int(rng.integers(0, 7))
            f = root * 2 ** (scale[deg] / 12)
            put(pluck(f, beat * 0.9, 0.996), t + jit, 0.4, 0.35)
            if rng.random() < 0.6:
                f2 = root * 4 * 2 ** (scale[int(rng.integers(0, 7))] / 12)
                put(pluck(f2, beat * 1.5, 0.998), t + beat / 2 + jit, 0.65, 0.15)
        t += beat
        k += 1
    ir_len = int(rng.uniform(0.2, 0.8) * sr)
    ir = rng.standard_normal((2, ir_len)) * np.exp(-np.arange(ir_len) / (0.15 * ir_len))
    ir[:, 0] = 1.0
    from scipy.signal import fftconvolve

    wet = np.stack([fftconvolve(out[c], ir[c] * 0.03)[:n] for c in range(2)])
    mix = out + wet + 1e-3 * rng.standard_normal((2, n))
    level = rng.uniform(0.4, 0.9)
    mix = np.tanh(mix / (np.abs(mix).max() + 1e-9) * 1.5) * level  # master bus saturation
    return mix.astype(np.float32)


def record_like_cqts(num: int, seed: int = 0) -> np.ndarray:
    """CQTs of :func:`record_like_audio` clips: ``[num, 2, 84, 216]``."""
    from cqtml_env.features.cqt import CQTProcessor

    proc = CQTProcessor()
    return proc.batch([record_like_audio(seed * 1000 + i) for i in range(num)])


__all__ = ["record_like_audio", "record_like_cqts"]
