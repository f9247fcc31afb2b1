"""FeatureCache: keys, atomic .npy store, counters; data sets never recompute a cached CQT."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from cqtml_env import AudioFolder, CQTProcessor, FeatureCache, SyntheticMusic
from cqtml_env.features.cache import default_cache_dir, file_identity


def forbid_cqt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any CQT computation fail loudly (librosa and our wrapper)."""
    import librosa

    def boom(*args, **kwargs):
        raise AssertionError("CQT recomputed although it was cached")

    monkeypatch.setattr(librosa, "cqt", boom)
    monkeypatch.setattr(CQTProcessor, "magnitude", boom)


def test_roundtrip_counters_and_no_temp_files(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    key = FeatureCache.key("id", 0.0, 5.0, "{}")
    assert cache.get(key) is None and cache.misses == 1 and key not in cache
    arr = np.random.default_rng(0).random((2, 3, 4)).astype(np.float32)
    cache.put(key, arr)
    got = cache.get(key)
    np.testing.assert_array_equal(got, arr)
    assert got.dtype == np.float32 and cache.hits == 1 and key in cache
    assert len(cache) == 1 and cache.size_bytes() > arr.nbytes
    files = [p.name for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert files == [f"{key}.npy"]
    cache.clear()
    assert len(cache) == 0


def test_key_depends_on_everything_that_changes_features():
    base = FeatureCache.key("file:/a|1|2", 0.0, 5.0, CQTProcessor().config.to_json())
    assert base == FeatureCache.key("file:/a|1|2", 0.0, 5.0, CQTProcessor().config.to_json())
    others = [
        FeatureCache.key("file:/a|1|3", 0.0, 5.0, CQTProcessor().config.to_json()),
        FeatureCache.key("file:/a|1|2", 5.0, 5.0, CQTProcessor().config.to_json()),
        FeatureCache.key("file:/a|1|2", 0.0, 2.0, CQTProcessor().config.to_json()),
        FeatureCache.key("file:/a|1|2", 0.0, 5.0, CQTProcessor(n_bins=72).config.to_json()),
    ]
    assert base not in others and len(set(others)) == 4


def test_corrupt_entry_is_a_miss(tmp_path):
    cache = FeatureCache(tmp_path)
    key = FeatureCache.key("x", 0, 1, "{}")
    cache.path_for(key).parent.mkdir(parents=True)
    cache.path_for(key).write_bytes(b"\x93NUMPY garbage")
    assert cache.get(key) is None and cache.misses == 1
    assert not cache.path_for(key).exists()


def test_default_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CQTML_CACHE_DIR", str(tmp_path / "envcache"))
    assert FeatureCache().root == tmp_path / "envcache" == default_cache_dir()
    monkeypatch.delenv("CQTML_CACHE_DIR")
    assert default_cache_dir() == __import__("pathlib").Path.home() / ".cache" / "cqtml"


def test_synthetic_second_epoch_reads_the_cache(tmp_path, monkeypatch):
    ds = SyntheticMusic(num_clips=3, seed=1, max_duration=1.0, cache=tmp_path)
    assert isinstance(ds.cache, FeatureCache)
    first = [ds[i] for i in range(3)]
    assert ds.cache.misses == 3 and ds.cache.hits == 0 and len(ds.cache) == 3
    again = SyntheticMusic(num_clips=3, seed=1, max_duration=1.0, cache=FeatureCache(tmp_path))
    forbid_cqt(monkeypatch)
    for i in range(3):
        np.testing.assert_array_equal(again[i], first[i])
    np.testing.assert_array_equal(again.get_many([2, 0]), np.stack([first[2], first[0]]))
    assert again.cache.hits == 5 and again.cache.misses == 0
    # a different seed is a different clip: not served from the cache
    with pytest.raises(AssertionError, match="recomputed"):
        SyntheticMusic(num_clips=3, seed=2, max_duration=1.0, cache=tmp_path)[0]


def test_no_cache_by_default():
    assert SyntheticMusic(2, max_duration=1.0).cache is None


def test_folder_cache_and_file_change(tmp_path, write_audio, monkeypatch):
    root = tmp_path / "music"
    write_audio(root / "a.wav", seconds=2.0)
    write_audio(root / "b.flac", seconds=1.0, freq=330.0)
    cache = FeatureCache(tmp_path / "cache")
    ds = AudioFolder(root, max_duration=1.0, cache=cache)
    first = ds.get_many(range(len(ds)))  # batched path fills the cache
    assert len(cache) == len(ds) == 3
    with monkeypatch.context() as m:
        forbid_cqt(m)
        ds2 = AudioFolder(root, max_duration=1.0, cache=FeatureCache(tmp_path / "cache"))
        for i in range(len(ds2)):
            np.testing.assert_array_equal(ds2[i], first[i])
        assert ds2.cache.hits == 3
    # rewriting a file changes its identity (size/mtime): its clips miss again
    before = file_identity(root / "b.flac")
    write_audio(root / "b.flac", seconds=1.5, freq=880.0)
    os.utime(root / "b.flac", ns=(1, 1))
    assert file_identity(root / "b.flac") != before
    ds3 = AudioFolder(root, max_duration=1.0, cache=tmp_path / "cache")
    fresh = ds3[2]
    assert ds3.cache.misses == 1
    assert not np.array_equal(fresh, first[2])


def test_failed_clips_are_not_cached(tmp_path, write_audio):
    root = tmp_path / "music"
    write_audio(root / "src.flac", seconds=4.0)
    flac = (root / "src.flac").read_bytes()
    (root / "src.flac").write_bytes(flac[: len(flac) // 3])
    ds = AudioFolder(root, max_duration=1.0, validate="header", cache=tmp_path / "cache")
    from cqtml_env.features.audio import BadClipError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(BadClipError):
            ds[3]
    assert "error" in ds.clip_info(3)
    assert ds.cache_key(3) not in ds.cache
    ds[0]
    assert ds.cache_key(0) in ds.cache
