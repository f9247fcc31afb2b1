"""Input transforms shared by the policies."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cqtml_policy.contract import device_bands


def clip_relative(cqt: torch.Tensor, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """Each bin rescaled by its own clip statistics: ``(x - q_low) / (q_high - q_low)`` over time.

    What every band-follower and the gold target do (per-clip auto-gain): the same music
    recorded hotter, quieter or denser gives the same relative picture.
    """
    q = torch.quantile(cqt, torch.tensor([low, high], device=cqt.device, dtype=cqt.dtype), dim=-1, keepdim=True)
    return ((cqt - q[0]) / (q[1] - q[0]).clamp(min=0.05)).clamp(-1.0, 2.0)


def with_relative(cqt: torch.Tensor) -> torch.Tensor:
    """``[B, C, F, T]`` -> ``[B, 2C, F, T]``: the CQT and its :func:`clip_relative` version."""
    return torch.cat([cqt, clip_relative(cqt)], dim=1)


class BandFeatures(nn.Module):
    """Per-device band curves ``[B, 5·D, T]`` computed from the CQT (no parameters): what the
    gold target and the band-follower are built from, which convolutions over average-pooled
    frequency rows reach only approximately.

    For each contract device band (``device_bands``), on the channel-max (mono) CQT: the band
    level (mean of its ``top_bins`` loudest bins), that level relative to its own clip-level
    ``quantile`` (per-band auto-gain), the relative level through a loudness law
    (``2 ** (8 · rel)``: brightness halves for every 1/8 of the CQT's range below the clip's
    loud level), the band's spectral flux (mean positive difference over its bins) and the
    flux relative to the band's strongest flux in the clip (``sqrt``).
    """

    per_band = 5

    def __init__(self, num_bands: int, top_bins: int = 3, quantile: float = 0.95) -> None:
        super().__init__()
        self.num_bands, self.top_bins, self.quantile = int(num_bands), int(top_bins), float(quantile)
        self.out_features = self.per_band * self.num_bands

    def forward(self, cqt: torch.Tensor) -> torch.Tensor:
        mono = cqt.amax(dim=1)  # [B, F, T]
        diff = F.pad(mono, (1, 0)).diff(dim=-1).clamp(min=0.0)  # silence before the clip
        feats = []
        for lo, hi in device_bands(mono.shape[1], self.num_bands):
            k = min(self.top_bins, hi - lo)
            level = mono[:, lo:hi].topk(k, dim=1).values.mean(dim=1)  # [B, T]
            rel = level - torch.quantile(level, self.quantile, dim=-1, keepdim=True)
            flux = diff[:, lo:hi].mean(dim=1)
            peak = flux.amax(dim=-1, keepdim=True).clamp(min=1e-4)
            feats += [level, rel, torch.exp2(8.0 * rel.clamp(max=0.5)), flux * 10.0,
                      (flux / peak).sqrt()]
        return torch.stack(feats, dim=1)


__all__ = ["BandFeatures", "clip_relative", "with_relative"]
