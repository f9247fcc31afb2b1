"""``Windowing``: how clips are cut from audio, one config shared by every data set.

Every data set used to copy the same dozen constructor parameters and pass them on
positionally; now they are fields of one frozen dataclass. The old keywords still work
(``AudioFolder(root, max_duration=2.0, clip_hop=1.0)``) and build the config; pass
``windowing=Windowing(...)`` to share one config between several data sets.

    >>> from cqtml_env.datasets.windowing import Windowing
    >>> w = Windowing(max_duration=2.0, clip_hop=1.0)
    >>> w.with_overrides(min_duration=0.5).min_duration
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from cqtml_env.contract import MAX_DURATION

ClipSelection = Literal["sequential", "random"]


@dataclass(frozen=True)
class Windowing:
    """Clip windows of a data set (validated on construction)."""

    max_duration: float = MAX_DURATION
    """Clip length in s (a given ``CQTProcessor``'s ``max_duration`` wins over this)."""
    min_duration: float = 1.0
    """Files shorter than this many s are skipped (reason ``too_short``)."""
    clip_hop: float | None = None
    """s between clip starts in a file (``sequential``); None = ``max_duration``."""
    max_clips_per_file: int | None = None
    """At most this many clips per file (None = as many as fit)."""
    clip_selection: ClipSelection = "sequential"
    """``sequential`` windows every ``clip_hop`` s, or ``random`` offsets per file."""
    clips_per_file: int = 1
    """Offsets drawn per file with ``clip_selection="random"``."""

    def __post_init__(self) -> None:
        if not self.max_duration > 0:
            raise ValueError(f"max_duration must be > 0 seconds, got {self.max_duration}")
        if self.min_duration < 0:
            raise ValueError(f"min_duration must be >= 0 seconds, got {self.min_duration}")
        if self.clip_selection not in ("sequential", "random"):
            raise ValueError(
                f"clip_selection must be 'sequential' or 'random', got {self.clip_selection!r}"
            )
        if self.clip_hop is not None and not self.clip_hop > 0:
            raise ValueError(f"clip_hop must be > 0 seconds, got {self.clip_hop}")
        if self.max_clips_per_file is not None and self.max_clips_per_file < 1:
            raise ValueError(f"max_clips_per_file must be >= 1, got {self.max_clips_per_file}")
        if self.clips_per_file < 1:
            raise ValueError(f"clips_per_file must be >= 1, got {self.clips_per_file}")

    def with_overrides(self, **overrides: Any) -> Windowing:
        """A copy with the given fields replaced; ``None`` values mean "not given"."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown windowing field(s) {unknown}; known: {sorted(names)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self

    @classmethod
    def build(cls, windowing: Windowing | None = None, **overrides: Any) -> Windowing:
        """``windowing`` (default: ``Windowing()``) with the keywords that were given."""
        if windowing is not None and not isinstance(windowing, Windowing):
            raise TypeError(f"windowing must be a Windowing, got {type(windowing).__name__}")
        return (windowing or cls()).with_overrides(**overrides)


__all__ = ["Windowing", "ClipSelection"]
