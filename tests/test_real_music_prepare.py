"""bench/real_music_check.py --prepare: splits, the finished-folder check, and a real .deb
built with dpkg-deb, served by a stand-in apt-get, extracted and excerpted to FLAC."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from conftest import load_bench

rmc = load_bench("real_music_check")


def test_splits_partition_the_sources():
    splits = [rmc.sources(s) for s in rmc.SPLITS if s != "all"]
    assert len(splits) == len(rmc.SPLITS) - 1 == 10
    assert all(splits)
    assert sum(len(rows) for rows in splits) == len(rmc.sources("all"))
    genres = [{r[1] for r in rows} for rows in splits]
    packages = [{r[0] for r in rows} for rows in splits]
    for i in range(len(splits)):  # no genre folder and no package in two splits
        for j in range(i + 1, len(splits)):
            assert not genres[i] & genres[j] and not packages[i] & packages[j]
    with pytest.raises(ValueError, match="unknown split 'train'.*tune"):
        rmc.sources("train")


def test_prepared_needs_every_genre_and_the_sources_file(tmp_path, monkeypatch):
    assert not rmc.prepared(tmp_path, "tune")
    for row in rmc.sources("tune"):
        (tmp_path / row[1]).mkdir()
        sf.write(str(tmp_path / row[1] / "a.flac"), np.zeros(800, "float32"), 8000)
    assert not rmc.prepared(tmp_path, "tune")  # no SOURCES.md: an unfinished run
    (tmp_path / "SOURCES.md").write_text("x")
    assert rmc.prepared(tmp_path, "tune") and not rmc.prepared(tmp_path, "check")

    def no_network(*a, **k):
        raise AssertionError("a finished folder must not download")
    monkeypatch.setattr(rmc.subprocess, "run", no_network)
    rmc.prepare(tmp_path, tmp_path.parent / "pkgs", "tune")  # returns before any download


def test_work_folder_inside_the_output_is_refused(tmp_path):
    with pytest.raises(ValueError, match="inside"):
        rmc.prepare(tmp_path / "music", tmp_path / "music" / "pkgs", "tune")


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="needs dpkg-deb (Debian)")
def test_prepare_extracts_and_excerpts_a_real_deb(tmp_path, monkeypatch):
    sr = 22050
    pkg = tmp_path / "build"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: cqtml-test-music\nVersion: 1.2-3\nArchitecture: all\n"
        "Maintainer: t <t@example.org>\nDescription: test\n")
    songs = pkg / "usr/share/m"
    songs.mkdir(parents=True)
    t = np.arange(int(3.0 * sr)) / sr
    sf.write(str(songs / "Tune One.ogg"), 0.3 * np.sin(2 * np.pi * 220 * t), sr)
    sf.write(str(songs / "b.ogg"), 0.3 * np.sin(2 * np.pi * 330 * t), sr)
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg),
                    str(repo / "cqtml-test-music_1.2-3_all.deb")], check=True,
                   capture_output=True)
    bin_ = tmp_path / "bin"  # a stand-in apt-get that "downloads" from the local repo
    bin_.mkdir()
    (bin_ / "apt-get").write_text(f"#!/bin/sh\ncp {repo}/\"$3\"_*.deb .\n")
    (bin_ / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(rmc, "SOURCES", [
        ("cqtml-test-music", "tests", "usr/share/m/*.ogg", 0.5, 2.0, None, "CC0", "tune"),
        ("other", "never", "x", 0.0, 1.0, None, "CC0", "check")])
    out, work = tmp_path / "music", tmp_path / "pkgs"
    rmc.prepare(out, work, "tune")
    flacs = sorted((out / "tests").glob("*.flac"))
    assert [f.name for f in flacs] == ["cqtml_b.flac", "cqtml_tune_one.flac"]
    audio, got_sr = sf.read(str(flacs[1]))
    assert got_sr == sr and len(audio) == 2 * sr and np.abs(audio).max() > 0.2
    text = (out / "SOURCES.md").read_text()
    assert "cqtml-test-music 1.2-3 (tests)" in text and "Split: tune" in text
    assert not (out / "never").exists() and not list((work / "x").glob("*.part"))
    assert rmc.prepared(out, "tune")
