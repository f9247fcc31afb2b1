"""Candidate light shows for preference pairs: a hand-made band follower and its relatives.

The mix is meant to cover what a learning policy will produce, from noise to near-ideal:
uniform / smoothed noise, constants, the LedFx/WLED-style band follower (with delay, jitter,
gain, flicker, swapped devices, sharpening, blurring), follower/noise mixtures, per-frame
i.i.d. samples around a good action on the K-level grid, beat-flash pulses and the gold
target ("ideal"). Policy samples come in through :func:`candidates_from_actions` (arrays
only; this package never imports ``cqtml_policy``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cqtml_env.contract import DEFAULT_LEVELS, device_bands, quantise
from cqtml_env.gold.scorer import GoldScorer


def _check_cqt(cqt) -> np.ndarray:
    if hasattr(cqt, "detach"):
        cqt = cqt.detach().cpu().numpy()
    c = np.asarray(cqt, dtype=np.float32)
    if c.ndim != 3 or c.shape[0] != 2:
        raise ValueError(f"cqt must be [2, n_bins, T], got shape {c.shape}")
    return c


def band_power_level(cqt, num_devices: int = 4) -> np.ndarray:
    """Band level from the mean *power* of the band's bins (mono mix), on the CQT's 0..1 scale.

    This is what a spectrum-bar controller does (LedFx, WLED): energy per band, not the
    gold scorer's loudest-bins level.
    """
    c = _check_cqt(cqt)
    mono = c.mean(axis=0)
    power = 10.0 ** ((mono - 1.0) * 8.0)  # 80 dB range -> linear power
    out = np.zeros((num_devices, c.shape[2]), dtype=np.float32)
    for d, (lo, hi) in enumerate(device_bands(c.shape[1], num_devices)):
        p = power[lo:hi].mean(axis=0)
        out[d] = np.clip(1.0 + np.log10(np.maximum(p, 1e-12)) / 8.0, 0.0, 1.0)
    return out


def smooth_attack_decay(x: np.ndarray, attack: float, decay: float) -> np.ndarray:
    """Asymmetric one-pole smoothing along the last axis (LedFx rise/decay, WLED attack/decay)."""
    y = np.empty_like(x)
    s = np.zeros(x.shape[:-1], dtype=x.dtype)
    for t in range(x.shape[-1]):
        v = x[..., t]
        coef = np.where(v > s, attack, decay)
        s = s + coef * (v - s)
        y[..., t] = s
    return y


def smoothed_band_level(
    cqt,
    num_devices: int = 4,
    attack: float = 0.6,
    decay: float = 0.15,
    gate: float = 0.3,
    agc_percentile: float = 98.0,
) -> np.ndarray:
    """A good hand-made candidate show: band energy, noise gate, per-band auto-gain, attack/decay.

    A candidate generator for preference data (0.81 gold in README), not the baseline policy
    ``cqtml_policy.BandFollowPolicy`` (0.780, normalised scores' 1). ``band_follower`` in 0.1.

    Defaults follow WLED's audio-reactive settings (attack ~50 ms = 0.6 per frame at 43 fps,
    decay ~300 ms = 0.15 per frame). Returns ``[num_devices, T]`` in [0, 1].
    """
    lvl = band_power_level(cqt, num_devices)
    top = np.percentile(lvl, agc_percentile, axis=1, keepdims=True)
    span = np.maximum(top - gate, 0.2)
    x = np.clip((lvl - gate) / span, 0.0, 1.0).astype(np.float32)
    return smooth_attack_decay(x, attack, decay).astype(np.float32)


def _shift_time(x: np.ndarray, k: int) -> np.ndarray:
    """Delay (k > 0) or advance along time, holding the edge value."""
    if k == 0:
        return x.copy()
    idx = np.clip(np.arange(x.shape[-1]) - k, 0, x.shape[-1] - 1)
    return x[..., idx]


def _blur(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x.copy()
    kernel = np.ones(width, dtype=np.float32) / width
    pad = width // 2
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, width - 1 - pad)], mode="edge")
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), -1, xp)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], width: int) -> np.ndarray:
    x = _blur(rng.random(shape).astype(np.float32), width)
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    x = (x - lo) / np.maximum(hi - lo, 1e-6)
    return x * rng.uniform(0.3, 1.0) + rng.uniform(0.0, 0.3)


class CandidateFactory:
    """Draws diverse candidate actions for one clip; ``sample(n, rng)`` → (actions, sources)."""

    def __init__(self, cqt, scorer: GoldScorer | None = None, num_devices: int = 4) -> None:
        self.cqt = _check_cqt(cqt)
        self.num_devices = num_devices
        self.scorer = scorer or GoldScorer(num_devices=num_devices)
        self.features = self.scorer.features(self.cqt)
        self.ideal = self.features.target.astype(np.float32)
        self.follower = smoothed_band_level(self.cqt, num_devices)
        self.shape = (num_devices, self.cqt.shape[2])
        self.generators: dict[str, tuple[float, Callable[[np.random.Generator], np.ndarray]]] = {
            "uniform": (0.05, self._uniform),
            "smooth_noise": (0.07, self._smooth_noise),
            "constant": (0.03, self._constant),
            "follower": (0.08, self._follower),
            "follower_delay": (0.08, self._delay),
            "follower_jitter": (0.05, self._jitter),
            "follower_gain": (0.06, self._gain),
            "follower_flicker": (0.06, self._flicker),
            "swapped": (0.05, self._swapped),
            "sharpen_blur": (0.06, self._sharpen_blur),
            "mixture": (0.08, self._mixture),
            "iid_around_good": (0.13, self._iid_around),
            "pulses": (0.05, self._pulses),
            "ideal": (0.03, self._ideal),
            "ideal_perturbed": (0.08, self._ideal_perturbed),
            "inverted": (0.02, self._inverted),
            "dark": (0.02, self._dark),
        }

    @property
    def source_names(self) -> list[str]:
        return list(self.generators)

    # each generator returns one [D, T] action in [0, 1]
    def _good(self, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < 0.5:
            return self.ideal.copy()
        return self._follower(rng)

    def _uniform(self, rng):
        return rng.random(self.shape, dtype=np.float32) * rng.uniform(0.3, 1.0)

    def _smooth_noise(self, rng):
        return _smooth_noise(rng, self.shape, int(rng.integers(2, 30)))

    def _constant(self, rng):
        return np.full(self.shape, rng.uniform(0.0, 1.0), dtype=np.float32)

    def _follower(self, rng):
        return smoothed_band_level(
            self.cqt,
            self.num_devices,
            attack=rng.uniform(0.3, 1.0),
            decay=rng.uniform(0.05, 0.5),
            gate=rng.uniform(0.2, 0.4),
        )

    def _delay(self, rng):
        k = int(rng.choice([-2, -1, 1, 2, 3, 4, 6, 8, 12]))
        return _shift_time(self._good(rng), k)

    def _jitter(self, rng):
        x = self._good(rng)
        t = x.shape[1]
        idx = np.clip(np.arange(t) + rng.integers(-3, 4, size=t), 0, t - 1)
        return x[:, idx]

    def _gain(self, rng):
        x = self._good(rng)
        g = rng.uniform(0.3, 1.6, size=(self.num_devices, 1))
        return np.clip(x * g + rng.uniform(-0.2, 0.3), 0, 1)

    def _flicker(self, rng):
        x = self._good(rng)
        t = np.arange(x.shape[1]) / self.scorer.config.frame_rate
        hz = rng.uniform(3.0, 15.0)
        square = (np.sin(2 * np.pi * hz * t + rng.uniform(0, 6.3)) > 0).astype(np.float32)
        start = int(rng.integers(0, x.shape[1] // 2))
        stop = int(rng.integers(start + 20, x.shape[1] + 1))
        mask = np.zeros(x.shape[1], np.float32)
        mask[start:stop] = 1.0
        devs = rng.random(self.num_devices) < 0.6
        amp = rng.uniform(0.3, 1.0)
        strobe = amp * square * mask
        x[devs] = np.clip(x[devs] * (1 - mask * amp) + strobe, 0, 1)
        return x

    def _swapped(self, rng):
        x = self._good(rng)
        perm = rng.permutation(self.num_devices)
        while self.num_devices > 1 and np.all(perm == np.arange(self.num_devices)):
            perm = rng.permutation(self.num_devices)
        return x[perm]

    def _sharpen_blur(self, rng):
        x = self._good(rng)
        if rng.random() < 0.5:
            return np.clip(x ** rng.uniform(1.5, 4.0), 0, 1)
        return _blur(x, int(rng.integers(3, 25)))

    def _mixture(self, rng):
        alpha = rng.uniform(0.2, 0.95)
        noise = self._uniform(rng) if rng.random() < 0.5 else self._smooth_noise(rng)
        return alpha * self._good(rng) + (1 - alpha) * noise

    def _iid_around(self, rng):
        x = self._good(rng)
        sigma = float(rng.choice([0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45]))
        return np.clip(x + sigma * rng.standard_normal(x.shape).astype(np.float32), 0, 1)

    def _pulses(self, rng):
        f = self.features
        x = np.zeros(self.shape, np.float32)
        decay = rng.uniform(0.05, 0.5)
        for d in range(self.num_devices):
            frames = f.onset_frames[d]
            if rng.random() < 0.3 and f.beat_frames.size:
                frames = f.beat_frames
            imp = np.zeros(self.shape[1], np.float32)
            imp[np.clip(frames + int(rng.integers(-1, 3)), 0, self.shape[1] - 1)] = 1.0
            x[d] = smooth_attack_decay(imp[None], 1.0, decay)[0]
        return np.clip(x * rng.uniform(0.5, 1.0) + rng.uniform(0, 0.1), 0, 1)

    def _ideal(self, rng):
        return self.ideal.copy()

    def _ideal_perturbed(self, rng):
        x = self.ideal.copy()
        kind = rng.integers(0, 4)
        if kind == 0:
            x = x * rng.uniform(0.4, 1.3) + rng.uniform(-0.1, 0.15)
        elif kind == 1:
            x = _shift_time(x, int(rng.choice([-1, 1, 2, 3, 5])))
        elif kind == 2:
            x = smooth_attack_decay(x, rng.uniform(0.3, 1.0), rng.uniform(0.05, 0.6))
        else:
            x = x + rng.uniform(0.02, 0.2) * rng.standard_normal(x.shape)
        return np.clip(x, 0, 1).astype(np.float32)

    def _inverted(self, rng):
        return 1.0 - self._good(rng)

    def _dark(self, rng):
        return np.zeros(self.shape, np.float32) + rng.uniform(0.0, 0.05)

    def sample(
        self, n: int, rng: np.random.Generator, levels: int | None = DEFAULT_LEVELS
    ) -> tuple[np.ndarray, list[str]]:
        """``n`` candidates ``[n, D, T]`` and their source names; ~half snapped to the grid."""
        names = self.source_names
        probs = np.array([self.generators[k][0] for k in names], dtype=np.float64)
        probs /= probs.sum()
        picks = rng.choice(len(names), size=n, p=probs)
        # always include one ideal and one plain follower: anchors for calibration
        if n >= 2:
            picks[0] = names.index("ideal")
            picks[1] = names.index("follower")
        out = np.empty((n, *self.shape), dtype=np.float32)
        for i, p in enumerate(picks):
            x = np.clip(np.asarray(self.generators[names[p]][1](rng), np.float32), 0, 1)
            if levels and rng.random() < 0.5:
                x = quantise(x, levels)
            out[i] = x
        return out, [names[p] for p in picks]


def candidates_from_actions(actions, num_devices: int | None = None) -> np.ndarray:
    """Validate external actions (e.g. policy samples) as candidates: float32 ``[N, D, T]``.

    The hook by which an agent adds its own samples to a preference data set without this
    package importing the policy code.
    """
    if hasattr(actions, "detach"):
        actions = actions.detach().cpu().numpy()
    if isinstance(actions, (list, tuple)):
        actions = np.stack(
            [np.asarray(a.detach().cpu() if hasattr(a, "detach") else a) for a in actions]
        )
    a = np.asarray(actions, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"actions must be [N, devices, T] or [devices, T], got shape {a.shape}")
    if num_devices is not None and a.shape[1] != num_devices:
        raise ValueError(f"actions have {a.shape[1]} devices, expected {num_devices}")
    if not np.all(np.isfinite(a)) or (a.size and (a.min() < 0 or a.max() > 1)):
        raise ValueError("actions must be finite and in [0, 1]")
    return a


def band_follower(*args, **kwargs) -> np.ndarray:
    """Deprecated 0.1 name of :func:`smoothed_band_level` (goes away in cqtml-env 0.3)."""
    import warnings

    warnings.warn(
        "cqtml_env.preferences.candidates.band_follower is deprecated: it is "
        "smoothed_band_level (a candidate show, not the BandFollowPolicy baseline); the old "
        "name goes away in cqtml-env 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return smoothed_band_level(*args, **kwargs)


__all__ = [
    "CandidateFactory",
    "band_power_level",
    "candidates_from_actions",
    "quantise",
    "smooth_attack_decay",
    "smoothed_band_level",
]
