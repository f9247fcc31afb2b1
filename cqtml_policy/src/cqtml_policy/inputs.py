"""Input transforms shared by the policies."""

from __future__ import annotations

import torch


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


__all__ = ["clip_relative", "with_relative"]
