"""On-disk CQT feature cache, so the second epoch over a data set never recomputes a CQT.

Keys hash everything that changes the features: the clip's source identity (absolute path +
size + mtime_ns for files, so an edited file misses; generator version + seed + index for
synthetic clips), the clip window (offset, duration) and the processor config JSON. Entries
are ``.npy`` files (read with ``allow_pickle=False``) written atomically (temp file +
``os.replace``), so concurrent writers (``cqtml-data cache --workers N``) and crashes never
leave a half-written entry behind.

Every entry is verified on read, so bit rot or a stray write is never served as features:
the file ends with a 12-byte trailer (``CQTMLcrc`` + CRC-32 of the ``.npy`` bytes before it,
little-endian; ``np.load`` ignores trailing bytes, so entries stay plain ``.npy`` to other
tools), and
the array must be finite, within ``value_range`` (CQT features: [0, 1]) and, when the caller
says, of the expected shape and float32. A bad entry warns (:class:`CacheWarning`, naming the
file and why), is deleted and counts as a miss, so the data set recomputes and replaces it.

CRC-32 (zlib) guards against accidents (bit rot, truncation, stray writes), not tampering:
it catches every error burst up to 32 bits and misses a random corruption with probability
2**-32, at about a sixth of the cost of BLAKE2b (``python bench/bench_cache.py`` prints both).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CACHE_ENV_VAR = "CQTML_CACHE_DIR"
KEY_VERSION = "cqtml-cache-v3"  # v3: CRC-32 trailer (v2: BLAKE2b; older entries just miss)
TRAILER_MAGIC = b"CQTMLcrc"
DIGEST_SIZE = 4
TRAILER_SIZE = len(TRAILER_MAGIC) + DIGEST_SIZE


class CacheWarning(UserWarning):
    """A corrupt feature-cache entry was found (and removed, to be recomputed)."""


def _digest(data: bytes | memoryview) -> bytes:
    return zlib.crc32(data).to_bytes(DIGEST_SIZE, "little")


def _read_into_bytearray(path: Path) -> bytearray:
    """The whole file in one copy (kernel -> a writable buffer the array can live in)."""
    with open(path, "rb") as f:
        buf = bytearray(os.fstat(f.fileno()).st_size)
        n = f.readinto(buf)
    return buf if n == len(buf) else buf[:n]


def _npy_view(buf: bytearray, end: int) -> np.ndarray:
    """The ``.npy`` in ``buf[:end]`` as an array over ``buf`` itself (no copy of the data).

    Header parsing is numpy's own (:mod:`numpy.lib.format`); anything unusual (header over
    4 KiB, format 3.0) goes through ``np.load``. Object arrays are refused (no pickle).
    """
    fmt = np.lib.format
    head = io.BytesIO(bytes(memoryview(buf)[: min(end, 4096)]))
    try:
        version = fmt.read_magic(head)
        read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
        shape, fortran, dtype = read_header[version](head)
    except (KeyError, ValueError, EOFError):
        return np.load(io.BytesIO(memoryview(buf)[:end]), allow_pickle=False)
    if dtype.hasobject:
        raise ValueError("object arrays are not allowed (allow_pickle=False)")
    count = int(np.prod(shape, dtype=np.int64))
    offset = head.tell()
    if offset + count * dtype.itemsize != end:
        raise ValueError(f"{end - offset} data bytes for {dtype}{list(shape)}")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def encode_entry(array: np.ndarray) -> bytes:
    """The bytes of a cache entry: ``.npy`` of ``array`` + trailer. No value checks here."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    body = buf.getbuffer()
    return bytes(body) + TRAILER_MAGIC + _digest(body)


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
    """Content-keyed, verified ``.npy`` store: ``root/<key[:2]>/<key>.npy``.

    Counts hits, misses and ``corrupt`` entries found (each also a miss). ``value_range``
    is what every stored value must lie in (None: only finiteness is checked).
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        value_range: tuple[float, float] | None = (0.0, 1.0),
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.value_range = value_range
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    def __repr__(self) -> str:
        return (
            f"FeatureCache(root={str(self.root)!r}, hits={self.hits}, misses={self.misses}, "
            f"corrupt={self.corrupt})"
        )

    # -- keys ----------------------------------------------------------------------------
    @staticmethod
    def key(identity: str, offset: float, duration: float, config_json: str) -> str:
        """Hex digest of (identity, window, processor config)."""
        text = f"{KEY_VERSION}\n{identity}\n{offset:.6f}\n{duration:.6f}\n{config_json}"
        # surrogateescape: file names that are not UTF-8 (same bytes as strict UTF-8 otherwise)
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    # -- access --------------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def get(
        self, key: str, shape: tuple[int, ...] | None = None, dtype: Any = np.float32
    ) -> np.ndarray | None:
        """The cached array, or None. A corrupt entry (checksum, values, or not ``shape`` /
        ``dtype`` when ``shape`` is given) warns naming the file, is removed and is a miss."""
        path = self.path_for(key)
        try:
            data = _read_into_bytearray(path)
        except FileNotFoundError:
            self.misses += 1
            return None
        except OSError as exc:
            return self._bad(path, f"unreadable ({exc.strerror or exc})")
        if len(data) < TRAILER_SIZE or data[-TRAILER_SIZE:-DIGEST_SIZE] != TRAILER_MAGIC:
            return self._bad(path, "no checksum trailer (truncated or not written by FeatureCache)")
        body = memoryview(data)[:-TRAILER_SIZE]
        if _digest(body) != data[-DIGEST_SIZE:]:
            return self._bad(path, "checksum mismatch (bit rot or a foreign write)")
        try:
            arr = _npy_view(data, len(body))
        except (OSError, ValueError, EOFError) as exc:
            return self._bad(path, f"not a readable .npy ({exc})")
        why = self._check_array(arr, shape, dtype)
        if why:
            return self._bad(path, why)
        self.hits += 1
        return arr

    def _check_array(
        self, arr: np.ndarray, shape: tuple[int, ...] | None = None, dtype: Any = np.float32
    ) -> str | None:
        """Why ``arr`` may not be served (None: fine)."""
        if shape is not None and (tuple(arr.shape) != tuple(shape) or arr.dtype != dtype):
            return f"{arr.dtype}{list(arr.shape)}, expected {np.dtype(dtype)}{list(shape)}"
        if arr.dtype.kind == "c" and arr.size and not np.all(np.isfinite(arr)):
            return "NaN or inf values"
        if arr.dtype.kind == "f" and arr.size:
            lo, hi = float(arr.min()), float(arr.max())  # one pass each; NaN propagates
            if not (np.isfinite(lo) and np.isfinite(hi)):
                return "NaN or inf values"
            vr = self.value_range
            if vr is not None and (lo < vr[0] or hi > vr[1]):
                return f"values in [{lo:g}, {hi:g}], outside {list(vr)}"
        return None

    def _bad(self, path: Path, why: str) -> None:
        self.misses += 1
        self.corrupt += 1
        warnings.warn(
            f"feature cache entry {path} is corrupt ({why}); removed, it will be recomputed",
            CacheWarning,
            stacklevel=3,
        )
        with contextlib.suppress(OSError):
            path.unlink()
        return None

    def put(self, key: str, array: np.ndarray) -> None:
        """Write atomically (a reader sees nothing or the whole entry), with its checksum.

        Refuses (ValueError) an array that :meth:`get` would reject: bad data never enters.
        """
        array = np.ascontiguousarray(array)
        why = self._check_array(array, None)
        if why:
            raise ValueError(f"refusing to cache {key}: {why}")
        data = encode_entry(array)
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
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
        return {"hits": self.hits, "misses": self.misses, "corrupt": self.corrupt}

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


__all__ = [
    "CACHE_ENV_VAR",
    "CacheWarning",
    "FeatureCache",
    "as_cache",
    "default_cache_dir",
    "encode_entry",
    "file_identity",
]
