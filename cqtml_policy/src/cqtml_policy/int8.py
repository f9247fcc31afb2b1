"""8-bit weights for a backbone's Linear layers via bitsandbytes (LLM.int8, CPU or CUDA).

Only ``nn.Linear`` layers are swapped (the ViT's qkv/proj/fc1/fc2); convolutions, norms,
embeddings and the policy head stay in full precision. The 8-bit weights are frozen
(``has_fp16_weights=False``): gradients still flow *through* them to earlier layers and to
the trainable full-precision parts. Needs ``bitsandbytes>=0.46`` (``pip install cqtml-policy[int8]``).
"""

from __future__ import annotations

import sys

import torch
from torch import nn


def _bnb():
    try:
        import bitsandbytes as bnb
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "use_8bit=True needs bitsandbytes>=0.46: pip install 'cqtml-policy[int8]'"
        ) from exc
    return bnb


def is_int8_linear(module: nn.Module) -> bool:
    """Whether ``module`` is a bitsandbytes 8-bit Linear.

    Never imports bitsandbytes: if nothing imported it, no module can be one of its layers
    (and importing it prints kernel-loading noise on every run).
    """
    bnb = sys.modules.get("bitsandbytes")
    if bnb is None:
        return False
    return isinstance(module, bnb.nn.Linear8bitLt)


def swap_linear_for_int8(module: nn.Module, device: torch.device, threshold: float = 6.0) -> int:
    """Replace every ``nn.Linear`` under ``module`` by an 8-bit one on ``device``; returns the count.

    ``threshold`` is LLM.int8's outlier threshold: activation columns above it are multiplied
    in 16-bit, which keeps attention outputs accurate. Quantisation happens when the new
    ``Int8Params`` move to ``device``.
    """
    bnb = _bnb()
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, bnb.nn.Linear8bitLt):  # already 8-bit (it subclasses nn.Linear)
            continue
        if isinstance(child, nn.Linear):
            q = bnb.nn.Linear8bitLt(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                has_fp16_weights=False,
                threshold=threshold,
            )
            q.weight = bnb.nn.Int8Params(
                child.weight.detach().float().cpu().clone(),
                requires_grad=False,
                has_fp16_weights=False,
            )
            if child.bias is not None:
                q.bias = nn.Parameter(
                    child.bias.detach().float().clone(), requires_grad=child.bias.requires_grad
                )
            setattr(module, name, q.to(device))
            count += 1
        else:
            count += swap_linear_for_int8(child, device, threshold)
    return count


def dequantized_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with each 8-bit Linear back as a float32 ``weight`` (for saving)."""
    state = dict(module.state_dict())
    for name, child in module.named_modules():
        if not is_int8_linear(child):
            continue
        prefix = f"{name}." if name else ""
        weight = state[f"{prefix}weight"]
        scb = state.pop(f"{prefix}SCB", None)  # bitsandbytes moves it from weight to state on use
        if weight.dtype == torch.int8 and scb is not None:
            state[f"{prefix}weight"] = (weight.float() * scb.float()[:, None] / 127.0).cpu()
        state.pop(f"{prefix}weight_format", None)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def linear_weight_bytes(module: nn.Module) -> int:
    """Bytes held by the weights, biases and scales of all (8-bit or float) Linear layers."""
    total = 0
    for child in module.modules():
        if isinstance(child, nn.Linear):  # bitsandbytes' 8-bit Linear subclasses nn.Linear
            scales = getattr(child.weight, "SCB", None)
            if scales is None and getattr(child, "state", None) is not None:
                scales = child.state.SCB
            for tensor in (child.weight, child.bias, scales):
                if tensor is not None:
                    total += tensor.numel() * tensor.element_size()
    return total
