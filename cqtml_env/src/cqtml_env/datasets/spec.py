"""``make_dataset("synthetic:256")``: one string names a data set, for CLIs and agents."""

from __future__ import annotations

from typing import Any

from cqtml_env.datasets.base import ClipDataset

SPEC_FORMS = (
    "synthetic",
    "synthetic:N",
    "folder:PATH",
    "fma:PATH",
    "musicnet:PATH",
    "fma",
    "musicnet",
)


def make_dataset(spec: str, **kwargs: Any) -> ClipDataset:
    """Build a data set from a spec string; ``kwargs`` go to its constructor.

    ``synthetic`` (256 clips) | ``synthetic:N`` | ``folder:PATH`` | ``fma[:PATH]``
    (kwargs subset=, split=) | ``musicnet[:PATH]`` (kwarg split=); without a PATH, FMA and
    MusicNet are read from their default folders (:mod:`cqtml_env.datasets.locations`).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty data set spec; valid forms: {', '.join(SPEC_FORMS)}")
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "synthetic":
        from cqtml_env.datasets.synthetic import SyntheticMusic

        if arg:
            try:
                n = int(arg)
            except ValueError:
                raise ValueError(
                    f"bad spec {spec!r}: N in 'synthetic:N' must be an integer"
                ) from None
            kwargs.setdefault("num_clips", n)
        return SyntheticMusic(**kwargs)
    if kind in ("folder", "fma", "musicnet"):
        if not arg and kind == "folder":
            raise ValueError(f"bad spec {spec!r}: '{kind}:PATH' needs a path")
        if kind == "folder":
            from cqtml_env.datasets.folder import AudioFolder

            return AudioFolder(arg, **kwargs)
        if kind == "fma":
            from cqtml_env.datasets.fma import FreeMusic

            return FreeMusic(arg or None, **kwargs)  # no path: the default location
        from cqtml_env.datasets.musicnet import MusicNet

        return MusicNet(arg or None, **kwargs)
    raise ValueError(f"unknown data set spec {spec!r}; valid forms: {', '.join(SPEC_FORMS)}")


__all__ = ["make_dataset", "SPEC_FORMS"]
