"""Untrained baselines behind the same :class:`PolicyModel` protocol.

- :class:`BandFollowPolicy`: what music-reactive lighting does today (LedFx / WLED style):
  band energy per device, per-clip normalisation, gain, noise gate, fast attack / slow decay
  smoothing, optional beat flash. Deterministic; the bar a trained policy must beat.
- :class:`RandomPolicy`: uniform over the ``K`` levels; the floor.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from cqtml_policy.categorical import CategoricalPolicy
from cqtml_policy.contract import DEFAULT_FRAME_RATE, device_bands

FRAME_RATE = DEFAULT_FRAME_RATE  # the contract's default CQT frame rate (pass the real one)
band_slices = device_bands  # the contract's device bands (kept under the old name)


def band_energy(cqt: torch.Tensor, num_devices: int) -> torch.Tensor:
    """Mean log-magnitude per device band over both channels: ``[B, C, F, T]`` -> ``[B, D, T]``."""
    n_bins = cqt.shape[-2]
    if n_bins < num_devices:
        raise ValueError(
            f"need at least one CQT bin per device: {n_bins} bins < {num_devices} devices"
        )
    per_bin = cqt.mean(dim=1)  # [B, F, T]
    return torch.stack(
        [per_bin[:, lo:hi].mean(dim=1) for lo, hi in band_slices(n_bins, num_devices)], dim=1
    )


def smoothing_coefficient(time_s: float, frame_rate: float = FRAME_RATE) -> float:
    """One-pole smoothing step per frame that covers 90 % of a step in ``time_s`` (0 -> instant).

    90 % is the usual envelope-follower definition of attack/release time, i.e. a time
    constant of ``time_s / ln 10``.
    """
    if time_s <= 0:
        return 1.0
    return 1.0 - math.exp(-math.log(10.0) / (time_s * frame_rate))


def attack_decay(x: torch.Tensor, attack: float, decay: float) -> torch.Tensor:
    """Asymmetric one-pole follower over the last axis: rises with ``attack``, falls with ``decay``."""
    out = torch.empty_like(x)
    y = x[..., 0]
    out[..., 0] = y
    for t in range(1, x.shape[-1]):
        target = x[..., t]
        step = torch.where(target > y, attack, decay)
        y = y + step * (target - y)
        out[..., t] = y
    return out


def onset_strength(cqt: torch.Tensor) -> torch.Tensor:
    """Spectral flux ``[B, T]``: mean positive change of the log-magnitude across bins."""
    mono = cqt.mean(dim=1)
    flux = F.relu(mono[..., 1:] - mono[..., :-1]).mean(dim=1)
    return F.pad(flux, (1, 0))


def pick_beats(flux: torch.Tensor, threshold: float, min_gap: int) -> torch.Tensor:
    """Boolean ``[B, T]``: local flux peaks above ``threshold`` (relative to the clip), ``min_gap`` apart."""
    b, t = flux.shape
    scale = torch.quantile(flux, 0.95, dim=-1, keepdim=True).clamp_min(1e-4)
    rel = flux / scale
    peak = (rel >= threshold) & (flux >= F.max_pool1d(flux[:, None], 5, 1, 2)[:, 0])
    beats = torch.zeros_like(peak)
    for i in range(b):
        last = -min_gap
        for j in torch.nonzero(peak[i]).flatten().tolist():
            if j - last >= min_gap:
                beats[i, j] = True
                last = j
    return beats


class BandFollowPolicy(CategoricalPolicy):
    """Band follower: device ``d`` lights with the energy of the ``d``-th band (CONTRACT.md).

    Per device and clip: energy ``e`` (mean log-magnitude of the band, both channels) is
    normalised robustly, ``x = gain · (e − floor) / max(ceil − floor, min_range)`` with
    ``floor = max(quantile(e, floor_quantile), noise_floor)`` and ``ceil = quantile(e,
    ceil_quantile)``, so activations use the full range on loud and quiet clips alike while
    silence (below ``noise_floor`` on the absolute CQT scale) stays dark. Values below
    ``gate`` are cut to 0, then a one-pole follower rises with ``attack_s`` and falls with
    ``decay_s`` (WLED: 50 ms / 300 ms). With ``beat_flash > 0`` detected onsets (at most
    ``max_flashes_per_s``, photosensitivity-safe) add a flash to every device that decays
    with the same follower.

    Acts deterministically (every sample is the same greedy action). Its log-probabilities
    are those of a near-one-hot categorical, ``(1 − ε)·onehot + ε/K``, so the protocol holds.
    """

    model_type = "band-follow"
    deterministic = True

    def __init__(
        self,
        num_devices: int = 4,
        distribution_size: int = 32,
        gain: float = 1.0,
        noise_floor: float = 0.15,
        floor_quantile: float = 0.05,
        ceil_quantile: float = 0.98,
        min_range: float = 0.15,
        gate: float = 0.05,
        attack_s: float = 0.05,
        decay_s: float = 0.3,
        beat_flash: float = 0.2,
        beat_threshold: float = 0.6,
        max_flashes_per_s: float = 3.0,
        frame_rate: float = FRAME_RATE,
        epsilon: float = 1e-4,
    ) -> None:
        super().__init__(num_devices, distribution_size)
        if not 0 <= floor_quantile < ceil_quantile <= 1:
            raise ValueError(
                f"need 0 <= floor_quantile < ceil_quantile <= 1, got {floor_quantile}, {ceil_quantile}"
            )
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
        if min_range <= 0 or frame_rate <= 0 or max_flashes_per_s <= 0:
            raise ValueError("min_range, frame_rate and max_flashes_per_s must be > 0")
        self.settings = dict(
            gain=float(gain),
            noise_floor=float(noise_floor),
            floor_quantile=float(floor_quantile),
            ceil_quantile=float(ceil_quantile),
            min_range=float(min_range),
            gate=float(gate),
            attack_s=float(attack_s),
            decay_s=float(decay_s),
            beat_flash=float(beat_flash),
            beat_threshold=float(beat_threshold),
            max_flashes_per_s=float(max_flashes_per_s),
            frame_rate=float(frame_rate),
            epsilon=float(epsilon),
        )

    def activations(self, states: torch.Tensor) -> torch.Tensor:
        """Continuous activations ``[B, D, T]`` in [0, 1] (before quantisation to ``K`` levels)."""
        s = self.settings
        energy = band_energy(states.float(), self.num_devices)  # [B, D, T]
        floor = torch.quantile(energy, s["floor_quantile"], dim=-1, keepdim=True).clamp_min(
            s["noise_floor"]
        )
        ceil = torch.quantile(energy, s["ceil_quantile"], dim=-1, keepdim=True)
        x = s["gain"] * (energy - floor) / (ceil - floor).clamp_min(s["min_range"])
        x = torch.where(x < s["gate"], torch.zeros_like(x), x).clamp(0.0, 1.0)
        if s["beat_flash"] > 0:
            min_gap = max(1, math.ceil(s["frame_rate"] / s["max_flashes_per_s"]))
            beats = pick_beats(onset_strength(states.float()), s["beat_threshold"], min_gap)
            x = (x + s["beat_flash"] * beats[:, None].float()).clamp(0.0, 1.0)
        attack = smoothing_coefficient(s["attack_s"], s["frame_rate"])
        decay = smoothing_coefficient(s["decay_s"], s["frame_rate"])
        return attack_decay(x, attack, decay).clamp(0.0, 1.0)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Near-one-hot log-probabilities ``[B, D, T, K]`` around the band-follow level."""
        k = self.distribution_size
        index = torch.round(self.activations(states) * (k - 1)).long()
        eps = self.settings["epsilon"]
        probs = F.one_hot(index, k).float() * (1.0 - eps) + eps / k
        return probs.log()

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.settings}


class RandomPolicy(CategoricalPolicy):
    """Uniform over the ``K`` levels, independently per device and frame (no parameters).

    ``seed`` fixes its own generator so runs are reproducible without touching torch's
    global RNG (an explicit ``generator=`` still wins).
    """

    model_type = "random"

    def __init__(
        self, num_devices: int = 4, distribution_size: int = 32, seed: int | None = None
    ) -> None:
        super().__init__(num_devices, distribution_size)
        self.seed = seed
        self._generator: torch.Generator | None = None
        if seed is not None:
            self._generator = torch.Generator().manual_seed(int(seed))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        b, t = states.shape[0], states.shape[-1]
        k = self.distribution_size
        return torch.full((b, self.num_devices, t, k), -math.log(k), device=states.device)

    def generate_actions(
        self, states: Any, num_actions_per_state: int = 1, temperature: float = 1.0, **kwargs: Any
    ):
        if (
            kwargs.get("generator") is None
            and self._generator is not None
            and self.device.type == "cpu"
        ):
            kwargs["generator"] = self._generator
        return super().generate_actions(states, num_actions_per_state, temperature, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}
