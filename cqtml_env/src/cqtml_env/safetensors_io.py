"""Loading safetensors files with errors that name the file and what it should have held.

safetensors' own errors (``HeaderTooLarge``, ``InvalidHeaderDeserialization``, ...) name
neither the file nor what the caller expected; every safetensors read in ``cqtml_env`` goes
through :func:`load_safetensors` so a truncated or foreign file reads as, e.g.
``runs/x/model.safetensors: not a readable safetensors file (expected reward model weights):
truncated header``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class SafetensorsFileError(ValueError):
    """A file that should be safetensors cannot be read; the message names file and content."""


def load_safetensors(
    path: str | os.PathLike, *, expected: str, backend: str = "numpy"
) -> dict[str, Any]:
    """All tensors of ``path`` (``backend`` ``"numpy"`` or ``"torch"``).

    ``expected`` says what the file should hold (e.g. ``"reward model weights"``); it goes
    into the :class:`SafetensorsFileError` raised for a missing, truncated or foreign file.

    >>> load_safetensors("model.safetensors", expected="reward model weights")  # doctest: +SKIP
    """
    p = Path(path)
    if not p.is_file():
        raise SafetensorsFileError(f"{p}: missing (expected {expected} as a safetensors file)")
    if backend == "numpy":
        from safetensors.numpy import load_file
    elif backend == "torch":
        from safetensors.torch import load_file
    else:
        raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
    try:
        return load_file(str(p))
    except Exception as exc:  # SafetensorError, OSError, ValueError: all mean "not readable"
        size = p.stat().st_size
        raise SafetensorsFileError(
            f"{p}: not a readable safetensors file of {size} bytes (expected {expected}): "
            f"{type(exc).__name__}: {exc}"
        ) from None


__all__ = ["SafetensorsFileError", "load_safetensors"]
