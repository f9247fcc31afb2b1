"""Data sets: SyntheticMusic, AudioFolder, FreeMusic, MusicNet, make_dataset, bad files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cqtml_env import AudioFolder, FreeMusic, MusicNet, SyntheticMusic, make_dataset
from cqtml_env.datasets.base import DataWarning
from cqtml_env.datasets.synthetic import PRESETS, STEMS, generate_clip
from cqtml_env.features.audio import AudioLoadError

DUR = 1.0  # short clips keep the suite fast


def data_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


# ---------------------------------------------------------------------------------------
# SyntheticMusic
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth() -> SyntheticMusic:
    return SyntheticMusic(num_clips=6, seed=3, max_duration=2.0)


def test_synthetic_shapes_and_range(synth):
    assert len(synth) == 6
    x = synth[0]
    assert x.shape == (2, 84, synth.processor.num_frames) == synth.processor.shape
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and 0.5 < x.max() <= 1.0
    stack = synth.get_many([1, 0, 1])
    assert stack.shape == (3, *synth.processor.shape)
    np.testing.assert_allclose(stack[1], x, atol=1e-6)
    np.testing.assert_allclose(stack[0], stack[2])


def test_default_synthetic_matches_contract():
    ds = SyntheticMusic(num_clips=2)
    assert ds.processor.shape == (2, 84, 216)
    assert ds.max_duration == 5.0 and ds.seed == 0


def test_synthetic_index_errors(synth):
    for bad in (-1, 6, 100):
        with pytest.raises(IndexError):
            synth[bad]
        with pytest.raises(IndexError):
            synth.clip_info(bad)
    with pytest.raises(TypeError):
        synth["0"]
    assert synth[np.int64(2)].shape == synth.processor.shape


def test_synthetic_clip_info_ground_truth(synth):
    ids = set()
    T = synth.processor.num_frames
    for i in range(len(synth)):
        info = synth.clip_info(i)
        ids.add(info["clip_id"])
        assert info["source"] == "synthetic" and info["offset"] == 0.0
        assert info["duration"] == 2.0
        assert info["preset"] in PRESETS
        assert 70 <= info["tempo"] <= 180
        beats = info["beat_times"]
        assert np.all((beats >= 0) & (beats < 2.0))
        if beats.size > 1:
            np.testing.assert_allclose(np.diff(beats), 60.0 / info["tempo"], rtol=1e-6)
        on = info["onset_times"]
        assert on.size > 0 and np.all(np.diff(on) > 0) and on.min() >= 0 and on.max() < 2.0
        assert set(info["stems_energy"]) == set(STEMS) == set(info["pan"])
        for env in info["stems_energy"].values():
            assert env.shape == (T,) and env.dtype == np.float32 and np.all(env >= 0)
        assert all(-1.0 <= p <= 1.0 for p in info["pan"].values())
    assert len(ids) == len(synth)
    # a copy: mutating it does not change the data set
    info = synth.clip_info(0)
    info["stems_energy"]["kick"][:] = -1
    assert synth.clip_info(0)["stems_energy"]["kick"].min() >= 0


def test_synthetic_deterministic_and_independent_of_num_clips():
    a = SyntheticMusic(num_clips=3, seed=7, max_duration=DUR)
    b = SyntheticMusic(num_clips=50, seed=7, max_duration=DUR)
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a.clip_info(2)["onset_times"], b.clip_info(2)["onset_times"])
    assert a.clip_info(2)["clip_id"] == b.clip_info(2)["clip_id"]
    c = SyntheticMusic(num_clips=3, seed=8, max_duration=DUR)
    assert not np.array_equal(a.get_audio(2), c.get_audio(2))
    assert not np.array_equal(a.get_audio(0), a.get_audio(1))


def test_synthetic_variety_over_presets_tempos_and_stereo():
    infos = [generate_clip(0, i, duration=1.0)[1] for i in range(40)]
    assert {i["preset"] for i in infos} == set(PRESETS)
    tempos = [i["tempo"] for i in infos]
    assert max(tempos) - min(tempos) > 40
    audio, _ = generate_clip(0, 1, duration=1.0)
    assert not np.allclose(audio[0], audio[1])  # parts are panned
    assert any(i["breaks"] for i in infos)
    assert len({i["dynamics"] for i in infos}) >= 3


def test_synthetic_ground_truth_matches_the_audio():
    """stems_energy is the RMS of each part as mixed; kick sits low in the CQT, hats high."""
    proc = SyntheticMusic(1, max_duration=2.0).processor
    seen = set()
    for i in range(12):
        full, info = generate_clip(0, i, duration=2.0)
        if not info["has_drums"]:
            continue
        parts = {s: generate_clip(0, i, duration=2.0, stems=(s,))[0] for s in STEMS}
        np.testing.assert_allclose(sum(parts.values()), full, atol=1e-5)
        for stem, audio in parts.items():
            rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2, axis=0))
            env = info["stems_energy"][stem]
            centre = np.arange(10, env.size - 10)
            frame_rms = [np.sqrt(np.mean(audio[:, c * 512 - 512 : c * 512 + 512] ** 2)) for c in centre]
            np.testing.assert_allclose(env[centre], frame_rms, rtol=1e-3, atol=1e-6)
            assert (env.max() > 0) == (rms.max() > 0)
        kick, hats = (proc(parts[s]).mean(axis=(0, 2)) for s in ("kick", "hats"))
        if parts["kick"].any():
            assert np.argmax(kick) < 18  # below ~90 Hz
            seen.add("kick")
        if parts["hats"].any():
            assert hats[-12:].mean() > 3 * hats[:36].mean()  # the top octave, not the bass
            seen.add("hats")
    assert seen == {"kick", "hats"}


def test_synthetic_presets_filter_and_audio_format():
    ds = SyntheticMusic(num_clips=4, seed=1, max_duration=DUR, presets=["ambient"],
                        output_format="audio")
    assert all(ds.clip_info(i)["preset"] == "ambient" for i in range(4))
    x = ds[0]
    assert x.shape == (2, ds.processor.num_samples) and x.dtype == np.float32
    assert 0 < np.abs(x).max() <= 1.0
    assert ds.get_many([0, 1]).shape == (2, 2, ds.processor.num_samples)
    with pytest.raises(ValueError, match="unknown presets"):
        SyntheticMusic(2, presets=["polka"])


# ---------------------------------------------------------------------------------------
# AudioFolder
# ---------------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path, write_audio) -> Path:
    root = tmp_path / "music"
    write_audio(root / "b_long.wav", seconds=3.2, sr=44100, freq=220.0)
    write_audio(root / "rock" / "a.flac", seconds=1.2, sr=22050, channels=2)
    write_audio(root / "rock" / "c.ogg", seconds=1.5, sr=8000, freq=330.0)
    write_audio(root / "jazz" / "d.mp3", seconds=1.5, sr=22050, freq=660.0)
    write_audio(root / "short.wav", seconds=0.6, sr=22050)  # < max_duration, >= min_duration
    (root / "notes.txt").write_text("not audio, ignored by extension")
    return root


def test_audio_folder_lists_every_format_sorted(folder):
    ds = AudioFolder(folder, max_duration=DUR, min_duration=0.5)
    rels = [f.rel for f in ds.files]
    assert rels == ["b_long.wav", "jazz/d.mp3", "rock/a.flac", "rock/c.ogg", "short.wav"]
    assert not ds.skipped
    # b_long: 3.2 s -> 3 full 1 s windows; the others one each
    assert len(ds) == 3 + 4
    info = ds.clip_info(1)
    assert info["offset"] == 1.0 and info["source"] == str(folder / "b_long.wav")
    assert info["clip_id"] == "folder:b_long.wav@1.000"
    assert ds.clip_info(5)["folder"] == "rock"
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == ds.processor.shape and x.dtype == np.float32 and x.max() > 0.5
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_audio_folder_follows_symlinked_folders_once(tmp_path, write_audio):
    """A data set made of links to where the music lives (e.g. tune/check splits built with
    ``ln -s``) is read through the links; a link loop or a second link to the same folder
    neither recurses nor lists a file twice."""
    music = tmp_path / "library"
    write_audio(music / "rock" / "a.wav", seconds=1.2)
    write_audio(music / "jazz" / "b.wav", seconds=1.2)
    split = tmp_path / "split"
    split.mkdir()
    (split / "rock").symlink_to(music / "rock", target_is_directory=True)
    (split / "rock_again").symlink_to(music / "rock", target_is_directory=True)
    (music / "rock" / "loop").symlink_to(music / "rock", target_is_directory=True)
    ds = AudioFolder(split, max_duration=DUR, min_duration=0.5)
    assert [f.rel for f in ds.files] == ["rock/a.wav"]
    assert not ds.skipped


def test_short_file_is_one_zero_padded_clip(folder):
    ds = AudioFolder(folder, max_duration=2.0, min_duration=0.5)
    i = next(i for i in range(len(ds)) if ds.clip_info(i)["source"].endswith("short.wav"))
    info = ds.clip_info(i)
    assert info["offset"] == 0.0 and info["duration"] == pytest.approx(0.6, abs=0.01)
    x = ds[i]
    assert x.shape == ds.processor.shape
    fr = ds.processor.frame_rate
    assert x[:, 30:, : int(0.4 * fr)].max() > 0.5
    assert x[:, 30:, int(0.9 * fr) :].max() == 0.0
    # and below min_duration it is skipped
    with pytest.warns(DataWarning, match="too_short"):
        ds2 = AudioFolder(folder, max_duration=2.0, min_duration=1.0)
    assert ("too_short" in dict((Path(p).name, r) for p, r in ds2.skipped)["short.wav"])


def test_clip_windows_hop_cap_and_random(folder):
    seq = AudioFolder(folder, max_duration=DUR, min_duration=0.5, clip_hop=0.5)
    offs = [seq.clip_info(i)["offset"] for i in range(len(seq))
            if seq.clip_info(i)["source"].endswith("b_long.wav")]
    assert offs == [0.0, 0.5, 1.0, 1.5, 2.0]
    capped = AudioFolder(folder, max_duration=DUR, min_duration=0.5, max_clips_per_file=2)
    assert len(capped) == 2 + 4

    def rand(seed):
        ds = AudioFolder(folder, max_duration=DUR, min_duration=0.5, clip_selection="random",
                         clips_per_file=3, seed=seed)
        return [ds.clip_info(i)["offset"] for i in range(3)]

    a, b, c = rand(0), rand(0), rand(1)
    assert a == b and a != c
    assert all(0 <= o <= 2.2 for o in a) and a == sorted(a)


def test_audio_output_format_resamples(folder):
    ds = AudioFolder(folder, max_duration=DUR, min_duration=0.5, output_format="audio")
    x = ds[0]  # from 44.1 kHz
    assert x.shape == (2, 22050) and x.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(x[0]))
    assert abs(np.argmax(spectrum) * 22050 / x.shape[1] - 220.0) < 2.0


def _make_bad_files(root: Path, write_audio) -> dict[str, str]:
    """One file per bad kind -> expected reason."""
    root.mkdir(parents=True, exist_ok=True)
    write_audio(root / "good.wav", seconds=2.0)
    (root / "empty.wav").write_bytes(b"")
    (root / "junk.mp3").write_bytes(b"this is not an mp3 file" * 50)
    sf.write(root / "header_only.wav", np.zeros(0, dtype=np.float32), 22050)
    sf.write(root / "silent.flac", np.zeros(44100, dtype=np.float32), 22050)
    write_audio(root / "tiny.ogg", seconds=0.2)
    write_audio(root / "low_rate.wav", seconds=2.0, sr=4000, freq=200.0)
    sf.write(root / "ten_channels.wav", np.full((22050 * 2, 10), 0.1, dtype=np.float32), 22050)
    wav = (root / "good.wav").read_bytes()
    (root / "cut.wav").write_bytes(wav[: len(wav) // 2])
    write_audio(root / "cut_src.flac", seconds=4.0)
    flac = (root / "cut_src.flac").read_bytes()
    (root / "cut_src.flac").unlink()
    (root / "cut.flac").write_bytes(flac[: len(flac) // 3])
    write_audio(root / "cut_src.mp3", seconds=4.0)
    mp3 = (root / "cut_src.mp3").read_bytes()
    (root / "cut_src.mp3").unlink()
    (root / "cut.mp3").write_bytes(mp3[: len(mp3) // 3])  # decodes, zero-padded: seek finds it
    return {
        "empty.wav": "empty_file",
        "junk.mp3": "not_audio",
        "header_only.wav": "no_frames",
        "silent.flac": "silent",
        "tiny.ogg": "too_short",
        "low_rate.wav": "bad_sample_rate",
        "ten_channels.wav": "bad_channels",
        "cut.wav": "truncated",
        "cut.flac": "truncated",
        "cut.mp3": "truncated",
    }


def test_bad_files_skipped_counted_one_warning(tmp_path, write_audio):
    expected = _make_bad_files(tmp_path / "bad", write_audio)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = AudioFolder(tmp_path / "bad", max_duration=DUR)
    msgs = data_warnings(rec)
    assert len(msgs) == 1, msgs
    got = {Path(p).name: r for p, r in ds.skipped}
    assert got == expected
    assert ds.skip_counts()["truncated"] == 3
    assert "skipped 10 file(s)" in msgs[0] and "not_audio (junk.mp3)" in msgs[0]
    assert [f.rel for f in ds.files] == ["good.wav"] and len(ds) == 2
    for x in ds:  # a full pass works
        assert x.max() > 0.5


def test_failure_at_load_time_is_skipped_counted_and_raised_never_silence(tmp_path, write_audio):
    # issue 14: a clip found bad late is reported like one found early (ds.skipped), and
    # ds[i] raises BadClipError naming the file instead of returning silence
    from cqtml_env.features.audio import BadClipError

    root = tmp_path / "late"
    write_audio(root / "ok.wav", seconds=1.0)
    write_audio(root / "src.flac", seconds=4.0)
    flac = (root / "src.flac").read_bytes()
    (root / "src.flac").unlink()
    (root / "bad.flac").write_bytes(flac[: len(flac) // 3])  # header still says 4 s
    ds = AudioFolder(root, max_duration=DUR, validate="header")  # cheap check misses it
    assert not ds.skipped and len(ds) == 5
    last = next(i for i in range(len(ds)) if ds.clip_info(i)["offset"] == 3.0)
    with pytest.warns(DataWarning, match="bad.flac"), pytest.raises(BadClipError, match="bad.flac"):
        ds[last]
    assert "error" in ds.clip_info(last) and last in ds.bad_clips
    assert [(Path(p).name, r.split(":")[0]) for p, r in ds.skipped] == [("bad.flac", "decode_error")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only; later failures are silent
        with pytest.raises(BadClipError):
            ds[last]  # known bad: raises again without decoding
    strict = AudioFolder(root, max_duration=DUR, validate="header", strict=True)
    with pytest.raises(AudioLoadError):
        strict[last]
    # validate="full" finds it up front
    with pytest.warns(DataWarning, match="bad.flac"):
        full = AudioFolder(root, max_duration=DUR, validate="full")
    assert len(full) == 1


def test_no_usable_file_names_the_root(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    with pytest.raises(ValueError, match="nothing_here"):
        AudioFolder(empty)
    (empty / "x.wav").write_bytes(b"garbage" * 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"nothing_here.*1 not_audio"):
            AudioFolder(empty)
    with pytest.raises(FileNotFoundError):
        AudioFolder(tmp_path / "missing")


# ---------------------------------------------------------------------------------------
# FreeMusic (FMA layout)
# ---------------------------------------------------------------------------------------
FMA_TRACKS = [  # track_id, subset, split, genre_top, title, artist, in fma_small/
    (2, "small", "training", "Hip-Hop", "Food", "AWOL"),
    (5, "small", "validation", "Rock", "This World", "AWOL"),
    (10, "medium", "training", "Pop", "Freeway", "Kurt Vile"),
    (140, "large", "test", "Folk", "Queen", None),
    (99134, "small", "test", "Experimental", "Ghost", "Nobody"),  # file missing
]


@pytest.fixture
def fma_root(tmp_path, write_audio) -> Path:
    import pandas as pd

    root = tmp_path / "fma"
    cols = pd.MultiIndex.from_tuples([
        ("set", "subset"), ("set", "split"), ("track", "genre_top"), ("track", "title"),
        ("artist", "name"),
    ])
    df = pd.DataFrame([t[1:] for t in FMA_TRACKS], columns=cols,
                      index=pd.Index([t[0] for t in FMA_TRACKS], name="track_id"))
    (root / "fma_metadata").mkdir(parents=True)
    df.to_csv(root / "fma_metadata" / "tracks.csv")
    for tid, subset, *_ in FMA_TRACKS:
        if tid == 99134:
            continue
        name = f"{tid:06d}"
        for folder, members in (("fma_small", {"small"}), ("fma_medium", {"small", "medium"})):
            if subset in members:
                write_audio(root / folder / name[:3] / f"{name}.mp3", seconds=1.3,
                            freq=200.0 + tid)
    return root


def test_tracks_csv_has_the_real_two_row_header(fma_root):
    lines = (fma_root / "fma_metadata" / "tracks.csv").read_text().splitlines()
    assert lines[0].startswith(",set,set,track")
    assert lines[2].startswith("track_id")


def test_fma_small_with_genres_and_missing_files(fma_root):
    with pytest.warns(DataWarning, match="1 missing"):
        ds = FreeMusic(fma_root, max_duration=DUR)
    assert [ds.clip_info(i)["track_id"] for i in range(len(ds))] == [2, 5]
    info = ds.clip_info(0)
    assert info["genre_top"] == "Hip-Hop" and info["title"] == "Food" and info["artist"] == "AWOL"
    assert info["source"].endswith("fma_small/000/000002.mp3")
    assert info["clip_id"].startswith("fma:")
    assert ds.skipped == [(str(fma_root / "fma_small/099/099134.mp3"), "missing")]
    assert ds[0].shape == ds.processor.shape
    assert ds.genres() == ["Hip-Hop", "Rock"]


def test_fma_subset_is_cumulative_and_split_filters(fma_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        medium = FreeMusic(fma_root, subset="medium", max_duration=DUR)
        train = FreeMusic(fma_root, subset="medium", split="train", max_duration=DUR)
        val = FreeMusic(fma_root, subset="small", split="validation", max_duration=DUR)
    assert [medium.clip_info(i)["track_id"] for i in range(len(medium))] == [2, 5, 10]
    assert medium.clip_info(2)["source"].endswith("fma_medium/000/000010.mp3")
    assert [train.clip_info(i)["genre_top"] for i in range(len(train))] == ["Hip-Hop", "Pop"]
    assert [val.clip_info(i)["track_id"] for i in range(len(val))] == [5]
    with pytest.raises(ValueError, match="split"):
        FreeMusic(fma_root, split="dev")
    with pytest.raises(ValueError, match="subset"):
        FreeMusic(fma_root, subset="tiny")


def test_fma_only_missing_files_is_an_error(fma_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(ValueError, match=str(fma_root.name)):
            FreeMusic(fma_root, split="test")  # 140 is large, 99134 has no file


# ---------------------------------------------------------------------------------------
# MusicNet
# ---------------------------------------------------------------------------------------
HEADER = "start_time,end_time,instrument,note,start_beat,end_beat,note_value\n"


@pytest.fixture
def musicnet_root(tmp_path, write_audio) -> Path:
    root = tmp_path / "musicnet"
    write_audio(root / "train_data" / "1727.wav", seconds=3.0, sr=44100)
    write_audio(root / "train_data" / "1728.wav", seconds=1.5, sr=44100, freq=330.0)
    write_audio(root / "train_data" / "1729.wav", seconds=1.5, sr=44100, freq=550.0)
    write_audio(root / "test_data" / "2303.wav", seconds=1.2, sr=44100)
    (root / "train_labels").mkdir()
    (root / "test_labels").mkdir()
    sr = 44100
    (root / "train_labels" / "1727.csv").write_text(
        HEADER
        + f"{int(0.5 * sr)},{int(1.5 * sr)},1,69,0.0,1.0,Quarter\n"  # spans clips 0 and 1
        + f"{int(2.2 * sr)},{int(2.4 * sr)},41,72,3.0,0.5,Eighth\n"  # in clip 2
    )
    (root / "train_labels" / "1728.csv").write_text(
        HEADER + f"0,{sr},1,60,0,1,Quarter\n" + "abc,100,1,60,0,1,Quarter\n"  # bad row 3
    )
    # 1729 has no label file
    (root / "test_labels" / "2303.csv").write_text(HEADER + f"0,{sr // 2},7,64,0,1,Half\n")
    return root


def test_musicnet_notes_in_window(musicnet_root):
    (musicnet_root / "train_data" / "1730.wav").write_bytes(b"RIFF but not really" * 9)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = MusicNet(musicnet_root, split="train", max_duration=DUR)
    msgs = data_warnings(rec)
    assert len(msgs) == 1 and "1728.csv:3" in msgs[0] and "1 not_audio (1730.wav)" in msgs[0]
    ids = [(ds.clip_info(i)["recording_id"], ds.clip_info(i)["offset"]) for i in range(len(ds))]
    assert ids == [("1727", 0.0), ("1727", 1.0), ("1727", 2.0), ("1728", 0.0), ("1729", 0.0)]
    n0, n1, n2 = (ds.clip_info(i)["notes"] for i in range(3))
    assert n0 == [{"start": pytest.approx(0.5), "end": pytest.approx(1.0), "instrument": 1, "note": 69}]
    assert n1 == [{"start": pytest.approx(0.0), "end": pytest.approx(0.5), "instrument": 1, "note": 69}]
    assert [(n["note"], n["instrument"]) for n in n2] == [(72, 41)]
    assert n2[0]["start"] == pytest.approx(0.2, abs=1e-4)
    # bad row dropped, the good one kept; missing csv -> usable clip without labels
    assert [n["note"] for n in ds.clip_info(3)["notes"]] == [60]
    assert ds.clip_info(3)["labels_ok"] is False
    assert ds.clip_info(4)["notes"] == [] and ds.clip_info(4)["labels_ok"] is False
    assert any("1729.csv" in p for p in ds.label_problems)
    assert ds[4].shape == ds.processor.shape


def test_musicnet_test_split(musicnet_root):
    ds = MusicNet(musicnet_root, split="test", max_duration=DUR)
    assert len(ds) == 1 and ds.clip_info(0)["notes"][0]["note"] == 64
    assert ds.clip_info(0)["labels_ok"] is True
    with pytest.raises(ValueError, match="split"):
        MusicNet(musicnet_root, split="valid")


# ---------------------------------------------------------------------------------------
# make_dataset
# ---------------------------------------------------------------------------------------
def test_make_dataset_forms(folder, fma_root, musicnet_root):
    assert len(make_dataset("synthetic", max_duration=DUR)) == 256
    s = make_dataset("synthetic:5", seed=2, max_duration=DUR)
    assert isinstance(s, SyntheticMusic) and len(s) == 5 and s.seed == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert isinstance(make_dataset(f"folder:{folder}", max_duration=DUR), AudioFolder)
        assert isinstance(make_dataset(f"fma:{fma_root}", max_duration=DUR), FreeMusic)
        m = make_dataset(f"musicnet:{musicnet_root}", split="test", max_duration=DUR)
    assert isinstance(m, MusicNet) and m.split == "test"


@pytest.mark.parametrize("spec", ["nope", "synthetic:many", "folder:", "", "youtube:x"])
def test_make_dataset_errors_list_valid_forms(spec):
    with pytest.raises(ValueError) as err:
        make_dataset(spec)
    msg = str(err.value)
    assert ("synthetic:N" in msg and "musicnet:PATH" in msg) or "needs a path" in msg or "integer" in msg


# ---------------------------------------------------------------------------------------
# cqtml-data CLI
# ---------------------------------------------------------------------------------------
def test_cli_info_and_cache_in_process(folder, tmp_path, capsys):
    from cqtml_env.cli.data import main

    assert main(["info", f"folder:{folder}", "--max-duration", "1"]) == 0
    out = capsys.readouterr().out
    assert "clips: 6" in out and "files: 4 usable" in out
    assert "skipped files: 1 (1 too_short)" in out and "short.wav: too_short" in out
    cache_dir = tmp_path / "cli-cache"
    args = ["cache", f"folder:{folder}", "--cache-dir", str(cache_dir), "--workers", "1",
            "--max-duration", "1", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "6 computed, 0 already cached" in out
    assert main(args) == 0
    assert "0 computed, 6 already cached" in capsys.readouterr().out
    # the data set now reads every clip from that cache
    from cqtml_env import FeatureCache

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = AudioFolder(folder, max_duration=1.0, cache=FeatureCache(cache_dir))
    assert len(ds) == 6
    assert all(ds.cache_key(i) in ds.cache for i in range(len(ds)))
    assert main(["info", f"folder:{folder}", "--max-duration", "1", "--min-duration", "0.5",
                 "--max-clips-per-file", "2"]) == 0
    assert "clips: 6" in capsys.readouterr().out  # 2 + 4 with short.wav back in
    assert main(["info", "nope:x"]) == 2
    assert "valid forms" in capsys.readouterr().err


def test_cli_subprocess_with_workers_reports_skipped(tmp_path, write_audio):
    import subprocess
    import sys

    root = tmp_path / "music"
    write_audio(root / "a.wav", seconds=2.0)
    (root / "broken.wav").write_bytes(b"definitely not audio" * 20)
    exe = Path(sys.executable).with_name("cqtml-data")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cqtml_env.cli.data"]
    r = subprocess.run(
        [*cmd, "cache", f"folder:{root}", "--cache-dir", str(tmp_path / "c"), "--workers", "2",
         "--max-duration", "1", "--chunk", "1"],
        capture_output=True, text=True, timeout=180,
    )
    assert r.returncode == 0, r.stderr
    assert "cached 2 clips" in r.stdout and "2 computed" in r.stdout
    assert "broken.wav: not_audio" in r.stdout
    assert len(list((tmp_path / "c").rglob("*.npy"))) == 2
