"""The gold scorer: a documented, deterministic stand-in for a human judge of a light show.

It reads only the clip's CQT (``[2, F, T]`` in [0, 1], absolute dB scale) and scores device
activations ``[N, D, T]`` in [0, 1]. Criteria come from what lighting people run today
(LedFx / WLED / QLC+: per-band level mapping with a noise gate and auto-gain, fast attack,
beat/onset flashes) and from photosensitivity practice (WCAG 2.3.1: at most three flashes in
any one-second period). See ``docs/GOLD.md`` for the plain-words version.

Per device ``d`` (band ``device_bands(F, D)[d]``) and action ``a = actions[n, d]``:

* ``corr``    Pearson correlation of ``a`` with the band target ``y`` (negative -> 0).
* ``level``   ``1 - mean_t |a - y|``: brightness matches the band's loudness frame by frame.
* ``onset``   F-measure of prompt rises: recall = mean over the band's onsets of the best
  Gaussian-weighted (sigma 1.5 frames, window -1..+3 frames) rise of ``a`` relative to the
  target's jump; precision = share of the action's rise events (rise >= 0.2 within 2 frames,
  local maximum) that land near a band onset.
* ``beat``    the same F-measure for the whole rig: rises of the mean activation over devices
  (event >= 0.1): recall of clip-level beats (librosa's beat tracker on the summed band
  flux; gold-v5: on the CQT's mean rise over 2 frames), precision against beats or any band
  onset; one value shared by every device.
* ``flicker`` 1 - mean over frames of ``clip((flashes_in_1s - 3) / 3, 0, 1)``; a *flash* is a
  pair of opposing transitions, a *transition* a swing of at least 0.2 (20 % of full scale)
  from the last extreme (hysteresis), so ripples below 0.2 never count.
* ``dark``    ``1 - mean(a)`` over the band's silent frames (target 0 for >= 3 frames);
  1 when the band never goes silent.
* ``range``   ``min(std a, std y) / max(std a, std y)``: use the dynamic range the music has
  (a constant output scores 0 on a band that moves).

The target ``y[d, t] = clip((L - gate) / (ref - gate), 0, 1)`` with ``L`` the band level
(mean of its 3 loudest bins, louder channel), ``gate`` an absolute noise gate (0.35 = -52 dB)
and ``ref`` a per-clip auto-gain (95th percentile of ``L`` over all bands, at least gate+0.3),
so silence stays dark and the loudest passages reach ~1.

That is gold-v1 (the default). ``version="gold-v2"`` / ``"gold-v3"`` select the presets
``GOLD_V2`` / ``GOLD_V3`` (per-band auto-gain, loudness law, onset punches; v3's target follows
with a decay and punches above its bed by onset strength): docs/GOLD.md. ``"gold-v4"``
(``GOLD_V4``) puts v3's punches over a dB-linear bed between each band's own 5th and 98th
percentile, with a short attack, that starts at the clip's level. ``"gold-v5"`` (``GOLD_V5``)
adds a pulse for the whole rig on the clip's beats, tracked on an onset envelope that no longer
mistakes the clip's first frame for an attack. ``"gold-v6"`` (``GOLD_V6``) is v5 with each
band's level the mean of its 12 loudest bins instead of 6. ``"gold-v7"`` (``GOLD_V7``) is v5
with each band's dark end at its 0.5th percentile over the clip instead of its 5th.

Score = ``sum_c w_c * component_c`` averaged over devices (weights sum to 1), in [0, 1].
Per-clip features are computed once (and cached by content). ``score``/``score_components``
score ``N`` actions of one clip vectorised; ``score_batch``/``score_components_batch`` score
``B`` (clip, action) pairs over many clips in the same single pass (one loop over the T frames
for every row). A row's scores are exactly the same whatever else is in the batch.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cqtml_env.contract import DEFAULT_FRAME_RATE, SAMPLE_RATE, device_bands

DEFAULT_WEIGHTS: dict[str, float] = {
    "corr": 0.25,
    "level": 0.20,
    "onset": 0.20,
    "beat": 0.05,
    "flicker": 0.15,
    "dark": 0.05,
    "range": 0.10,
}
COMPONENTS: tuple[str, ...] = tuple(DEFAULT_WEIGHTS)
GOLD_VERSIONS: tuple[str, ...] = ("gold-v1", "gold-v2", "gold-v3", "gold-v4", "gold-v5",
                                   "gold-v6", "gold-v7")

# gold-v2 (docs/GOLD.md, "gold-v2"): a target that is dynamic and punchy on real music
V2_WEIGHTS: dict[str, float] = {
    "corr": 0.20,
    "level": 0.20,
    "onset": 0.20,
    "beat": 0.10,
    "flicker": 0.15,
    "dark": 0.05,
    "range": 0.10,
}
GOLD_V2: dict = {
    "band_gain": True,  # auto-gain per band (each device uses its own range), not per clip
    "loudness_law": True,  # brightness ~ perceived loudness: halves every 10 dB below the ref
    "punch_decay_s": 0.12,  # a flash on every strong band onset, decaying with this time constant
    "punch_min_gap_s": 0.34,  # at most ~3 punches a second per band (WCAG 2.3.1)
    "flash_swing": 0.1,  # WCAG's 10 % swing (v1: 20 %)
    "silence_level": 0.1,  # "dark" also judges the quiet frames (target <= 0.1), not only silence
}
# gold-v3 (docs/GOLD.md, "gold-v3"): v2's target, made to beat the band-follower on the
# independent metrics (agents/metrics.py) of real music: it follows instead of flickering, and
# its punches rise above the bed by as much as the onset is strong. Weights as v2.
GOLD_V3: dict = {
    **GOLD_V2,
    "target_decay_s": 0.1,  # the level target falls with 0.1 s (rises at once): no frame jitter
    "punch_mix": True,  # target = (1 - punch_level) * bed + punch: every punch is a real rise
    "punch_level": 0.3,  # the strongest onset of the band rises by 0.3 above the bed
    "punch_scale_power": 0.5,  # a weaker onset punches by sqrt(its flux / the strongest's)
}
# gold-v4 (docs/GOLD.md, "gold-v4"): v3's punches over a bed that rises with the music's
# onsets as the audio's onset strength does (dB-linear, per-band floor and ceiling, a short
# attack, started at the clip's own level), so the target beats the band-follower on
# novelty correlation by a margin, not by 0.006. Weights as v2.
GOLD_V4: dict = {
    **GOLD_V3,
    "loudness_law": False,  # brightness linear in dB: a rise of x dB is the same rise anywhere
    "gate": 0.15,  # -68 dB absolute noise gate (the band-follower's noise floor)
    "floor_percentile": 5.0,  # each band's own 5th percentile is dark ...
    "ref_percentile": 98.0,  # ... and its 98th full (the band-follower's range)
    "min_ref_span": 0.15,  # at least 12 dB between floor and full
    "top_bins": 6,  # band level: mean of its 6 loudest bins (v3: 3) hears broadband attacks
    "target_attack_s": 0.015,  # the bed rises over ~1 frame (not at once: no jitter rises)
    "target_decay_s": 0.13,  # and falls with 0.13 s (the band-follower's 0.3 s to 10 %)
    "follow_from_first": True,  # a clip is an excerpt: the bed starts at its level, not dark
    "punch_scale_power": 0.75,  # a weaker onset punches by (its flux / the strongest's)^0.75
}
# gold-v5 (docs/GOLD.md, "gold-v5"): v4's target plus a pulse of the whole rig on the clip's
# beats, so that the rig's brightness peaks on the beat (v4's target lost beat-peak F to the
# band-follower on the probe set). Weights as v2.
GOLD_V5: dict = {
    **GOLD_V4,
    "beat_flux_lag": 2,  # beats tracked on the CQT's mean flux over 2 frames, not the band sum
    "beat_punch_level": 0.08,  # every device adds up to 0.08 on a beat (the strongest beat) ...
    "beat_punch_power": 0.5,  # ... a weaker one sqrt(its onset envelope / the strongest's)
}

# gold-v6 (docs/GOLD.md, "gold-v6"): v5 with each band's level the mean of its 12 loudest bins
# (v5: 6), so the level follows the band's broad energy more than its loudest partials; over a
# whole song the target's structure is then closer to the music's (self-similarity).
GOLD_V6: dict = {**GOLD_V5, "top_bins": 12}

# gold-v7 (docs/GOLD.md, "gold-v7"): v5 with each band's dark end at its 0.5th percentile over
# the clip (v5: the 5th), so the quietest moments of a band are dark, not the quietest
# twentieth: the level keeps more of the music's dynamics. Over whole songs the show's
# structure is then closer to the music's (self-similarity), with v5's loudness following.
GOLD_V7: dict = {**GOLD_V5, "floor_percentile": 0.5}

# each version's preset, by name (gold-v1 is the dataclass defaults)
_PRESETS: dict[str, dict] = {"gold-v2": GOLD_V2, "gold-v3": GOLD_V3, "gold-v4": GOLD_V4,
                             "gold-v5": GOLD_V5, "gold-v6": GOLD_V6, "gold-v7": GOLD_V7}

@dataclass(frozen=True)
class GoldConfig:
    """Every constant of the gold scorer (saved with preference data sets).

    ``frame_rate`` is the CQT's (pass ``processor.frame_rate``). Constants counted in frames
    (onset window and sigma, peak-picking windows, silence release) are defined at the
    contract's default rate and scaled to ``frame_rate`` (:meth:`frames`), so every rule means
    the same time span at any hop length; the flash rule counts over one second of frames.
    """

    num_devices: int = 4
    frame_rate: float = DEFAULT_FRAME_RATE
    gate: float = 0.35
    ref_percentile: float = 95.0
    min_ref_span: float = 0.3
    top_bins: int = 3
    onset_delta: float = 0.02
    onset_min_target: float = 0.1
    onset_sigma: float = 1.5
    onset_window: tuple[int, int] = (-1, 3)
    rise_event: float = 0.2
    min_jump: float = 0.1
    flash_swing: float = 0.2
    max_flashes_per_s: float = 3.0
    silence_release: int = 3
    range_floor: float = 0.02
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    version: str = "gold-v1"
    band_gain: bool = False
    loudness_law: bool = False
    punch_decay_s: float = 0.0
    punch_min_gap_s: float = 0.34
    silence_level: float = 0.0
    target_attack_s: float = 0.0
    target_decay_s: float = 0.0
    punch_source: str = "onsets"
    punch_level: float = 1.0
    floor_percentile: float = 0.0
    punch_mix: bool = False
    punch_scale_power: float = 0.0
    follow_from_first: bool = False
    beat_flux_lag: int = 0
    beat_punch_level: float = 0.0
    beat_punch_power: float = 0.5

    @classmethod
    def v2(cls, **overrides) -> GoldConfig:
        """The gold-v2 preset (``GoldScorer(version="gold-v2")`` uses it)."""
        return cls._preset("gold-v2", **overrides)

    @classmethod
    def v3(cls, **overrides) -> GoldConfig:
        """The gold-v3 preset (``GoldScorer(version="gold-v3")`` uses it)."""
        return cls._preset("gold-v3", **overrides)

    @classmethod
    def v4(cls, **overrides) -> GoldConfig:
        """The gold-v4 preset (``GoldScorer(version="gold-v4")`` uses it)."""
        return cls._preset("gold-v4", **overrides)

    @classmethod
    def v5(cls, **overrides) -> GoldConfig:
        """The gold-v5 preset (``GoldScorer(version="gold-v5")`` uses it)."""
        return cls._preset("gold-v5", **overrides)

    @classmethod
    def v6(cls, **overrides) -> GoldConfig:
        """The gold-v6 preset (``GoldScorer(version="gold-v6")`` uses it)."""
        return cls._preset("gold-v6", **overrides)

    @classmethod
    def v7(cls, **overrides) -> GoldConfig:
        """The gold-v7 preset (``GoldScorer(version="gold-v7")`` uses it)."""
        return cls._preset("gold-v7", **overrides)

    @classmethod
    def _preset(cls, version: str, **overrides) -> GoldConfig:
        kw = {**_PRESETS[version], "weights": dict(V2_WEIGHTS), "version": version, **overrides}
        return cls(**kw)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["onset_window"] = list(self.onset_window)
        return d

    @property
    def time_scale(self) -> float:
        """Frames at ``frame_rate`` per frame at the default rate (1.0 at the defaults)."""
        return self.frame_rate / DEFAULT_FRAME_RATE

    def frames(self, default_frames: int, minimum: int = 1) -> int:
        """A span of ``default_frames`` frames at the default rate, in frames at ``frame_rate``."""
        if self.time_scale == 1.0:
            return max(minimum, default_frames)
        return max(minimum, int(round(default_frames * self.time_scale)))

    @property
    def sigma_frames(self) -> float:
        return self.onset_sigma * self.time_scale

    @property
    def window_frames(self) -> tuple[int, int]:
        k0, k1 = self.onset_window
        return (-self.frames(-k0, 0), self.frames(k1, 0))


@dataclass
class ClipFeatures:
    """Per-clip quantities the scorer needs; computed once, reused for every action."""

    level: np.ndarray  # [D, T] band level L (0..1, absolute dB scale)
    target: np.ndarray  # [D, T] band target y in [0, 1]
    flux: np.ndarray  # [D, T] band spectral flux (positive dB differences, mean over bins)
    onset_frames: list[np.ndarray]  # per device: onset frame indices
    onset_jump: list[np.ndarray]  # per device: target jump at each onset (>= min_jump)
    near_onset: np.ndarray  # [D, T] max Gaussian weight to the nearest band onset
    beat_frames: np.ndarray  # clip-level beat frames
    near_beat: np.ndarray  # [T] max Gaussian weight to the nearest beat or band onset
    silent: np.ndarray  # [D, T] bool, band silent (with release margin)
    target_std: np.ndarray  # [D]


def _as_numpy(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    return x.astype(np.float32, copy=False)


def _shift(x: np.ndarray, k: int, fill: float = 0.0) -> np.ndarray:
    """``out[..., t] = x[..., t - k]`` (positive k delays), padding with ``fill``."""
    if k == 0:
        return x
    out = np.full_like(x, fill)
    if k > 0:
        out[..., k:] = x[..., :-k]
    else:
        out[..., :k] = x[..., -k:]
    return out


def _hold_decay(env: np.ndarray, keep) -> None:
    """In place: every impulse of ``env [T]`` decays by ``keep`` a frame until a bigger one."""
    for t in range(1, env.shape[0]):
        env[t] = max(env[t], env[t - 1] * keep)


def rise(actions: np.ndarray) -> np.ndarray:
    """How much the activation rose within the last 2 frames (dark before the clip)."""
    prev1 = _shift(actions, 1)
    prev2 = _shift(actions, 2)
    return actions - np.minimum(prev1, prev2)


def count_transitions(actions: np.ndarray, swing: float) -> np.ndarray:
    """Transition events ``[..., T]``: a swing of >= ``swing`` from the last extreme.

    Hysteresis turning-point detector over activations >= 0. The light is dark before the
    clip, so it starts "falling" from 0 and an initial switch-on counts as a transition.
    Pass all clips' actions ``[N, D, T]`` together: the cost is almost independent of N.
    """
    a = np.asarray(actions)
    return np.ascontiguousarray(_transition_events_by_frame(a, swing).T).reshape(a.shape)


_MANY_SEQUENCES = 256  # measured crossover of the per-frame loops below (sequences = actions x devices)


def _transition_events_by_frame(actions: np.ndarray, swing: float) -> np.ndarray:
    """:func:`count_transitions` frame-major: events ``[T, prod(shape[:-1])]``.

    One loop over the T frames whose body handles every sequence at once. State per
    sequence: the direction ``s`` (+1 rising, -1 falling) and ``s *`` the extreme since the
    last turning point, so both directions are one running max.
    """
    if not swing > 0:
        raise ValueError(f"swing must be > 0, got {swing!r}")
    a = np.asarray(actions)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    xt = np.ascontiguousarray(a.reshape(-1, a.shape[-1]).T)  # [T, n]: each frame contiguous
    if xt.size and not (xt >= 0).all():
        raise ValueError("count_transitions needs activations >= 0 (no NaN)")
    t_len, n = xt.shape
    events = np.zeros((t_len, n), dtype=bool)
    sign = np.full(n, -1, dtype=xt.dtype)  # falling from dark
    ext = np.zeros(n, dtype=xt.dtype)  # sign * extreme since the last turning point
    z, gap = np.empty_like(ext), np.empty_like(ext)
    if n < _MANY_SEQUENCES:  # few sequences: fewest numpy calls per frame
        for t in range(t_len):
            np.multiply(sign, xt[t], out=z)
            np.maximum(ext, z, out=ext)
            np.subtract(ext, z, out=gap)  # swing back from the extreme
            ev = events[t]
            np.greater_equal(gap, swing, out=ev)
            np.negative(sign, out=sign, where=ev)  # a turning point: reverse ...
            np.negative(z, out=ext, where=ev)  # ... and restart the extreme from here
        return events
    # many sequences: ``where=``-masked ufuncs are slow per element, so a turning point is
    # applied branch-free: sign *= 1 - 2*event (exact for +-1), and ext takes -z's bits where
    # the all-ones mask is set (same results bit for bit)
    neg_z, flip = np.empty_like(ext), np.empty_like(ext)
    bits = np.dtype(f"i{xt.dtype.itemsize}")
    mask = np.empty(n, dtype=bits)
    ext_bits, neg_bits = ext.view(bits), neg_z.view(bits)
    two = xt.dtype.type(2)
    for t in range(t_len):
        np.multiply(sign, xt[t], out=z)
        np.maximum(ext, z, out=ext)
        np.subtract(ext, z, out=gap)
        ev = events[t]
        np.greater_equal(gap, swing, out=ev)
        np.multiply(ev, two, out=flip)
        np.subtract(1, flip, out=flip)
        np.multiply(sign, flip, out=sign)
        np.negative(z, out=neg_z)
        np.negative(ev.view(np.int8), out=mask, casting="unsafe")  # 0 or -1 (all bits set)
        np.bitwise_xor(ext_bits, neg_bits, out=neg_bits)
        np.bitwise_and(neg_bits, mask, out=neg_bits)
        np.bitwise_xor(ext_bits, neg_bits, out=ext_bits)
    return events


def _onset_table(
    frames: list[list[np.ndarray]], weights: list[list[np.ndarray]], offsets: np.ndarray, t_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pad per-(clip, group) event lists to one table.

    Returns the clipped frame index of every (event, offset) ``[U, G, O*K]``, whether it lies
    inside the clip ``[U, G, O, K]``, the per-event weights ``[U, G, O]`` (1 where padded) and
    the event count ``[U, G]`` (events past it are padding).
    """
    u_n, g_n = len(frames), len(frames[0])
    counts = np.array([[len(f) for f in row] for row in frames], dtype=np.int64).reshape(u_n, g_n)
    o_n = max(1, int(counts.max(initial=0)))
    fr = np.zeros((u_n, g_n, o_n), dtype=np.int64)
    wt = np.ones((u_n, g_n, o_n), dtype=np.float32)
    for u in range(u_n):
        for g in range(g_n):
            c = counts[u, g]
            if c:
                fr[u, g, :c] = frames[u][g]
                wt[u, g, :c] = weights[u][g]
    raw = fr[..., None] + offsets  # [U, G, O, K]
    valid = (raw >= 0) & (raw < t_len)
    idx = np.clip(raw, 0, t_len - 1).reshape(u_n, g_n, -1)
    return idx, valid, wt, counts


def _rows(x: np.ndarray, inv: np.ndarray | None) -> np.ndarray:
    """Per-clip array ``[U, ...]`` -> per-row ``[N, ...]`` (``[1, ...]`` broadcasts for one clip)."""
    return x if inv is None else x[inv]


def _mean_of_first(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean of the first ``counts[...]`` entries of each row ``x[..., :]`` (0 where none).

    Summed in order, one entry at a time, in x's precision: a defined order that does not
    depend on the batch size or on the padding (numpy's pairwise summation would).
    """
    counts = np.broadcast_to(counts, x.shape[:-1])
    total = np.zeros(x.shape[:-1], dtype=x.dtype)
    for o in range(x.shape[-1]):
        np.add(total, x[..., o], out=total, where=o < counts)
    return total / np.maximum(counts, 1).astype(x.dtype)


class GoldScorer:
    """Deterministic, batched light-show judge (see module docstring for the criteria)."""

    def __init__(
        self,
        num_devices: int = 4,
        bands: list[tuple[int, int]] | None = None,
        weights: dict[str, float] | None = None,
        cache_size: int = 64,
        **config,
    ) -> None:
        version = config.get("version", "gold-v1")
        if version not in GOLD_VERSIONS:
            raise ValueError(f"unknown gold version {version!r}; known: {GOLD_VERSIONS}")
        config = {**_PRESETS.get(version, {}), **config}  # the preset, under anything passed
        w = dict(DEFAULT_WEIGHTS if version == "gold-v1" else V2_WEIGHTS)
        if weights is not None:
            unknown = set(weights) - set(DEFAULT_WEIGHTS)
            if unknown:
                raise ValueError(f"unknown gold components {sorted(unknown)}; known: {COMPONENTS}")
            w.update({k: float(v) for k, v in weights.items()})
        if any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {w}")
        total = sum(w.values())
        w = {k: v / total for k, v in w.items()}
        self.config = GoldConfig(num_devices=int(num_devices), weights=w, **config)
        self.bands = bands
        if bands is not None and len(bands) != num_devices:
            raise ValueError(f"bands has {len(bands)} entries, expected num_devices={num_devices}")
        self._cache: OrderedDict[str, ClipFeatures] = OrderedDict()
        self._cache_size = int(cache_size)

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.config.weights)

    # -- per-clip features ---------------------------------------------------------------
    def _check_cqt(self, cqt) -> np.ndarray:
        c = _as_numpy(cqt, "cqt")
        if c.ndim != 3 or c.shape[0] != 2:
            raise ValueError(f"cqt must be [2, n_bins, T], got shape {tuple(c.shape)}")
        if c.shape[1] < self.config.num_devices or c.shape[2] < 2:
            raise ValueError(f"cqt [2, n_bins, T] too small: {tuple(c.shape)}")
        if not np.all(np.isfinite(c)):
            raise ValueError("cqt contains NaN or inf")
        if c.min() < -1e-4 or c.max() > 1 + 1e-4:
            raise ValueError(f"cqt values must be in [0, 1], got [{c.min():.3g}, {c.max():.3g}]")
        return np.clip(c, 0.0, 1.0)

    def features(self, cqt) -> ClipFeatures:
        """Per-clip features, cached by the CQT's content."""
        c = self._check_cqt(cqt)
        key = hashlib.blake2b(np.ascontiguousarray(c).tobytes(), digest_size=16).hexdigest()
        key += str(c.shape)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        feats = self._compute_features(c)
        self._cache[key] = feats
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return feats

    def _compute_features(self, c: np.ndarray) -> ClipFeatures:
        cfg = self.config
        n_bins, t_len = c.shape[1], c.shape[2]
        bands = self.bands or device_bands(n_bins, cfg.num_devices)
        mono = c.max(axis=0)  # a sound panned hard left is still heard
        level = self._band_levels(mono, bands)
        flux = np.zeros_like(level)
        padded = np.concatenate([np.zeros((n_bins, 1), np.float32), mono], axis=1)
        diff = np.maximum(np.diff(padded, axis=1), 0.0)  # silence before the clip
        for d, (lo, hi) in enumerate(bands):
            flux[d] = diff[lo:hi].mean(axis=0)
        if not (cfg.band_gain or cfg.loudness_law):  # gold-v1
            gate, ref = self._range(level)
            target = np.clip((level - gate) / (ref - gate), 0.0, 1.0).astype(np.float32)
        else:
            target = self._target_v2(level)
        beat_env = self._beat_envelope(mono, flux)
        if cfg.target_decay_s > 0:  # gold-v3: the level target follows with attack / decay
            target = self._follow(target)
        if cfg.punch_decay_s > 0:  # gold-v2: punches on the onsets are part of the target
            if cfg.punch_source == "onsets":
                picks = [self._pick_onsets(flux[d]) for d in range(cfg.num_devices)]
                strength = flux
            elif cfg.punch_source == "beats":  # gold-v3: the whole rig punches on the beat
                beats = self._beats(flux.sum(axis=0), target)
                picks = [beats] * cfg.num_devices
                strength = np.broadcast_to(flux.sum(axis=0), flux.shape)
            elif cfg.punch_source == "rig-onsets":  # gold-v3: the whole rig on the clip's onsets
                total = flux.sum(axis=0)
                picks = [self._pick_onsets(total)] * cfg.num_devices
                strength = np.broadcast_to(total, flux.shape)
            else:
                raise ValueError(f"punch_source must be 'onsets', 'beats' or 'rig-onsets', got {cfg.punch_source!r}")
            target = self._punch(target, strength, picks)
        beats = self._beats(beat_env, target)
        if cfg.beat_punch_level > 0:  # gold-v5: the whole rig pulses on the beat
            target = self._beat_punch(target, beat_env, beats)

        onset_frames, onset_jump = [], []
        near = np.zeros_like(level)
        n_after, n_before = cfg.frames(3), cfg.frames(2)
        sigma = cfg.sigma_frames
        for d in range(cfg.num_devices):
            frames = self._pick_onsets(flux[d])
            y = target[d]
            keep, jumps = [], []
            for o in frames:
                after = y[o : min(t_len, o + n_after)].max()
                before = y[max(0, o - n_before) : o].min() if o > 0 else 0.0
                if after >= cfg.onset_min_target:
                    keep.append(o)
                    jumps.append(max(cfg.min_jump, after - before))
            onset_frames.append(np.asarray(keep, dtype=np.int64))
            onset_jump.append(np.asarray(jumps, dtype=np.float32))
            if keep:
                tt = np.arange(t_len)[:, None] - np.asarray(keep)[None, :]
                g = np.exp(-(tt.astype(np.float32) ** 2) / (2 * sigma**2))
                near[d] = g.max(axis=1)
        near_beat = np.zeros(t_len, dtype=np.float32)
        if beats.size:
            tt = (np.arange(t_len)[:, None] - beats[None, :]).astype(np.float32)
            near_beat = np.exp(-(tt**2) / (2 * sigma**2)).max(axis=1)
            near_beat = np.maximum(near_beat, near.max(axis=0))  # off-beat onsets are fine too
        quiet = cfg.silence_level
        silent = target <= quiet
        for k in range(1, cfg.frames(cfg.silence_release) + 1):  # time to fade after a note
            silent &= _shift(target, k, fill=0.0) <= quiet
        return ClipFeatures(
            level=level,
            target=target,
            flux=flux,
            onset_frames=onset_frames,
            onset_jump=onset_jump,
            near_onset=near,
            beat_frames=beats,
            near_beat=near_beat,
            silent=silent,
            target_std=target.std(axis=1),
        )

    def _band_levels(self, mono: np.ndarray, bands) -> np.ndarray:
        """``[D, T]`` band levels of a mono CQT ``[n_bins, T]``: the mean of each band's
        ``top_bins`` loudest bins."""
        level = np.zeros((self.config.num_devices, mono.shape[1]), dtype=np.float32)
        for d, (lo, hi) in enumerate(bands):
            band = mono[lo:hi]
            k = min(self.config.top_bins, band.shape[0])
            level[d] = np.sort(band, axis=0)[-k:].mean(axis=0)
        return level

    def _range(self, level: np.ndarray):
        """``(floor, ref)`` of the target's auto-gain over ``level [D, T]``, as the target
        uses them (scalars for a per-clip gain, ``[D, 1]`` per band)."""
        cfg = self.config
        if not (cfg.band_gain or cfg.loudness_law):  # gold-v1: one ref per clip, the gate
            return cfg.gate, max(float(np.percentile(level, cfg.ref_percentile)),
                                 cfg.gate + cfg.min_ref_span)
        axis = 1 if cfg.band_gain else None
        ref = np.maximum(np.percentile(level, cfg.ref_percentile, axis=axis, keepdims=axis is not None),
                         cfg.gate + cfg.min_ref_span)
        gate = cfg.gate
        if cfg.floor_percentile > 0:  # gold-v3: the band's own floor is dark, not only the gate
            gate = np.maximum(np.percentile(level, cfg.floor_percentile, axis=axis,
                                            keepdims=axis is not None), cfg.gate)
            ref = np.maximum(ref, gate + cfg.min_ref_span)
        return gate, ref

    def band_levels(self, cqt) -> np.ndarray:
        """``[num_devices, T]`` level of each device's band in a CQT ``[2, n_bins, T]`` (the
        louder channel; the mean of the band's ``top_bins`` loudest bins): what the level
        target follows.

        Example:
            >>> g = GoldScorer(version="gold-v5")
            >>> g.band_levels(np.full((2, 84, 10), 0.5, np.float32)).shape
            (4, 10)
        """
        c = self._check_cqt(cqt)
        return self._band_levels(c.max(axis=0), self.bands or device_bands(c.shape[1],
                                                                          self.config.num_devices))

    def band_range(self, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(floor, ref)``, each ``[num_devices]``: the band levels the target maps to dark and
        to full over ``level [D, T]`` (its auto-gain: per band for gold-v2 on, per clip for
        gold-v1). :mod:`cqtml_env.show.song_gain` takes them over a window and over a song."""
        lv = np.asarray(level, np.float32)
        if lv.ndim != 2 or lv.shape[0] != self.config.num_devices or lv.shape[1] < 1:
            raise ValueError(f"level must be [{self.config.num_devices}, T>=1], got {lv.shape}")
        gate, ref = self._range(lv)
        d = self.config.num_devices
        return (np.broadcast_to(np.asarray(gate, np.float64).reshape(-1), (d,)).copy(),
                np.broadcast_to(np.asarray(ref, np.float64).reshape(-1), (d,)).copy())

    def _target_v2(self, level: np.ndarray) -> np.ndarray:
        """gold-v2 level target: gate, per-band (or per-clip) auto-gain, loudness law.

        With ``loudness_law`` brightness follows perceived loudness (Stevens: it halves every
        10 dB; the CQT's 0..1 spans 80 dB), rescaled so that the gate is 0 and the ref 1.
        """
        cfg = self.config
        gate, ref = self._range(level)
        if cfg.loudness_law:
            db_per_unit = 80.0
            lin = 2.0 ** ((level - ref) * db_per_unit / 10.0)
            at_gate = 2.0 ** ((gate - ref) * db_per_unit / 10.0)
            y = (lin - at_gate) / (1.0 - at_gate)
        else:
            y = (level - gate) / (ref - gate)
        return np.clip(np.where(level > gate, y, 0.0), 0.0, 1.0).astype(np.float32)

    def _punch(self, target: np.ndarray, flux: np.ndarray, onsets: list[np.ndarray]) -> np.ndarray:
        """gold-v2: a full flash on the band's strongest onsets, at most one per
        ``punch_min_gap_s`` (so the target itself never strobes), decaying exponentially."""
        cfg = self.config
        gap = max(1, int(round(cfg.punch_min_gap_s * cfg.frame_rate)))
        keep = np.exp(-1.0 / (cfg.punch_decay_s * cfg.frame_rate))
        out = target.copy()
        for d, frames in enumerate(onsets):
            if frames.size == 0:
                continue
            chosen: list[int] = []  # strongest first, then drop those too close to a chosen one
            for o in frames[np.argsort(-flux[d, frames], kind="stable")]:
                if all(abs(int(o) - c) >= gap for c in chosen):
                    chosen.append(int(o))
            env = np.zeros(target.shape[1], np.float32)
            env[chosen] = cfg.punch_level
            if cfg.punch_scale_power > 0:  # gold-v3: a stronger onset, a bigger punch
                strength = flux[d, chosen].astype(np.float32)
                rel = strength / max(float(strength.max()), 1e-9)
                env[chosen] *= rel ** np.float32(cfg.punch_scale_power)
            _hold_decay(env, keep)
            if cfg.punch_mix:  # gold-v3: the bed leaves room, every punch rises by punch_level
                out[d] = (1.0 - cfg.punch_level) * out[d] + env
            else:
                out[d] = np.maximum(out[d], env)
        return out

    def _beat_envelope(self, mono: np.ndarray, flux: np.ndarray) -> np.ndarray:
        """The onset envelope the clip's beats are tracked on.

        gold-v1..v4: the band fluxes summed, which start from silence before the clip, so the
        first frame is the clip's largest "onset" and misleads the beat tracker. With
        ``beat_flux_lag`` k > 0 (gold-v5): the mean over all CQT bins of the rise over the last
        k frames (librosa's onset strength with ``lag=k``), zero on the first frame.
        """
        lag = int(self.config.beat_flux_lag)
        if lag < 0:
            raise ValueError(f"beat_flux_lag must be >= 0, got {lag}")
        if lag == 0:
            return flux.sum(axis=0)
        prev = np.concatenate([np.repeat(mono[:, :1], lag, axis=1), mono[:, :-lag]], axis=1)
        return np.maximum(mono - prev[:, : mono.shape[1]], 0.0).mean(axis=0)

    def _beat_punch(self, target: np.ndarray, env: np.ndarray, beats: np.ndarray) -> np.ndarray:
        """gold-v5: every device adds ``beat_punch_level * (env / strongest)^power`` on each
        beat, decaying like the band punches (``punch_decay_s``); clipped to 1."""
        cfg = self.config
        if beats.size == 0:
            return target
        strength = env[beats].astype(np.float32)
        pulse = np.zeros(target.shape[1], np.float32)
        pulse[beats] = (strength / max(float(strength.max()), 1e-9)) ** np.float32(cfg.beat_punch_power)
        _hold_decay(pulse, np.float32(np.exp(-1.0 / (max(cfg.punch_decay_s, 1e-3) * cfg.frame_rate))))
        return np.clip(target + np.float32(cfg.beat_punch_level) * pulse[None], 0.0, 1.0).astype(np.float32)

    def _follow(self, target: np.ndarray) -> np.ndarray:
        """gold-v3: a one-pole follower of the level target (WLED / LedFx style): rises with
        ``target_attack_s``, falls with ``target_decay_s``, so the target does not flicker with
        frame-to-frame jitter of the band level. It starts dark before the clip, or (gold-v4,
        ``follow_from_first``) at the first frame's level: an excerpt does not switch on."""
        cfg = self.config

        def coef(tau: float) -> float:
            return 1.0 if tau <= 0 else float(1.0 - np.exp(-1.0 / (tau * cfg.frame_rate)))

        up, down = coef(cfg.target_attack_s), coef(cfg.target_decay_s)
        out = np.empty_like(target)
        prev = np.zeros(target.shape[0], np.float32)
        if cfg.follow_from_first:
            prev = target[:, 0].astype(np.float32)
        for t in range(target.shape[1]):
            x = target[:, t]
            prev = prev + np.where(x > prev, up, down) * (x - prev)
            out[:, t] = prev
        return out.astype(np.float32)

    def _pick_onsets(self, env: np.ndarray) -> np.ndarray:
        """Peaks of the band flux: local max over +-3 frames, above the local mean + delta."""
        t_len = env.shape[0]
        if t_len < 3 or env.max() < self.config.onset_delta:
            return np.zeros(0, dtype=np.int64)
        import librosa

        n = self.config.frames
        peaks = librosa.util.peak_pick(
            env.astype(np.float64),
            pre_max=n(3),
            post_max=n(4),
            pre_avg=n(10),
            post_avg=n(11),
            delta=self.config.onset_delta,
            wait=n(3),
        )
        return np.asarray(peaks, dtype=np.int64)

    def _beats(self, env: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Clip-level beats on the summed flux; none in (near) silence or on short clips."""
        if env.shape[0] < 4 * self.config.frame_rate / 2 or env.max() < self.config.onset_delta:
            return np.zeros(0, dtype=np.int64)
        import librosa

        try:
            _, beats = librosa.beat.beat_track(  # only sr / hop (the frame rate) matters here
                onset_envelope=env.astype(np.float64),
                sr=SAMPLE_RATE,
                hop_length=max(1, int(round(SAMPLE_RATE / self.config.frame_rate))),
                units="frames",
            )
        except Exception:  # pragma: no cover - librosa edge cases on odd envelopes
            return np.zeros(0, dtype=np.int64)
        beats = np.asarray(beats, dtype=np.int64)
        audible = target.max(axis=0) > 0.0
        return beats[audible[np.clip(beats, 0, env.shape[0] - 1)]]

    # -- scoring -------------------------------------------------------------------------
    def _check_actions(self, actions, t_len: int) -> tuple[np.ndarray, bool]:
        a = _as_numpy(actions, "actions")
        single = a.ndim == 2
        if single:
            a = a[None]
        d = self.config.num_devices
        if a.ndim != 3 or a.shape[1] != d or a.shape[2] != t_len:
            raise ValueError(
                f"actions must be [N, {d}, {t_len}] or [{d}, {t_len}] (devices, frames of the "
                f"clip), got shape {tuple(np.shape(actions))}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError("actions contain NaN or inf")
        if a.size and (a.min() < -1e-4 or a.max() > 1 + 1e-4):
            raise ValueError(f"actions must be in [0, 1], got [{a.min():.3g}, {a.max():.3g}]")
        return np.clip(a, 0.0, 1.0), single

    def score_components(self, cqt, actions, features: ClipFeatures | None = None) -> dict:
        """Named components, each ``[N, D]`` in [0, 1] (``[D]`` for a single action)."""
        f = features if features is not None else self.features(cqt)
        a, single = self._check_actions(actions, f.target.shape[1])
        out = self._components(a, [f], None)
        if single:
            out = {k: v[0] for k, v in out.items()}
        return out

    def score(self, cqt, actions, features: ClipFeatures | None = None) -> np.ndarray:
        """Scores ``[N]`` in [0, 1] (a float for a single ``[D, T]`` action)."""
        f = features if features is not None else self.features(cqt)
        a, single = self._check_actions(actions, f.target.shape[1])
        total = self.combine(self._components(a, [f], None))
        return float(total[0]) if single else total

    def score_components_batch(
        self, cqts=None, actions=None, features: Sequence[ClipFeatures] | None = None
    ) -> dict[str, np.ndarray]:
        """Components ``[B, D]`` of B (clip, action) pairs, row ``b`` = ``actions[b]`` on clip b.

        ``cqts`` is ``[B, 2, F, T]`` (or a sequence of B ``[2, F, T]``), or pass ``features``
        instead: B :class:`ClipFeatures`, one per row (pass the same object for rows on the
        same clip). Equal to :meth:`score_components` row by row, but every clip is scored in
        one vectorised pass (one transition loop for all B actions).
        """
        if features is None:
            if cqts is None:
                raise ValueError("pass cqts [B, 2, F, T] or features (one ClipFeatures per row)")
            features = [self.features(c) for c in cqts]
        elif cqts is not None:
            raise ValueError("pass either cqts or features, not both")
        features = list(features)
        if not features:
            raise ValueError("need at least one row (features/cqts are empty)")
        slot: dict[int, int] = {}
        uniq: list[ClipFeatures] = []
        inv = np.empty(len(features), dtype=np.int64)
        for i, f in enumerate(features):
            k = slot.get(id(f))
            if k is None:
                k = slot[id(f)] = len(uniq)
                uniq.append(f)
            inv[i] = k
        t_len = uniq[0].target.shape[1]
        if any(f.target.shape != uniq[0].target.shape for f in uniq):
            raise ValueError("all clips of a batch must have the same [D, T] (num_devices, frames)")
        a, single = self._check_actions(actions, t_len)
        if single or a.shape[0] != len(features):
            raise ValueError(
                f"actions must be [B, D, T] with B = {len(features)} (one action per clip row), "
                f"got shape {tuple(np.shape(actions))}"
            )
        return self._components(a, uniq, None if len(uniq) == 1 else inv)

    def score_batch(
        self, cqts=None, actions=None, features: Sequence[ClipFeatures] | None = None
    ) -> np.ndarray:
        """Scores ``[B]`` of B (clip, action) pairs (see :meth:`score_components_batch`)."""
        return self.combine(self.score_components_batch(cqts, actions, features))

    # -- reward protocol (cqtml_env.reward.protocol) -------------------------------------
    def prepare(self, cqt) -> ClipFeatures:
        """One clip's features (:meth:`features`), for :meth:`explain_prepared`."""
        return self.features(cqt)

    def explain_prepared(
        self, states: Sequence[ClipFeatures], actions
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Scores ``[B]`` and components ``[B, D]`` of actions in C groups over ``states``."""
        b, c = len(actions), len(states)
        if c < 1 or b % c:
            raise ValueError(f"{b} actions do not split into groups over {c} prepared clips")
        rows = [f for f in states for _ in range(b // c)]
        comps = self.score_components_batch(actions=actions, features=rows)
        return self.combine(comps), comps

    def score_prepared(self, states: Sequence[ClipFeatures], actions) -> np.ndarray:
        return self.explain_prepared(states, actions)[0]

    def state_version(self) -> None:
        return None  # features depend on the clip and the fixed config only

    def combine(self, comps: dict[str, np.ndarray]) -> np.ndarray:
        """Weighted sum of components, then the mean over devices."""
        w = self.config.weights
        total = sum(w[k] * comps[k] for k in COMPONENTS)
        return np.asarray(total, dtype=np.float64).mean(axis=-1)

    def _components(
        self, a: np.ndarray, feats: list[ClipFeatures], inv: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        """Components ``[N, D]`` of actions ``a [N, D, T]``; row n is on clip ``feats[inv[n]]``
        (``inv`` None: all rows on ``feats[0]``). Per-clip quantities are stacked ``[U, ...]``
        and gathered per row, so every step below is one numpy pass over all N rows."""
        cfg = self.config
        n, d_count, t_len = a.shape
        out: dict[str, np.ndarray] = {}

        # band following: correlation and frame-wise level match
        yu = np.stack([f.target for f in feats])  # [U, D, T]
        ymu = yu - yu.mean(axis=2, keepdims=True)
        y, ym = _rows(yu, inv), _rows(ymu, inv)
        sy = _rows(np.sqrt((ymu**2).mean(axis=2)), inv)  # [N or 1, D]
        am = a - a.mean(axis=2, keepdims=True)
        sa = np.sqrt((am**2).mean(axis=2))
        cov = (am * ym).mean(axis=2)
        ok = (sa > 1e-3) & (sy > 1e-3)
        corr = np.where(ok, cov / np.maximum(sa * sy, 1e-12), 0.0)
        out["corr"] = np.clip(corr, 0.0, 1.0)
        out["level"] = 1.0 - np.abs(a - y).mean(axis=2)

        # onset response (recall of band onsets, precision of the action's rise events)
        r = rise(a)  # [N, D, T]
        k0, k1 = cfg.window_frames
        offsets = np.arange(k0, k1 + 1)
        k_n = len(offsets)
        gk = np.exp(-(offsets.astype(np.float32) ** 2) / (2 * cfg.sigma_frames**2))
        r_prev = _shift(r, 1, fill=-1.0)
        r_next = _shift(r, -1, fill=-1.0)
        events = (r >= cfg.rise_event) & (r >= r_prev) & (r > r_next)
        n_events = events.sum(axis=2)
        near = _rows(np.stack([f.near_onset for f in feats]), inv)
        precision = np.where(
            n_events > 0, (events * near).sum(axis=2) / np.maximum(n_events, 1), 1.0
        )
        idx, valid, jump, counts = _onset_table(
            [f.onset_frames for f in feats], [f.onset_jump for f in feats], offsets, t_len
        )
        o_n = jump.shape[2]
        at = np.take_along_axis(
            r, np.broadcast_to(_rows(idx, inv), (n, d_count, o_n * k_n)), axis=2
        )
        ratio = np.clip(at.reshape(n, d_count, o_n, k_n) / _rows(jump, inv)[..., None], 0.0, 1.0)
        hit = (ratio * (gk * _rows(valid, inv))).max(axis=3)  # [N, D, O]
        cnt = _rows(counts, inv)
        recall = _mean_of_first(hit, cnt)
        f_onset = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
        out["onset"] = np.where(cnt > 0, f_onset, precision)

        # beat response: the whole rig (mean over devices) brightens on the clip's beats
        has_beats = np.array([f.beat_frames.size > 0 for f in feats])
        if has_beats.any():
            m = rise(a.mean(axis=1))  # [N, T]
            thr = cfg.rise_event / 2
            m_prev = _shift(m, 1, fill=-1.0)
            m_next = _shift(m, -1, fill=-1.0)
            ev = (m >= thr) & (m >= m_prev) & (m > m_next)
            n_ev = ev.sum(axis=1)
            near_beat = _rows(np.stack([f.near_beat for f in feats]), inv)
            bp = np.where(n_ev > 0, (ev * near_beat).sum(axis=1) / np.maximum(n_ev, 1), 1.0)
            b_idx, _, b_wt, b_counts = _onset_table(  # beats: one group per clip
                [[f.beat_frames] for f in feats],
                [[np.ones(f.beat_frames.size, np.float32)] for f in feats],
                offsets,
                t_len,
            )
            b_n = b_wt.shape[2]
            at = np.take_along_axis(
                m, np.broadcast_to(_rows(b_idx[:, 0], inv), (n, b_n * k_n)), axis=1
            )
            hit = (np.clip(at.reshape(n, b_n, k_n) / thr, 0, 1) * gk).max(axis=2)  # [N, B]
            br = _mean_of_first(hit, _rows(b_counts[:, 0], inv))
            beat = 2 * bp * br / np.maximum(bp + br, 1e-9)
            beat = np.where(_rows(has_beats, inv), beat, 1.0)
            beat = np.repeat(np.broadcast_to(beat, (n,))[:, None], d_count, axis=1)
        else:
            beat = np.ones((n, d_count))
        out["beat"] = beat

        # flicker safety: flashes (pairs of opposing >= swing transitions) per 1-s window
        # frame-major [T, N*D] throughout: contiguous rows, and the mean over frames below
        # sums in the same order as it always has (scores stay bit-identical)
        trans = _transition_events_by_frame(a, cfg.flash_swing)
        win = max(1, int(round(cfg.frame_rate)))
        csum = np.zeros((t_len + 1, n * d_count), np.int32)  # transitions before each frame
        if n * d_count < _MANY_SEQUENCES:
            np.cumsum(trans, axis=0, out=csum[1:])
        else:  # row by row: numpy's cumsum along axis 0 is ~8x slower over 1024 sequences
            for t in range(t_len):
                np.add(csum[t], trans[t], out=csum[t + 1])
        half = win // 2
        lo = np.clip(np.arange(t_len) - half, 0, t_len)
        hi = np.clip(lo + win, 0, t_len)
        in_window = (csum[hi] - csum[lo]).astype(np.float32) / 2.0
        flashes = in_window.reshape(t_len, n, d_count).transpose(1, 2, 0)  # [N, D, T] around each frame
        lim = cfg.max_flashes_per_s
        excess = np.clip((flashes - lim) / lim, 0.0, 1.0)
        out["flicker"] = 1.0 - excess.mean(axis=2)

        # darkness in silence
        silent_u = np.stack([f.silent for f in feats])  # [U, D, T]
        n_silent = _rows(silent_u.sum(axis=2), inv)  # [N or 1, D]
        lit = (a * _rows(silent_u, inv)).sum(axis=2) / np.maximum(n_silent, 1)
        out["dark"] = np.where(n_silent > 0, 1.0 - lit, 1.0)

        # use of the dynamic range the band has
        floor = cfg.range_floor
        sy_b = np.broadcast_to(sy, sa.shape)
        ratio = np.minimum(sa, sy_b) / np.maximum(np.maximum(sa, sy_b), 1e-9)
        flat = sy_b < floor  # a flat band wants a flat light
        out["range"] = np.where(flat, 1.0 - np.clip(sa / 0.1, 0.0, 1.0), ratio)
        return {
            k: np.ascontiguousarray(np.broadcast_to(v, (n, d_count)), dtype=np.float64)
            for k, v in out.items()
        }


__all__ = [
    "COMPONENTS",
    "DEFAULT_WEIGHTS",
    "GOLD_V2",
    "GOLD_V3",
    "GOLD_V4",
    "GOLD_V5",
    "GOLD_V6",
    "GOLD_V7",
    "GOLD_VERSIONS",
    "V2_WEIGHTS",
    "ClipFeatures",
    "GoldConfig",
    "GoldScorer",
    "count_transitions",
    "device_bands",
    "rise",
]
