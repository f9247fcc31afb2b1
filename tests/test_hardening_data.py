"""Issue 14 hardening, data side: bad data is skipped, counted and reported, never a silent
wrong result (late decode failures, extreme levels, silence, non-UTF-8 names, unreadable
files and folders, corrupt cache entries, default data locations) and issue 10's shared
windowing config."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cqtml_env import AudioFolder, FeatureCache, FreeMusic, MusicNet, SyntheticMusic, make_dataset
from cqtml_env.datasets.base import DataWarning, check_audio_file
from cqtml_env.datasets.windowing import Windowing
from cqtml_env.features.audio import BadClipError, display_path
from cqtml_env.features.cache import CacheWarning

SR = 22050
DUR = 1.0


def sine(seconds: float, amp: float = 0.5, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return fn(*args, **kwargs)


@pytest.fixture
def huge_folder(tmp_path) -> Path:
    """One good file and the issue's reproduction: a finite float WAV with peak 3e38."""
    root = tmp_path / "h"
    root.mkdir()
    sf.write(root / "good.wav", sine(2.0), SR)
    sf.write(root / "huge.wav", sine(4.0, amp=3e38), SR, subtype="FLOAT")
    return root


# -- item 1: extreme files, found early (probe) or late (decode) -------------------------
def test_huge_float_file_is_caught_at_probe_with_a_reason(huge_folder):
    with pytest.warns(DataWarning, match=r"too_loud \(huge.wav\)"):
        ds = AudioFolder(huge_folder, max_duration=DUR)
    assert {Path(p).name: r for p, r in ds.skipped} == {"huge.wav": "too_loud"}
    assert all(ds[i].max() > 0.5 for i in range(len(ds)))


def test_huge_float_file_found_late_is_skipped_counted_and_reported(huge_folder):
    ds = quiet(AudioFolder, huge_folder, max_duration=DUR, validate="header")
    assert not ds.skipped and len(ds) == 6  # the header check cannot see levels
    bad = [i for i in range(len(ds)) if ds.clip_info(i)["source"].endswith("huge.wav")]
    with pytest.warns(DataWarning, match="huge.wav"), pytest.raises(BadClipError) as err:
        ds[bad[0]]
    assert err.value.reason == "too_loud" and "huge.wav" in str(err.value)
    assert err.value.path.endswith("huge.wav") and err.value.clips == (bad[0],)
    assert [(Path(p).name, r.split(":")[0]) for p, r in ds.skipped] == [("huge.wav", "too_loud")]
    # batch reads: the good clips still come back (and the bad ones are named)
    with pytest.raises(BadClipError, match="4 of 6 clips are bad") as err:
        ds.get_many(range(len(ds)))
    assert sorted(err.value.clips) == bad
    stack, kept = ds.get_usable(range(len(ds)))
    assert kept == [i for i in range(len(ds)) if i not in bad] and stack.shape[0] == 2
    assert np.all(np.isfinite(stack)) and stack.max() > 0.5
    assert set(ds.bad_clips) == set(bad) and ds.skip_counts() == {"too_loud": 1}


def test_audio_output_format_skips_the_same_way(huge_folder):
    ds = quiet(AudioFolder, huge_folder, max_duration=DUR, validate="header",
               output_format="audio")
    bad = [i for i in range(len(ds)) if ds.clip_info(i)["source"].endswith("huge.wav")]
    with pytest.raises(BadClipError):
        quiet(ds.__getitem__, bad[0])
    stack, kept = quiet(ds.get_usable, range(len(ds)))
    assert len(kept) == 2 and np.abs(stack).max() <= 1.0


def test_librosa_failure_inside_the_cqt_becomes_a_bad_clip(tmp_path, monkeypatch):
    import librosa

    sf.write(tmp_path / "a.wav", sine(1.0), SR)
    ds = AudioFolder(tmp_path, max_duration=DUR)

    def boom(*a, **k):
        raise librosa.util.exceptions.ParameterError("Audio buffer is not finite everywhere")

    monkeypatch.setattr(librosa, "cqt", boom)
    with pytest.warns(DataWarning), pytest.raises(BadClipError, match="CQT failed"):
        ds[0]
    assert ds.skip_counts() == {"decode_error": 1}


def test_cache_cli_skips_a_late_bad_file_and_exits_0(huge_folder, tmp_path, capsys):
    from cqtml_env.cli.data import main

    args = ["cache", f"folder:{huge_folder}", "--max-duration", "1", "--cache-dir",
            str(tmp_path / "hc"), "--workers", "1", "--no-progress", "--validate", "header"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cached 2 clips" in out and "2 computed" in out
    assert "skipped while decoding: 4 of 6 clips, in 1 file(s)" in out
    assert "huge.wav: too_loud" in out
    assert len(FeatureCache(tmp_path / "hc")) == 2  # nothing cached for the bad file


# -- item 3: silence --------------------------------------------------------------------
def test_long_all_silent_file_is_skipped_as_silent_at_probe(tmp_path):
    sf.write(tmp_path / "zeros.wav", np.zeros(12 * SR, np.float32), SR)
    sf.write(tmp_path / "quiet_intro.wav",
             np.concatenate([np.zeros(SR * 6, np.float32), sine(6.0)]), SR)
    with pytest.warns(DataWarning, match=r"1 silent \(zeros.wav\)"):
        ds = AudioFolder(tmp_path, max_duration=DUR)
    assert [f.rel for f in ds.files] == ["quiet_intro.wav"]  # a silent intro is music
    assert check_audio_file(tmp_path / "zeros.wav", 1.0, "probe", 1.0)[0] == "silent"


def test_silent_file_found_late_is_a_bad_clip(tmp_path):
    sf.write(tmp_path / "zeros.wav", np.zeros(3 * SR, np.float32), SR)
    sf.write(tmp_path / "ok.wav", sine(1.0), SR)
    ds = quiet(AudioFolder, tmp_path, max_duration=DUR, validate="header")
    i = next(i for i in range(len(ds)) if ds.clip_info(i)["source"].endswith("zeros.wav"))
    with pytest.raises(BadClipError) as err:
        quiet(ds.__getitem__, i)
    assert err.value.reason == "silent"


# -- item 2: file names that are not UTF-8 ----------------------------------------------
@pytest.mark.skipif(os.name == "nt" or sys.platform == "darwin",
                    reason="needs a file system that stores arbitrary bytes in names")
def test_non_utf8_file_name_is_read_and_printed_safely(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    sf.write(root / "ok.wav", sine(1.0), SR)
    sf.write(root / "tmp.wav", sine(1.0, freq=330.0), SR)
    os.rename(os.fsencode(root / "tmp.wav"), os.fsencode(root) + b"/caf\xe9.wav")
    ds = AudioFolder(root, max_duration=DUR)
    assert not ds.skipped and len(ds) == 2
    assert ds[0].max() > 0.5 and ds[1].max() > 0.5
    assert "caf\\xe9.wav" in ds.clip_info(0)["clip_id"]
    assert display_path(ds.files[0].path).endswith("caf\\xe9.wav")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    (root / "junk.wav").write_bytes(b"x" * 100)
    os.rename(os.fsencode(root / "junk.wav"), os.fsencode(root) + b"/junk\xff.wav")
    r = subprocess.run([sys.executable, "-m", "cqtml_env.cli.data", "info", f"folder:{root}",
                        "--max-duration", "1"], capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    out = r.stdout.decode("utf-8")  # valid UTF-8 throughout
    assert "clips: 2" in out and "junk\\xff.wav: not_audio" in out


# -- item 8: unreadable files and folders -----------------------------------------------
def test_unreadable_file_and_folder_are_reported_as_unreadable(tmp_path, monkeypatch):
    root = tmp_path / "m"
    (root / "locked").mkdir(parents=True)
    sf.write(root / "ok.wav", sine(1.0), SR)
    sf.write(root / "secret.wav", sine(1.0), SR)
    sf.write(root / "locked" / "inner.wav", sine(1.0), SR)
    if os.geteuid() != 0:  # real permissions where they bite
        os.chmod(root / "secret.wav", 0)
        os.chmod(root / "locked", 0)
    else:  # root reads everything: simulate what chmod 000 does to a normal user
        real_open, real_scandir = builtins.open, os.scandir

        def fake_open(file, *a, **k):
            if str(file).endswith("secret.wav"):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *a, **k)

        def fake_scandir(path="."):
            if str(path).endswith("locked"):
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(os, "scandir", fake_scandir)
    try:
        with pytest.warns(DataWarning, match="2 unreadable"):
            ds = AudioFolder(root, max_duration=DUR)
    finally:
        if os.geteuid() != 0:
            os.chmod(root / "secret.wav", 0o644)
            os.chmod(root / "locked", 0o755)
    got = {Path(p).name: r.split(":")[0] for p, r in ds.skipped}
    assert got == {"secret.wav": "unreadable", "locked": "unreadable"}
    assert [f.rel for f in ds.files] == ["ok.wav"]


# -- item 9: default locations of FMA and MusicNet --------------------------------------
def test_default_data_location_and_a_helpful_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CQTML_DATA", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError) as err:
        FreeMusic(output_format="cqt", max_duration=5.0)  # the seed's example: no TypeError
    msg = str(err.value)
    assert str(tmp_path / "data" / "fma") in msg and "CQTML_DATA" in msg
    assert "fma_small.zip" in msg and "https://" in msg
    with pytest.raises(FileNotFoundError, match=r"musicnet.*zenodo"):
        MusicNet()
    with pytest.raises(FileNotFoundError, match="CQTML_DATA"):
        make_dataset("fma")
    monkeypatch.delenv("CQTML_DATA")  # falls back to the cache folder (tmp in tests)
    with pytest.raises(FileNotFoundError, match=str(Path(os.environ["CQTML_CACHE_DIR"]))):
        FreeMusic()


def test_default_data_location_is_read(tmp_path, monkeypatch):
    root = tmp_path / "data" / "musicnet" / "train_data"
    root.mkdir(parents=True)
    sf.write(root / "1727.wav", sine(2.0), SR)
    monkeypatch.setenv("CQTML_DATA", str(tmp_path / "data"))
    ds = quiet(MusicNet, max_duration=DUR)
    assert len(ds) == 2 and ds.root == tmp_path / "data" / "musicnet"


# -- issue 10: one shared windowing config -----------------------------------------------
def test_one_windowing_config_shared_by_every_data_set(tmp_path):
    sf.write(tmp_path / "a.wav", sine(3.0), SR)
    w = Windowing(max_duration=DUR, min_duration=0.5, clip_hop=0.5, max_clips_per_file=3)
    a = AudioFolder(tmp_path, windowing=w)
    b = AudioFolder(tmp_path, max_duration=DUR, min_duration=0.5, clip_hop=0.5,
                    max_clips_per_file=3)
    assert a.windowing == b.windowing == w and len(a) == len(b) == 3
    assert [a.clip_info(i)["offset"] for i in range(3)] == [0.0, 0.5, 1.0]
    c = AudioFolder(tmp_path, windowing=w, clip_hop=1.0)  # a keyword overrides one field
    assert c.windowing.clip_hop == 1.0 and c.windowing.min_duration == 0.5
    assert SyntheticMusic(2, windowing=w).max_duration == DUR
    with pytest.raises(TypeError):
        AudioFolder(tmp_path, None, DUR)  # no positional pass-through chains any more
    with pytest.raises(ValueError, match="clip_hop"):
        Windowing(clip_hop=0)
    with pytest.raises(ValueError, match="clip_selection"):
        AudioFolder(tmp_path, clip_selection="shuffle")
    with pytest.raises(TypeError, match="unknown windowing field"):
        w.with_overrides(hop=1.0)


# -- item 6: corrupt cache entries --------------------------------------------------------
CORRUPTIONS = {
    "random_bytes": lambda data, arr: np.random.default_rng(0).bytes(len(data)),
    "bit_rot": lambda data, arr: data[:200] + bytes([data[200] ^ 0x10]) + data[201:],
    "truncated": lambda data, arr: data[: len(data) // 2],
    "all_nan": lambda data, arr: _resave(np.full_like(arr, np.nan)),
    "up_to_1000": lambda data, arr: _resave(arr * 1000),
    "wrong_shape": lambda data, arr: _resave(arr[:, :10]),
}


def _resave(arr: np.ndarray) -> bytes:
    """A well-formed entry (valid checksum) holding bad values, as a buggy writer would."""
    from cqtml_env.features.cache import encode_entry

    return encode_entry(arr)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_cache_entry_is_recomputed_replaced_and_named(tmp_path, kind):
    ds = SyntheticMusic(2, seed=5, max_duration=DUR, cache=tmp_path / "c")
    good = ds[0].copy()
    path = ds.cache.path_for(ds.cache_key(0))
    path.write_bytes(CORRUPTIONS[kind](path.read_bytes(), good))
    again = SyntheticMusic(2, seed=5, max_duration=DUR, cache=tmp_path / "c")
    with pytest.warns(CacheWarning, match=path.name):
        got = again[0]
    np.testing.assert_array_equal(got, good)
    assert again.cache.corrupt == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # replaced: the next read is clean
        np.testing.assert_array_equal(
            SyntheticMusic(2, seed=5, max_duration=DUR, cache=tmp_path / "c")[0], good
        )


def test_cache_refuses_to_store_bad_values(tmp_path):
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match="NaN"):
        cache.put("ab" * 32, np.full((2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="outside"):
        cache.put("ab" * 32, np.full((2, 3), 5.0, np.float32))
    assert len(cache) == 0
