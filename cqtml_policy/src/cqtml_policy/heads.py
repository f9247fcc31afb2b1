"""The per-frame, per-device output head shared by the ViT and CNN policies."""

from __future__ import annotations

import math

import torch
from torch import nn


class LogProbabilityHead(nn.Module):
    """Feature grid ``[B, C, H, W]`` -> log-probabilities ``[B, num_devices, T, K]``.

    ``H`` indexes frequency (patch rows), ``W`` time (patch columns), each column covering
    ``frames_per_column`` frames. Two steps:

    1. *Band pooling*: each device has a learned query that attends over the frequency rows
       of every column, so device ``d`` can read the bands it follows (rows carry their
       frequency position, e.g. the ViT's position embedding).
    2. *Un-patchify time*: a per-device linear map turns each column's pooled feature into
       ``frames_per_column × K`` logits, reshaped to ``frames_per_column`` frames — every
       frame gets its own distribution, and the sequence is cropped to exactly ``T`` frames
       (the input's frame count, after the backbone's right-padding).
    """

    def __init__(
        self,
        in_features: int,
        num_devices: int = 4,
        distribution_size: int = 32,
        frames_per_column: int = 1,
    ) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.num_devices = int(num_devices)
        self.distribution_size = int(distribution_size)
        self.frames_per_column = int(frames_per_column)
        out = self.frames_per_column * self.distribution_size
        self.band_queries = nn.Parameter(torch.randn(num_devices, in_features) * 0.02)
        self.norm = nn.LayerNorm(in_features)
        self.weight = nn.Parameter(
            torch.randn(num_devices, in_features, out) * (0.5 / math.sqrt(in_features))
        )
        self.bias = nn.Parameter(torch.zeros(num_devices, out))

    def forward(self, features: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        if features.dim() != 4 or features.shape[1] != self.in_features:
            raise ValueError(
                f"head expects features [B, {self.in_features}, H, W], got {tuple(features.shape)}"
            )
        b, c, _, w = features.shape
        total = w * self.frames_per_column
        t = total if num_frames is None else int(num_frames)
        if not 1 <= t <= total:
            raise ValueError(f"num_frames must be in 1..{total} for {w} columns, got {num_frames}")
        scores = torch.einsum("bchw,dc->bdhw", features, self.band_queries) / math.sqrt(c)
        pooled = torch.einsum("bdhw,bchw->bdwc", scores.softmax(dim=2), features)  # [B, D, W, C]
        logits = torch.einsum("bdwc,dco->bdwo", self.norm(pooled), self.weight) + self.bias[:, None]
        logits = logits.reshape(b, self.num_devices, total, self.distribution_size)[:, :, :t]
        return torch.log_softmax(logits, dim=-1)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_devices={self.num_devices}, "
            f"distribution_size={self.distribution_size}, frames_per_column={self.frames_per_column}"
        )
