"""Issue 14 item 6, cheaper verify: CRC-32 trailer and one-pass value checks still catch it all."""

from __future__ import annotations

import io

import numpy as np
import pytest

from cqtml_env.features.cache import (
    TRAILER_MAGIC,
    CacheWarning,
    FeatureCache,
    _digest,
    encode_entry,
)

KEY = "cd" * 32


def _entry(cache: FeatureCache, arr: np.ndarray):
    path = cache.path_for(KEY)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_entry(arr))  # a valid checksum over bad values
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1.5, -0.25])
def test_one_bad_value_anywhere_is_caught(tmp_path, value):
    cache = FeatureCache(tmp_path)
    arr = np.random.default_rng(0).uniform(0, 1, (2, 84, 40)).astype(np.float32)
    arr[1, 83, 39] = value  # the very last element
    path = _entry(cache, arr)
    with pytest.warns(CacheWarning, match=path.name):
        assert cache.get(KEY) is None
    assert not path.exists() and cache.corrupt == 1


def test_every_single_bit_flip_in_the_body_is_caught(tmp_path):
    cache = FeatureCache(tmp_path)
    arr = np.random.default_rng(1).uniform(0, 1, (2, 8, 5)).astype(np.float32)
    data = encode_entry(arr)
    path = cache.path_for(KEY)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = len(data) - 12  # 8-byte magic + 4-byte CRC-32
    for pos in range(0, body, 7):
        for bit in (0, 5):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            path.write_bytes(bytes(bad))
            with pytest.warns(CacheWarning, match="checksum mismatch"):
                assert cache.get(KEY) is None
    path.write_bytes(data)
    np.testing.assert_array_equal(cache.get(KEY), arr)


def test_zero_copy_read_is_exact_writable_and_refuses_objects(tmp_path):
    cache = FeatureCache(tmp_path, value_range=None)
    rng = np.random.default_rng(2)
    for arr in (
        rng.uniform(0, 1, (2, 7, 5)).astype(np.float32),
        np.asfortranarray(rng.uniform(0, 1, (3, 4))),
        np.arange(6, dtype=">i4").reshape(2, 3),
        np.zeros((0, 3), np.float32),
    ):
        cache.put(KEY, arr)
        got = cache.get(KEY)
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)
        got[...] = 0  # callers may write into what they get
    buf = io.BytesIO()
    np.save(buf, np.array([None, 1], dtype=object), allow_pickle=True)  # a pickle inside
    body = buf.getvalue()
    cache.path_for(KEY).write_bytes(body + TRAILER_MAGIC + _digest(body))  # valid checksum
    with pytest.warns(CacheWarning, match="object arrays|pickle"):
        assert cache.get(KEY) is None
