"""An ensemble of fine-tunes that share a clip encoder, written as ONE :class:`RewardModel`.

K reward models fine-tuned from the same start with the clip encoder (``band_logits``,
``gate``) frozen differ only in their heads. Their heads are stacked side by side into a model
with ``hidden = K * h`` and ``global_hidden = K * g``: the per-frame layer holds every member's
units, the global layer reads each member's own units (block-diagonal), and both output layers
average the members (per-device terms, where the members have them, are stacked the same
way: input terms side by side, read-outs averaged). Its raw score is exactly the mean of the members' raw scores, and it is
an ordinary ``RewardModel`` (safetensors + JSON; ``agents/grpo.py --reward-model DIR`` loads it).

Example:
    >>> import torch
    >>> from cqtml_env.reward.model import RewardModel
    >>> members = [RewardModel() for _ in range(2)]
    >>> for m in members[1:]:
    ...     m.band_logits.data.copy_(members[0].band_logits.data)
    >>> stack_members(members).config.hidden
    16
"""

from __future__ import annotations

import copy

import torch

from cqtml_env.reward.model import RewardModel

SHARED = ("band_logits", "gate")


def stack_members(members: list[RewardModel]) -> RewardModel:
    """One model whose raw score is the mean of ``members``' raw scores (same clip encoder)."""
    if not members:
        raise ValueError("stack_members needs at least one model")
    first = members[0]
    k = len(members)
    for m in members[1:]:
        for name in SHARED:
            if not torch.equal(getattr(m, name), getattr(first, name)):
                raise ValueError(
                    f"ensemble members must share the clip encoder ({name} differs): "
                    "fine-tune them with freeze=('band_logits', 'gate')"
                )
        if (m.config.hidden, m.config.global_hidden) != (first.config.hidden,
                                                          first.config.global_hidden):
            raise ValueError("ensemble members must have the same hidden sizes")
        if m.config.device_terms != first.config.device_terms:
            raise ValueError("ensemble members must all have per-device terms or none")
        if m.config.gold_version != first.config.gold_version:
            raise ValueError("ensemble members must follow the same gold version")
    h, g = first.config.hidden, first.config.global_hidden
    cfg = copy.deepcopy(first.config)
    cfg.hidden, cfg.global_hidden, cfg.metrics = k * h, k * g, {}
    with torch.random.fork_rng(devices=[]):
        out = RewardModel(cfg)
    with torch.no_grad():
        out.band_logits.copy_(first.band_logits)
        out.gate.copy_(first.gate)
        lin = out.frame_mlp[0]
        lin.weight.copy_(torch.cat([m.frame_mlp[0].weight for m in members]))
        lin.bias.copy_(torch.cat([m.frame_mlp[0].bias for m in members]))
        out.frame_out.weight.copy_(torch.cat([m.frame_out.weight for m in members], dim=1) / k)
        out.frame_out.bias.copy_(torch.stack([m.frame_out.bias for m in members]).mean(0))
        g1, g2 = out.global_mlp[0], out.global_mlp[2]
        g1.weight.zero_()
        for i, m in enumerate(members):
            w = m.global_mlp[0].weight  # [g, h + n_stats]: own frame units, then stats
            g1.weight[i * g:(i + 1) * g, i * h:(i + 1) * h] = w[:, :h]
            g1.weight[i * g:(i + 1) * g, k * h:] = w[:, h:]
        assert g1.weight.shape[1] == k * h + first.n_stats
        g1.bias.copy_(torch.cat([m.global_mlp[0].bias for m in members]))
        g2.weight.copy_(torch.cat([m.global_mlp[2].weight for m in members], dim=1) / k)
        g2.bias.copy_(torch.stack([m.global_mlp[2].bias for m in members]).mean(0))
        if cfg.device_terms:  # [D, H(, F)] and [D, G]: members side by side along H / G
            out.device_in.copy_(torch.cat([m.device_in for m in members], dim=1))
            out.device_bias.copy_(torch.cat([m.device_bias for m in members], dim=1))
            out.device_out.copy_(torch.cat([m.device_out for m in members], dim=1) / k)
            out.device_global.copy_(torch.cat([m.device_global for m in members], dim=1) / k)
    out.eval()
    return out


__all__ = ["SHARED", "stack_members"]
