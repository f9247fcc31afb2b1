"""On-disk CQT feature cache, so the second epoch over a data set never recomputes a CQT.

Keys hash everything that changes the features: the clip's source identity (absolute path +
size + mtime_ns for files, so an edited file misses; generator version + seed + index for
synthetic clips), the clip window (offset, duration) and the processor config JSON. Entries
are plain ``.npy`` files (read with ``allow_pickle=False``) written atomically (temp file +
``os.replace``), so concurrent writers (``cqtml-data cache --workers N``) and crashes never
leave a half-written entry behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

CACHE_ENV_VAR = "CQTML_CACHE_DIR"
KEY_VERSION = "cqtml-cache-v1"


def default_cache_dir() -> Path:
    """``$CQTML_CACHE_DIR`` or ``~/.cache/cqtml``."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cqtml"


def file_identity(path: str | os.PathLike) -> str:
    """Identity of a file's content as far as the cache cares: path, size and mtime."""
    p = Path(path).resolve()
    st = p.stat()
    return f"file:{p}|{st.st_size}|{st.st_mtime_ns}"


class FeatureCache:
    """Content-keyed ``.npy`` store: ``root/<key[:2]>/<key>.npy``. Counts hits and misses."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"FeatureCache(root={str(self.root)!r}, hits={self.hits}, misses={self.misses})"

    # -- keys ----------------------------------------------------------------------------
    @staticmethod
    def key(identity: str, offset: float, duration: float, config_json: str) -> str:
        """Hex digest of (identity, window, processor config)."""
        text = f"{KEY_VERSION}\n{identity}\n{offset:.6f}\n{duration:.6f}\n{config_json}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    # -- access --------------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def get(self, key: str) -> np.ndarray | None:
        """The cached array, or None (a corrupt entry counts as a miss and is removed)."""
        path = self.path_for(key)
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, EOFError):
            self.misses += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self.hits += 1
        return arr

    def put(self, key: str, array: np.ndarray) -> None:
        """Write atomically: a reader sees either nothing or the whole array."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get_or_compute(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        arr = self.get(key)
        if arr is None:
            arr = compute()
            self.put(key, arr)
        return arr

    # -- housekeeping --------------------------------------------------------------------
    def __len__(self) -> int:
        if not self.root.is_dir():
            return 0
        return sum(1 for _ in self.root.glob("*/*.npy"))

    def size_bytes(self) -> int:
        if not self.root.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.root.glob("*/*.npy"))

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

    def clear(self) -> None:
        """Delete every entry (and stray temp files) under root."""
        if not self.root.is_dir():
            return
        for p in list(self.root.glob("*/*.npy")) + list(self.root.glob("*/.tmp-*")):
            with contextlib.suppress(OSError):
                p.unlink()


def as_cache(cache: FeatureCache | str | os.PathLike | None) -> FeatureCache | None:
    """Normalise the ``cache=`` argument of data sets: None, a directory or a FeatureCache."""
    if cache is None or isinstance(cache, FeatureCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return FeatureCache(cache)
    raise TypeError(f"cache must be None, a directory path or a FeatureCache, got {type(cache)}")


__all__ = ["FeatureCache", "default_cache_dir", "file_identity", "as_cache", "CACHE_ENV_VAR"]
