"""Whole-song inference and show files: streaming CQT, seams, song-level context, bounded
memory, csv/json/MIDI read back, atomic output folders, audio formats and bad audio."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import beat_song

from cqtml_env import CQTProcessor
from cqtml_env.contract import SAMPLE_RATE as SR
from cqtml_env.contract import Contract
from cqtml_env.features.audio import AUDIO_EXTENSIONS, AudioLoadError
from cqtml_env.show import make_show
from cqtml_env.show.inference import cqt_to_disk, window_starts, windowed_actions
from cqtml_env.show.stream import AudioReader, StreamStats, cqt_context_samples, stream_cqt


class MeanPolicy:
    """A protocol-only policy: each device = its band's energy over its input's own mean
    (a per-clip statistic, like the real policies' auto-gain)."""

    def __init__(self, num_devices: int = 4) -> None:
        self.num_devices = num_devices

    def generate_actions(self, states, num_actions_per_state=1, temperature=0.0):
        out = []
        for s in states:
            s = torch.as_tensor(s).float().mean(0)  # [F, T]
            bands = torch.stack([b.mean(0) for b in s.chunk(self.num_devices, dim=0)])
            out.append([(bands / bands.mean(-1, keepdim=True).clamp_min(1e-3) * 0.4).clamp(0, 1)])
        return out


def test_stream_cqt_matches_whole_file(tmp_path):
    path = tmp_path / "s.wav"
    sf.write(str(path), beat_song(20.0), SR)
    proc = CQTProcessor()
    audio, _ = sf.read(str(path), dtype="float32", always_2d=True)
    whole = proc.normalise(proc.magnitude(np.ascontiguousarray(audio.T)))
    stats = StreamStats()
    blocks = list(stream_cqt(AudioReader(path, proc.sample_rate), proc, block_frames=200,
                             stats=stats))
    streamed = np.concatenate(blocks, axis=-1)
    assert streamed.shape == whole.shape
    inner = slice(12, whole.shape[-1] - 12)  # first/last 0.3 s: librosa pads differently
    assert np.abs(streamed[..., inner] - whole[..., inner]).max() < 2e-3
    assert stats.blocks == len(blocks) > 3
    assert stats.max_block_samples <= 200 * proc.hop_length + 2 * cqt_context_samples(proc) + 1


def test_resampled_stream_and_formats(tmp_path):
    """opus, aiff (libsndfile) and m4a (PyAV) decode, resampled to the CQT rate."""
    y = beat_song(3.0, sr=48000)
    files = {}
    files["opus"] = tmp_path / "a.opus"
    sf.write(str(files["opus"]), y, 48000, format="OGG", subtype="OPUS")
    files["aiff"] = tmp_path / "a.aiff"
    sf.write(str(files["aiff"]), y, 48000, format="AIFF")
    av = pytest.importorskip("av")
    files["m4a"] = tmp_path / "a.m4a"
    with av.open(str(files["m4a"]), "w") as c:
        s = c.add_stream("aac", rate=48000)
        s.layout = "stereo"
        fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(y.T), format="fltp", layout="stereo")
        fr.sample_rate = 48000
        for pkt in s.encode(fr):
            c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    for kind, p in files.items():
        assert p.suffix in AUDIO_EXTENSIONS
        r = AudioReader(p, SR)
        audio = np.concatenate(list(r.blocks()), axis=1)
        assert audio.shape[0] == 2
        assert abs(audio.shape[1] / SR - 3.0) < 0.1, kind
        assert np.abs(audio).max() > 0.1, kind
    from cqtml_env.datasets.folder import list_audio_files

    listed = {p.name for p in list_audio_files(tmp_path)}  # what AudioFolder scans
    assert {"a.opus", "a.aiff", "a.m4a"} <= listed
    from cqtml_env import AudioFolder

    ds = AudioFolder(tmp_path, max_duration=1.0, output_format="audio")
    assert list(ds.skipped) == [] and len(ds) >= 3
    assert all(np.abs(ds[i]).max() > 0.1 for i in range(3))


def test_bad_audio_gives_clear_errors(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio" * 100)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for p, needle in [(junk, "not readable as audio"), (empty, "empty file"),
                      (text, "not a supported extension"), (tmp_path / "nope.wav", "no such")]:
        with pytest.raises(AudioLoadError, match=needle) as err:
            AudioReader(p, SR)
        assert p.name in str(err.value)


def test_seams_change_no_more_than_inside_windows(band_show):
    """On a steady beat, the frames where windows are cross-faded change no more than the
    frames inside windows."""
    proc = CQTProcessor()
    c = Contract.from_processor(proc)
    n = band_show.activations.shape[1]
    starts = window_starts(n, c.num_frames, c.num_frames - c.frames(1.5))
    assert len(starts) >= 3
    seam = np.zeros(n - 1, bool)
    for prev, s in zip(starts[:-1], starts[1:]):
        seam[s : prev + c.num_frames] = True  # where two windows are cross-faded
    d = np.abs(np.diff(band_show.activations, axis=1)).max(axis=0)
    assert d[seam].max() <= d[~seam].max() + 1e-6
    assert np.percentile(d[seam], 90) <= np.percentile(d[~seam], 90) * 1.5 + 1e-6


@pytest.mark.parametrize("n", [216, 217, 500, 1000, 4321])
def test_crossfade_weights_sum_to_one(n):
    from cqtml_env.show.inference import crossfade_weights

    window, overlap, margin = 216, 64, 11
    starts = window_starts(n, window, window - overlap)
    assert starts[0] == 0 and starts[-1] == max(n - window, 0)
    assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:]))
    total = np.zeros(max(n, window))
    for i, s in enumerate(starts):
        left = starts[i - 1] + window - s if i else 0
        right = s + window - starts[i + 1] if i + 1 < len(starts) else 0
        total[s : s + window] += crossfade_weights(window, left, right, margin)
    np.testing.assert_allclose(total[:n], 1.0, atol=1e-9)


def test_song_context_keeps_per_clip_statistics_from_jumping(tmp_path):
    """A crescendo through a per-clip-normalising policy: with song-level context the
    level steps at window seams are much smaller than with plain windows."""
    t = np.arange(int(24 * SR)) / SR
    y = (np.sin(2 * np.pi * 110 * t) * np.linspace(0.02, 0.9, t.size)).astype(np.float32)
    path = tmp_path / "cresc.wav"
    sf.write(str(path), y, SR)
    proc = CQTProcessor()
    c = Contract.from_processor(proc, num_devices=4)
    song = cqt_to_disk(AudioReader(path, SR), proc, tmp_path / "c.f16")
    kw = dict(window=c.num_frames, num_devices=4, overlap=0, margin=0, chunk=c.frames(1.0))
    plain = windowed_actions(MeanPolicy(), song, context=0, **kw)
    ctx = windowed_actions(MeanPolicy(), song, context=c.frames(10.0), **kw)
    starts = window_starts(song.num_frames, c.num_frames, c.num_frames)[1:-1]

    def seam_jump(a):
        return np.mean([np.abs(a[0, s] - a[0, s - 1]) for s in starts])

    assert seam_jump(ctx) < 0.5 * seam_jump(plain)


def _peak_streaming(tmp_path, seconds: float) -> tuple[int, object]:
    t = np.arange(int(seconds * SR)) / SR
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sign(np.sin(2 * np.pi * t)))).astype(
        np.float32)
    path = tmp_path / f"long{seconds:g}.flac"
    sf.write(str(path), y, SR)
    del t, y
    proc = CQTProcessor()
    tracemalloc.start()
    song = cqt_to_disk(AudioReader(path, SR), proc, tmp_path / f"c{seconds:g}.f16",
                       block_frames=300)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert song.num_frames == 1 + int(seconds * SR) // proc.hop_length
    return peak, song


def test_long_file_memory_is_bounded(tmp_path):
    """The streaming CQT's peak memory does not grow with the song's length: the same code
    path as a 20-minute or 1-hour set (the 20-minute run is in bench/bench_show.py)."""
    _peak_streaming(tmp_path, 5.0)  # warm-up: librosa's filter caches
    short, _ = _peak_streaming(tmp_path, 20.0)
    long, song = _peak_streaming(tmp_path, 80.0)
    decoded_long = int(80.0 * SR) * 2 * 4  # the long song's audio as float32 stereo
    assert long < 1.25 * short, (short, long)
    assert long < decoded_long, (long, decoded_long)
    c = Contract.from_processor(CQTProcessor(), num_devices=4)
    acts = windowed_actions(MeanPolicy(), song, window=c.num_frames, num_devices=4,
                            overlap=c.frames(1.5), margin=c.frames(0.25),
                            context=c.frames(5.0), chunk=c.frames(1.0))
    assert acts.shape == (4, song.num_frames) and np.isfinite(acts).all()


def test_show_files_read_back(band_show):
    import mido

    files = band_show.files
    assert set(files) == {"show.csv", "show.json", "show.mid", "overview.png", "preview.mp4"}
    levels, fr = band_show.levels, band_show.frame_rate
    assert fr == CQTProcessor().frame_rate
    with open(files["show.csv"]) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time_s", *band_show.rig.names]
    body = np.array(rows[1:], dtype=float)
    assert body.shape == (levels.shape[1], 5)
    np.testing.assert_allclose(body[:, 0], np.arange(levels.shape[1]) / fr, atol=1e-4)
    np.testing.assert_allclose(body[:, 1:].T, levels, atol=1e-4)
    doc = json.loads(files["show.json"].read_text())
    assert doc["frame_rate"] == fr and doc["num_frames"] == levels.shape[1]
    assert [d["name"] for d in doc["devices"]] == band_show.rig.names
    np.testing.assert_allclose(doc["levels"]["bass"], levels[0], atol=1e-4)
    # the raw policy activations (pre-gamma, pre-limiter) travel too, per device
    assert list(doc["activations"]) == band_show.rig.names
    for i, n in enumerate(band_show.rig.names):
        np.testing.assert_allclose(doc["activations"][n], band_show.activations[i], atol=1e-4)
    assert doc["limiter"]["enabled"] is True
    # MIDI: tempo detected (120 BPM song), one CC lane per device, values at frame times
    assert band_show.bpm is not None and abs(band_show.bpm - 120) < 6
    mid = mido.MidiFile(str(files["show.mid"]))
    tempo = [m.tempo for m in mid.tracks[0] if m.type == "set_tempo"][0]
    assert abs(mido.tempo2bpm(tempo) - band_show.bpm) < 0.01
    values = {d.midi_cc: [] for d in band_show.rig.devices}
    now = 0.0
    for m in mid:  # iterating a MidiFile yields messages with time in seconds
        now += m.time
        if m.type == "control_change":
            values[m.control].append((now, m.value))
    for i, d in enumerate(band_show.rig.devices):
        ev = values[d.midi_cc]
        assert ev and ev[0][0] == 0.0
        times = np.array([e[0] for e in ev])
        vals = np.array([e[1] for e in ev])
        frame_t = np.arange(levels.shape[1]) / fr
        held = vals[np.searchsorted(times, frame_t + 0.5 / fr, side="right") - 1]
        expected = np.round(levels[i] * 127)
        assert np.mean(held == expected) > 0.98


def test_show_respects_the_flash_limit(band_show):
    from test_show_limiter import max_flashes_per_window

    for d in range(4):
        assert max_flashes_per_window(band_show.levels[d], band_show.frame_rate) <= 3
    rig_th = band_show.rig.limiter.rig_threshold  # the rig as a whole (see limiter doc)
    assert max_flashes_per_window(band_show.levels.mean(0), band_show.frame_rate,
                                  threshold=rig_th) <= 3


class ExplodingPolicy(MeanPolicy):
    def __init__(self):
        super().__init__(4)
        self.calls = 0

    def generate_actions(self, states, num_actions_per_state=1, temperature=0.0):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom")
        return super().generate_actions(states, num_actions_per_state, temperature)


def test_nothing_half_written(show_song, tmp_path, monkeypatch):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        make_show(show_song, ExplodingPolicy(), out=out, progress=False,
                  outputs=("csv", "json"), window_s=2.0)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    import cqtml_env.show.export as export

    def broken_png(path, rgb):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_png", broken_png)
    with pytest.raises(OSError, match="disk full"):
        make_show(show_song, MeanPolicy(), out=out, progress=False,
                  outputs=("csv", "json", "overview"))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_wrong_device_count_is_a_clear_error(show_song, tmp_path):
    with pytest.raises(ValueError, match="drives 3 devices but the rig"):
        make_show(show_song, MeanPolicy(3), out=tmp_path / "o", progress=False,
                  rig=__import__("cqtml_env.show.rig", fromlist=["x"]).default_rig(4))


def test_cli_band_follow_and_unsafe_warning(show_song, tmp_path, capsys):
    from cqtml_env.cli.show import main

    out = tmp_path / "cli"
    rc = main([str(show_song), "--policy", "band-follow", "--out", str(out), "--no-video",
               "--quiet"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"show.csv", "show.json", "show.mid",
                                               "overview.png"}
    assert "flash limiter: on" in capsys.readouterr().out
    rc = main([str(show_song), "--policy", "band-follow", "--out", str(out), "--quiet",
               "--outputs", "csv", "--unsafe-no-limiter"])
    assert rc == 0 and "limiter is OFF" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[[devices]]\nname = 'a'\nchannel = 0\n")
    assert main([str(show_song), "--policy", "band-follow", "--rig", str(bad)]) == 2
    assert "line 3" in capsys.readouterr().err
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"nope" * 10)
    assert main([str(junk), "--policy", "band-follow", "--out", str(tmp_path / "x")]) == 2
    assert "junk.mp3" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_show_does_not_import_the_policy_package():
    code = (
        "import sys, numpy as np, soundfile as sf, tempfile, os, torch\n"
        "from cqtml_env.show import make_show\n"
        "d = tempfile.mkdtemp(); p = os.path.join(d, 's.wav')\n"
        "from cqtml_env.contract import SAMPLE_RATE as sr\n"
        "sf.write(p, np.sin(np.arange(44100) * 0.05).astype('float32'), sr)\n"
        "class P:\n"
        "    num_devices = 4\n"
        "    def generate_actions(self, states, num_actions_per_state=1, temperature=0.0):\n"
        "        return [[torch.full((4, s.shape[-1]), 0.5)] for s in states]\n"
        "s = make_show(p, P(), out=os.path.join(d, 'o'), progress=False, outputs=('csv',))\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'cqtml_policy']\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_bad_input_is_a_clear_error_and_writes_nothing(show_song, tmp_path, capsys):
    from cqtml_env.cli.show import main

    out = tmp_path / "out"
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really" * 50)
    assert main([str(junk), "--policy", "band-follow", "--out", str(out), "--quiet"]) == 2
    assert "junk.wav" in capsys.readouterr().err
    text = tmp_path / "song.txt"
    text.write_text("la la la")
    assert main([str(text), "--policy", "band-follow", "--out", str(out), "--quiet"]) == 2
    assert "not a supported extension" in capsys.readouterr().err
    rig = tmp_path / "rig.toml"
    rig.write_text("[[devices]]\nname = 'a'\ngamma = 'steep'\n")
    assert main([str(show_song), "--policy", "band-follow", "--rig", str(rig), "--out",
                 str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad rig file" in err and "line 3" in err and "gamma" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "junk.wav", "rig.toml", "song.txt"]
