"""Saving and loading policies: a JSON config plus safetensors weights, never pickle.

A saved policy is a directory with ``config.json`` (``{"model_type": ..., "config": {...}}``)
and, when the policy has weights, ``model.safetensors``. :func:`load_policy` reads the
``model_type`` and returns the right class, so callers need not know what they saved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cqtml_policy._version import __version__

if TYPE_CHECKING:
    from cqtml_policy.categorical import CategoricalPolicy

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def _policy_types() -> dict[str, str]:
    from cqtml_policy import registry

    out: dict[str, str] = {}
    for name in registry.list_policies():
        entry = registry.policy_entry(name)
        for key in (entry.name, *entry.aliases):
            out[key] = entry.target
    return out


# Deprecated (0.2): the read-only view of :mod:`cqtml_policy.registry` by name and alias.
POLICY_TYPES: dict[str, str] = _policy_types()


def policy_class(model_type: str) -> type[CategoricalPolicy]:
    """The class registered for ``model_type`` (any name or alias in
    :mod:`cqtml_policy.registry`, including the 0.1 names ``cqt_vit``/``cqt_cnn``)."""
    from cqtml_policy import registry

    try:
        return registry.policy_class(model_type)
    except ValueError as exc:
        raise ValueError(f"unknown model_type {model_type!r}: {exc}") from None


def write_pretrained(
    directory: str | Path,
    model_type: str,
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None,
) -> Path:
    """Write ``config.json`` and (if there are weights) ``model.safetensors`` into ``directory``."""
    from safetensors.torch import save_file

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    payload = {"model_type": model_type, "cqtml_policy_version": __version__, "config": config}
    (path / CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    weights = path / WEIGHTS_NAME
    if state_dict:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(weights), metadata={"model_type": model_type})
    elif weights.exists():
        weights.unlink()  # a stale file from an earlier save would be loaded by mistake
    return path


def read_config(directory: str | Path) -> tuple[str, dict[str, Any]]:
    """``(model_type, config)`` from a saved policy directory."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no {CONFIG_NAME} in {Path(directory)!s}: not a saved cqtml policy"
        )
    payload = json.loads(path.read_text())
    if not isinstance(payload, dict) or "model_type" not in payload:
        raise ValueError(f"{path} has no 'model_type': not a saved cqtml policy config")
    return str(payload["model_type"]), dict(payload.get("config", {}))


def read_weights(directory: str | Path) -> dict[str, torch.Tensor] | None:
    """The saved state dict, or ``None`` for a policy saved without weights."""
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors' own error types name neither file nor content
        raise ValueError(
            f"{path}: not a readable safetensors file of {path.stat().st_size} bytes "
            f"(expected policy weights): {type(exc).__name__}: {exc}"
        ) from None


def load_policy(path: str | Path, **overrides: Any) -> CategoricalPolicy:
    """Load any saved policy (ViT, CNN or a baseline) from its directory.

    ``overrides`` go to the class's ``from_pretrained`` (e.g. ``device="cpu"``, ``use_8bit=True``).
    """
    model_type, _ = read_config(path)
    return policy_class(model_type).from_pretrained(path, **overrides)
