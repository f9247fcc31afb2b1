"""One small base class for live outputs, and the registry that builds them from a rig."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from cqtml_env.show.rig import Rig


class OutputError(RuntimeError):
    """An output that cannot send (bad address, closed socket, missing port)."""


class Output:
    """Sends one frame of device intensities ``[D]`` in [0, 1] at a time.

    Subclasses implement :meth:`open`, :meth:`send` and :meth:`close`. A receiver that is
    not there is not an error (UDP); a bad address or closed socket raises
    :class:`OutputError`, which the player reports once and then stops using this output.
    """

    kind: ClassVar[str] = ""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.frames_sent = 0

    def open(self) -> None:  # pragma: no cover - trivial default
        pass

    def send(self, intensities: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - trivial default
        pass

    def describe(self) -> str:
        return self.kind

    def __enter__(self) -> Output:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


REGISTRY: dict[str, type[Output]] = {}


def register(cls: type[Output]) -> type[Output]:
    REGISTRY[cls.kind] = cls
    return cls


__all__ = ["Output", "OutputError", "REGISTRY", "register"]
