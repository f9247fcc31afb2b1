"""The per-frame, per-device output head shared by the ViT and CNN policies."""

from __future__ import annotations

import math

import torch
from torch import nn


class LogProbabilityHead(nn.Module):
    """Feature grid ``[B, C, H, W]`` -> log-probabilities ``[B, num_devices, T, K]``.

    ``H`` indexes frequency (patch rows), ``W`` time (patch columns), each column covering
    ``frames_per_column`` frames. Three steps:

    1. *Band pooling*: each device has a learned query that attends over the frequency rows
       of every column, so device ``d`` can read the bands it follows (rows carry their
       frequency position, e.g. the ViT's position embedding).
    2. *Un-patchify time*: a per-device linear map turns each column's pooled feature into
       ``frames_per_column`` sets of outputs, one per frame of that column — every frame gets
       its own distribution — and the sequence is cropped to exactly ``T`` frames (the
       input's frame count, after the backbone's right-padding).
    3. *Ordinal logits* (``ordinal=True``, default): the levels are ordered, so each frame's
       logits are a discretised Gaussian around a predicted level ``μ`` with a predicted
       width ``σ``, plus free per-level residual logits. A policy-gradient step then moves
       ``μ`` for all levels at once instead of one bin at a time, and the initial policy is
       a soft bump (``init_sigma``) rather than uniform noise. It is still an ordinary
       categorical over the ``K`` levels. ``ordinal=False`` gives plain free logits.
    """

    def __init__(
        self,
        in_features: int,
        num_devices: int = 4,
        distribution_size: int = 32,
        frames_per_column: int = 1,
        ordinal: bool = True,
        init_sigma: float = 0.2,
    ) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.num_devices = int(num_devices)
        self.distribution_size = int(distribution_size)
        self.frames_per_column = int(frames_per_column)
        self.ordinal = bool(ordinal)
        self.outputs_per_frame = self.distribution_size + (2 if self.ordinal else 0)
        out = self.frames_per_column * self.outputs_per_frame
        self.band_queries = nn.Parameter(torch.randn(num_devices, in_features) * 0.02)
        self.norm = nn.LayerNorm(in_features)
        scale = (0.05 if self.ordinal else 0.5) / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.randn(num_devices, in_features, out) * scale)
        bias = torch.zeros(num_devices, self.frames_per_column, self.outputs_per_frame)
        if self.ordinal:
            bias[..., -1] = math.log(init_sigma)  # [..., -2] = 0: the bump starts mid-range
            with torch.no_grad():  # location and width get a stronger input than the residuals
                w = self.weight.view(num_devices, in_features, self.frames_per_column, -1)
                w[..., -2:] *= 10.0  # location/log-width std ~0.5: input-dependent bumps
        self.bias = nn.Parameter(bias.reshape(num_devices, out))
        self.register_buffer(
            "levels", torch.linspace(0.0, 1.0, self.distribution_size), persistent=False
        )

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
        out = torch.einsum("bdwc,dco->bdwo", self.norm(pooled), self.weight) + self.bias[:, None]
        out = out.reshape(b, self.num_devices, total, self.outputs_per_frame)[:, :, :t]
        if self.ordinal:
            k = self.distribution_size
            residual, loc, log_sigma = out[..., :k], out[..., k], out[..., k + 1]
            mean = torch.sigmoid(loc).unsqueeze(-1)
            sigma = log_sigma.clamp(-6.0, 3.0).exp().unsqueeze(-1)
            logits = residual - 0.5 * ((self.levels - mean) / sigma) ** 2
        else:
            logits = out
        return torch.log_softmax(logits, dim=-1)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_devices={self.num_devices}, "
            f"distribution_size={self.distribution_size}, frames_per_column={self.frames_per_column}, "
            f"ordinal={self.ordinal}"
        )
