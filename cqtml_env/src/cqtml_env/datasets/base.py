"""The one interface every clip source shares (synthetic music, audio folders, FMA, MusicNet).

``len(ds)``, ``ds[i]`` (CQT ``float32 [2, n_bins, T]``, or audio ``float32 [2, samples]`` at the
processor's rate with ``output_format="audio"``), ``ds.clip_info(i)`` (metadata dict with at
least ``clip_id``, ``source``, ``offset``, ``duration``) and ``ds.get_many(indices)``. Indices
are plain: negative or out-of-range ones raise IndexError (no Python wrap-around, so an
off-by-one in a sampler fails loudly instead of silently reusing the last clip).
"""

from __future__ import annotations

import operator
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

from cqtml_env.cache import FeatureCache, as_cache
from cqtml_env.cqt import CQTProcessor

OutputFormat = Literal["cqt", "audio"]


class ClipDataset(ABC):
    """Base class: subclasses say how many clips there are, how to get a clip's audio
    (already at the processor's rate, any length) and its metadata; the base adds the CQT,
    the feature cache, index checking and batching.
    """

    def __init__(
        self,
        processor: CQTProcessor | None = None,
        max_duration: float = 5.0,
        output_format: OutputFormat = "cqt",
        cache: FeatureCache | str | os.PathLike | None = None,
        seed: int = 0,
    ) -> None:
        if output_format not in ("cqt", "audio"):
            raise ValueError(f"output_format must be 'cqt' or 'audio', got {output_format!r}")
        # A given processor wins: its max_duration fixes the clip window so that T matches.
        self.processor = processor if processor is not None else CQTProcessor(max_duration=max_duration)
        self.max_duration = float(self.processor.max_duration)
        self.output_format: OutputFormat = output_format
        self.cache = as_cache(cache)
        self.seed = int(seed)

    # -- to implement --------------------------------------------------------------------
    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _clip_info(self, index: int) -> dict[str, Any]:
        """Metadata of a valid index (the base copies it for the caller)."""

    @abstractmethod
    def _clip_audio(self, index: int) -> np.ndarray:
        """Audio ``[channels, samples]`` at ``processor.sample_rate`` (padding is done here)."""

    @abstractmethod
    def _cache_identity(self, index: int) -> str:
        """What identifies the clip's source content (file identity, generator version...)."""

    # -- public API ----------------------------------------------------------------------
    @property
    def num_clips(self) -> int:
        return len(self)

    def _check_index(self, index: Any) -> int:
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__} indices must be integers, got {type(index).__name__}"
            ) from None
        n = len(self)
        if i < 0 or i >= n:
            raise IndexError(f"clip index {i} out of range for {type(self).__name__} of {n} clips")
        return i

    def __getitem__(self, index: int) -> np.ndarray:
        i = self._check_index(index)
        if self.output_format == "audio":
            return self.get_audio(i)
        return self._features(i)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def clip_info(self, index: int) -> dict[str, Any]:
        """Metadata dict of clip ``index`` (a fresh copy: callers may mutate it)."""
        return dict(self._clip_info(self._check_index(index)))

    def get_audio(self, index: int) -> np.ndarray:
        """Stereo audio of the clip, padded/cut to the window: ``float32 [2, num_samples]``."""
        i = self._check_index(index)
        return self.processor.prepare_audio(self._clip_audio(i))

    def get_cqt(self, index: int) -> np.ndarray:
        """The CQT whatever ``output_format`` says."""
        return self._features(self._check_index(index))

    def cache_key(self, index: int) -> str:
        """Feature-cache key of a clip (window + source identity + processor config)."""
        i = self._check_index(index)
        info = self._clip_info(i)
        return FeatureCache.key(
            self._cache_identity(i),
            float(info.get("offset", 0.0)),
            self.max_duration,
            self.processor.config.to_json(),
        )

    def _compute(self, i: int) -> np.ndarray:
        return self.processor(self._clip_audio(i))

    def _features(self, i: int) -> np.ndarray:
        if self.cache is None:
            return self._compute(i)
        key = self.cache_key(i)
        arr = self.cache.get(key)
        if arr is not None and arr.shape == self.processor.shape and arr.dtype == np.float32:
            return arr
        arr = self._compute(i)
        if self._cacheable(i):
            self.cache.put(key, arr)
        return arr

    def _cacheable(self, i: int) -> bool:
        """Whether a computed CQT may be stored (not e.g. the zeros stood in for a bad file)."""
        return True

    def get_many(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stack several clips: ``[N, 2, n_bins, T]`` (or ``[N, 2, samples]`` for audio).

        Uncached CQTs are computed in one batched librosa call, which is cheaper than N calls.
        """
        idx = [self._check_index(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        if self.output_format == "audio":
            if not idx:
                return np.zeros((0, 2, self.processor.num_samples), dtype=np.float32)
            return np.stack([self.get_audio(i) for i in idx])
        out = np.zeros((len(idx), *self.processor.shape), dtype=np.float32)
        todo: list[int] = []  # positions in idx
        for pos, i in enumerate(idx):
            if self.cache is not None:
                arr = self.cache.get(self.cache_key(i))
                if arr is not None and arr.shape == self.processor.shape:
                    out[pos] = arr
                    continue
            todo.append(pos)
        if todo:
            audios = [self._clip_audio(idx[pos]) for pos in todo]
            feats = self.processor.batch(audios)
            for pos, feat in zip(todo, feats):
                out[pos] = feat
                if self.cache is not None and self._cacheable(idx[pos]):
                    self.cache.put(self.cache_key(idx[pos]), feat)
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(clips={len(self)}, max_duration={self.max_duration}, "
            f"output_format={self.output_format!r}, seed={self.seed})"
        )


__all__ = ["ClipDataset", "OutputFormat"]
