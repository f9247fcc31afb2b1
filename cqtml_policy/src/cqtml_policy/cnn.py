"""``TemporalCNNModel``: a small, fast conv policy with the same per-frame head as the ViT:
frequency convs per frame, then dilated temporal convs and a clip-context FiLM (0.1's
``VanillaCNNModel``, a deprecated alias until 0.3).

Meant for comparisons, fast tests and GRPO on a CPU. Time is never downsampled: every frame
keeps its own feature, so onsets land on the right frame.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cqtml_policy._deprecated import alias_getattr
from cqtml_policy.categorical import CategoricalPolicy, resolve_device
from cqtml_policy.heads import LogProbabilityHead
from cqtml_policy.inputs import (
    GAIN_FLOOR,
    BandFeatures,  # noqa: F401  (its old import path: cqtml_policy.cnn)
    CurveFeatures,
    with_relative,
)


class FrequencyStack(nn.Module):
    """Convs that shrink frequency (stride 2) but keep time, then pool to ``bands`` rows.

    A frequency-coordinate channel is appended to the input (CoordConv) so filters know
    which register they look at; the pooled rows are then flattened per frame, giving a
    band-aware feature vector for each frame whatever the bin count.
    """

    def __init__(self, in_channels: int = 2, channels: int = 32, bands: int = 8) -> None:
        super().__init__()
        self.bands = int(bands)
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels + 1, channels // 2, (7, 3), stride=(2, 1), padding=(3, 1)),
            nn.GELU(),
            nn.Conv2d(channels // 2, channels, (5, 3), stride=(2, 1), padding=(2, 1)),
            nn.GELU(),
            nn.Conv2d(channels, channels, (3, 3), stride=(1, 1), padding=(1, 1)),
            nn.GELU(),
        )
        self.out_features = channels * self.bands
        self.channels_last_inference = True  # see forward; bench_policy.py turns it off

    def forward(self, cqt: torch.Tensor) -> torch.Tensor:
        b, _, f, t = cqt.shape
        coord = torch.linspace(0.0, 1.0, f, device=cqt.device, dtype=cqt.dtype).view(1, 1, f, 1)
        x = torch.cat([cqt, coord.expand(b, 1, f, t)], dim=1)
        if self.channels_last_inference and not torch.is_grad_enabled() and x.device.type == "cpu":
            # inference (rollouts, whole-song shows): oneDNN's channels-last convolutions give
            # the same numbers ~1.7x faster on CPU (bench_policy.py); with gradients they are
            # slower, so training keeps the default layout
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.convs(x)
        x = F.adaptive_avg_pool2d(x, (self.bands, t))
        return x.flatten(1, 2)  # [B, channels * bands, T]


class FrameNorm(nn.LayerNorm):
    """LayerNorm over channels of each frame of ``[B, C, T]``: no statistics across time,
    so a frame's output never depends on distant frames or on the clip length."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class TemporalBlock(nn.Module):
    """Residual dilated conv over time: context of ``±dilation·(kernel//2)`` frames."""

    def __init__(self, channels: int, kernel_size: int = 5, dilation: int = 1) -> None:
        super().__init__()
        pad = dilation * (kernel_size // 2)
        self.norm = FrameNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=pad, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(F.gelu(self.conv(self.norm(x))))


class ClipContext(nn.Module):
    """Clip-level statistics of the frame features (mean and max over time) -> a per-channel
    scale and shift applied to every frame (FiLM).

    Lighting is relative to the clip: the gold target and every band-follower use per-clip
    auto-gain, which a frame with only local context cannot know. Zero-initialised, so the
    branch starts as the identity.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * channels, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)
        scale, shift = self.proj(stats).chunk(2, dim=1)
        return x * (1 + scale.unsqueeze(-1)) + shift.unsqueeze(-1)


class CNNBackbone(nn.Module):
    """Per-frame features ``[B, hidden, 1, T]``: frequency stack, then temporal context."""

    def __init__(
        self,
        in_channels: int = 2,
        channels: int = 32,
        hidden: int = 64,
        bands: int = 8,
        kernel_size: int = 5,
        dilations: tuple[int, ...] = (1, 2, 4),
        clip_context: bool = True,
        relative_input: bool = True,
        band_features: int = 0,
        pulse_features: bool = False,
        beat_features: bool = False,
        beat_segment: int = 0,
        gain_features: int = 0,
        gain_floor: float = GAIN_FLOOR,
    ) -> None:
        super().__init__()
        self.relative_input = bool(relative_input)
        self.frequency = FrequencyStack(in_channels * (2 if relative_input else 1), channels, bands)
        self.curves = (CurveFeatures(band_features, pulse_features, beat_features, beat_segment,
                                     gain_features, gain_floor)
                       if band_features > 0 or pulse_features or beat_features or gain_features > 0
                       else None)
        extra = self.curves.out_features if self.curves is not None else 0
        self.project = nn.Conv1d(self.frequency.out_features + extra, hidden, 1)
        self.context = ClipContext(hidden) if clip_context else nn.Identity()
        self.temporal = nn.Sequential(*(TemporalBlock(hidden, kernel_size, d) for d in dilations))
        self.hidden = int(hidden)

    def grid_shape(self, n_bins: int, frames: int) -> tuple[int, int, int]:
        """``(C, H, W)`` of the feature grid: one row, one column per frame."""
        return self.hidden, 1, frames

    def forward(self, cqt: torch.Tensor) -> torch.Tensor:
        cqt = cqt.float()
        x = self.frequency(with_relative(cqt) if self.relative_input else cqt)
        if self.curves is not None:
            x = torch.cat([x, self.curves(cqt)], dim=1)
        x = self.temporal(self.context(self.project(x)))
        return x.unsqueeze(2)


class TemporalCNNModel(CategoricalPolicy):
    """Dilated temporal CNN with clip context: CQT ``[B, 2, n_bins, T]`` -> log-probabilities
    ``[B, devices, T, K]`` (registry name ``cnn``; called ``VanillaCNNModel`` in 0.1).

    ~0.1 M parameters; about 1/50 of the ViT's compute. Build it with :meth:`create_model`.
    """

    model_type = "cnn"

    def __init__(
        self,
        cqt_shape: tuple[int, int, int] = (2, 84, 216),
        num_devices: int = 4,
        distribution_size: int = 32,
        channels: int = 32,
        hidden: int = 64,
        bands: int = 8,
        kernel_size: int = 5,
        dilations: tuple[int, ...] = (1, 2, 4),
        clip_context: bool = True,
        relative_input: bool = True,
        band_features: bool = False,
        pulse_features: bool = False,
        beat_features: bool = False,
        gain_features: bool = False,
        gain_floor: float = GAIN_FLOOR,
    ) -> None:
        super().__init__(num_devices, distribution_size)
        shape = tuple(int(s) for s in cqt_shape)
        if len(shape) != 3 or shape[0] < 1 or min(shape) < 1:
            raise ValueError(f"cqt_shape must be (2, n_bins, T), got {tuple(cqt_shape)}")
        self.cqt_shape = shape
        self.in_channels = shape[0]
        self.arch = dict(
            channels=int(channels),
            hidden=int(hidden),
            bands=int(bands),
            kernel_size=int(kernel_size),
            dilations=[int(d) for d in dilations],
            clip_context=bool(clip_context),
            relative_input=bool(relative_input),
        )
        if band_features:  # recorded only when on: configs saved before it load unchanged
            self.arch["band_features"] = True
        if pulse_features:
            self.arch["pulse_features"] = True
        if beat_features:
            self.arch["beat_features"] = True
        if gain_features:
            self.arch["gain_features"] = True
            if float(gain_floor) != GAIN_FLOOR:  # the teacher's floor (gold-v7: 0.5 %)
                self.arch["gain_floor"] = float(gain_floor)
        self.backbone = CNNBackbone(
            self.in_channels, channels, hidden, bands, kernel_size, tuple(dilations), clip_context,
            relative_input, num_devices if band_features else 0, pulse_features, beat_features,
            shape[-1],  # beats are tracked one clip length at a time (BeatFeatures.segment)
            num_devices if gain_features else 0, float(gain_floor),
        )
        self.head = LogProbabilityHead(hidden, num_devices, distribution_size, frames_per_column=1)

    @classmethod
    def create_model(
        cls,
        cqt_shape: tuple[int, int, int],
        num_devices: int = 4,
        distribution_size: int = 32,
        device: str | torch.device = "auto",
        **arch: Any,
    ) -> TemporalCNNModel:
        """Build the policy on ``device`` (``"auto"``: CUDA when present).

        ``arch``: ``channels``, ``hidden``, ``bands``, ``kernel_size``, ``dilations``,
        ``clip_context`` (clip-level statistics modulate every frame; default True),
        ``relative_input`` (add the CQT normalised per clip and bin as input channels; default True),
        ``band_features`` (add :class:`BandFeatures` of each device's band; default False,
        registry name ``cnn-bands``), ``pulse_features`` (add :class:`PulseFeatures`: the
        clip's onset envelope and beat pulse; default False, registry name ``cnn-pulse``),
        ``beat_features`` (add :class:`BeatFeatures`: the clip's tracked beats; default False,
        registry name ``cnn-beat``), ``gain_features`` (add :class:`GainFeatures`: each band's
        level through a per-band auto-gain, and its rise; default False, registry name
        ``cnn-gain``).
        """
        return cls(cqt_shape, num_devices, distribution_size, **arch).to(resolve_device(device))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """``[B, 2, n_bins, T]`` -> log-probabilities ``[B, num_devices, T, K]``."""
        return self.head(self.backbone(states), num_frames=states.shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {
            "cqt_shape": list(self.cqt_shape),
            "num_devices": self.num_devices,
            "distribution_size": self.distribution_size,
            **self.arch,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> TemporalCNNModel:
        return cls.create_model(**{**config, **overrides})

    @classmethod
    def _from_saved(
        cls, config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None, **overrides: Any
    ) -> TemporalCNNModel:
        device = overrides.pop("device", "auto")
        model = cls.from_config(config, device="cpu", **overrides)
        if state_dict is None:
            raise FileNotFoundError("saved TemporalCNNModel has no model.safetensors")
        model.load_state_dict(state_dict)
        return model.to(resolve_device(device))


__getattr__ = alias_getattr(__name__, {"VanillaCNNModel": (__name__, "TemporalCNNModel")})
