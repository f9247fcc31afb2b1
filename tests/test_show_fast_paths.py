"""The show's fast paths give the same show as the plain ones: the policy run while the
CQT streams (context from seeks, regular windows) equals it run on the stored CQT; window
layouts never put a frame in three windows; frames drawn in yuv420p look like the RGB
frames; the hand-written MIDI file equals mido's."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import beat_song
from test_show_inference import MeanPolicy

from cqtml_env import CQTProcessor
from cqtml_env.contract import SAMPLE_RATE as SR
from cqtml_env.contract import Contract
from cqtml_env.show.inference import (
    WindowRunner,
    context_frames,
    context_from_audio,
    cqt_to_disk,
    crossfade_weights,
    window_starts,
    windowed_actions,
)
from cqtml_env.show.stream import AudioReader


@pytest.mark.parametrize("rate", [SR, 44100])
def test_streamed_policy_equals_policy_on_the_stored_cqt(tmp_path, rate):
    """Context from seeks (resampled too) = context read from the stored CQT, and the policy
    run block by block during a threaded CQT = run afterwards from disk."""
    path = tmp_path / f"s{rate}.flac"
    sf.write(str(path), beat_song(21.0, sr=rate), rate)
    proc = CQTProcessor()
    c = Contract.from_processor(proc, num_devices=4)
    reader = AudioReader(path, SR)
    kw = dict(window=c.num_frames, num_devices=4, overlap=c.frames(1.5), margin=c.frames(0.25))
    ctx = context_from_audio(reader, proc, context=c.frames(5.0), chunk=c.frames(1.0),
                             window=c.num_frames)
    runner = WindowRunner(MeanPolicy(), ctx=ctx, batch_size=3, **kw)
    song = cqt_to_disk(reader, proc, tmp_path / "c.f16", on_block=runner.feed, threaded=True,
                       block_frames=150)
    assert runner.outputs  # windows ran while the CQT streamed, not all at the end
    streamed = runner.finish(song.num_frames, song.frames)
    stored_ctx = context_frames(song, c.frames(5.0), c.frames(1.0))
    assert ctx.shape == stored_ctx.shape
    assert np.abs(ctx - stored_ctx).max() < 5e-3
    plain = windowed_actions(MeanPolicy(), song, context=c.frames(5.0), chunk=c.frames(1.0),
                             **kw)
    np.testing.assert_allclose(streamed, plain, atol=2e-3)


def test_threaded_cqt_errors_reach_the_caller(tmp_path):
    path = tmp_path / "s.wav"
    sf.write(str(path), beat_song(8.0), SR)
    proc = CQTProcessor()

    def boom(block):
        raise RuntimeError("policy failed")

    with pytest.raises(RuntimeError, match="policy failed"):
        cqt_to_disk(AudioReader(path, SR), proc, tmp_path / "c.f16", on_block=boom,
                    threaded=True, block_frames=100)


def test_window_layout_never_puts_a_frame_in_three_windows():
    """(Songs over ~14 s: on shorter ones gaps <= hop force a triple overlap; the show's cross-fade divides by the summed weights,
    so a short song's three-window overlap is still a weighted mean.)"""
    window, hop, margin = 216, 216 - 64, 11
    for n in range(window + 1, 4000, 7):
        starts = window_starts(n, window, hop)
        assert starts[0] == 0 and starts[-1] == n - window
        gaps = np.diff(starts)
        assert gaps.max() <= hop and gaps.min() > 0, n
        cover = np.zeros(n, int)
        total = np.zeros(n)
        for i, s in enumerate(starts):
            cover[s : s + window] += 1
            left = starts[i - 1] + window - s if i else 0
            right = s + window - starts[i + 1] if i + 1 < len(starts) else 0
            total[s : s + window] += crossfade_weights(window, left, right, margin)
        if n - window >= hop * window / (2 * hop - window):  # shorter: can't be helped
            assert cover.max() <= 2, n
            np.testing.assert_allclose(total, 1.0, atol=1e-9)
        # the regular prefix is what a streaming run computes before the end is known
        if n > 1500:
            assert starts[:3] == [0, hop, 2 * hop]


def test_yuv_frames_match_the_rgb_frames(tmp_path):
    av = pytest.importorskip("av")
    from cqtml_env.show.rig import load_rig
    from cqtml_env.show.video import PreviewRenderer

    path = tmp_path / "s.wav"
    sf.write(str(path), beat_song(12.0), SR)
    proc = CQTProcessor()
    song = cqt_to_disk(AudioReader(path, SR), proc, tmp_path / "c.f16")
    levels = np.random.default_rng(0).random((4, song.num_frames)).astype(np.float32)
    for size in [(480, 272), (322, 182)]:
        r = PreviewRenderer(song, levels, load_rig(None, num_devices=4), size)
        for t in (0.0, 3.3, 9.9):
            yuv = r.frame_yuv(t)
            assert yuv.shape == (r.h * 3 // 2, r.w) and yuv.dtype == np.uint8
            back = av.VideoFrame.from_ndarray(yuv, format="yuv420p").to_ndarray(format="rgb24")
            err = np.abs(back.astype(int) - r.frame(t).astype(int))
            assert err.mean() < 3 and np.percentile(err, 95) < 12, (size, t, err.mean())


def test_midi_file_equals_midos(tmp_path):
    mido = pytest.importorskip("mido")
    from cqtml_env.show.export import TICKS_PER_BEAT, write_midi
    from cqtml_env.show.rig import load_rig

    rig = load_rig(None, num_devices=4)
    fr = CQTProcessor().frame_rate
    levels = np.random.default_rng(1).random((4, 3000)) ** 3
    levels[:, 500:900] = 0.5  # no events while constant
    write_midi(tmp_path / "a.mid", levels, rig, fr, 97.0)
    got = [m for m in mido.MidiFile(tmp_path / "a.mid").tracks[0]]
    values = np.round(np.clip(levels, 0, 1) * 127).astype(int)
    ticks = np.round(np.arange(levels.shape[1]) / fr * TICKS_PER_BEAT * 97.0 / 60.0)
    want, last, prev = [], 0, np.full(4, -1)
    for t in range(levels.shape[1]):
        for i in np.nonzero(values[:, t] != prev)[0]:
            d = rig.devices[i]
            want.append(mido.Message("control_change", channel=d.midi_channel - 1,
                                     control=d.midi_cc, value=int(values[i, t]),
                                     time=int(ticks[t] - last)))
            last = int(ticks[t])
        prev = values[:, t]
    ccs = [m for m in got if m.type == "control_change"]
    assert len(ccs) == len(want) > 1000
    assert all(a == b for a, b in zip(ccs, want))
    assert [m.type for m in got if m.is_meta] == ["set_tempo", "track_name", "end_of_track"]
    assert abs(mido.tempo2bpm([m for m in got if m.type == "set_tempo"][0].tempo) - 97) < 0.01


def test_preview_cqt_scrolls_by_whole_even_pixels(tmp_path):
    """Each video frame's CQT is the previous one shifted by a whole, even number of pixels
    (what lets H.264 code it as motion), and the playhead column shows the frame's time."""
    from cqtml_env.show.rig import load_rig
    from cqtml_env.show.video import PreviewRenderer

    path = tmp_path / "s.wav"
    sf.write(str(path), beat_song(12.0), SR)
    proc = CQTProcessor()
    song = cqt_to_disk(AudioReader(path, SR), proc, tmp_path / "c.f16")
    levels = np.zeros((4, song.num_frames), np.float32)
    fps = 20
    r = PreviewRenderer(song, levels, load_rig(None, num_devices=4), (480, 272), fps=fps)
    k = r.px_per_s // fps
    assert k >= 2 and k % 2 == 0 and r.px_per_s % fps == 0
    mid = r.w // 2
    for n in (30, 61, 150):
        a = r.frame_yuv(n / fps)[r.top : r.h].astype(int)
        b = r.frame_yuv((n + 1) / fps)[r.top : r.h].astype(int)
        keep = np.ones(r.w - k, bool)
        keep[[mid - k, mid]] = False  # the playhead line sits still on the moving picture
        np.testing.assert_array_equal(b[:, : r.w - k][:, keep], a[:, k:][:, keep])
        assert np.abs(a[:, k:]).sum() > 0  # there is a picture to shift
    # the playhead column shows the CQT frame at t (one frame of the column grid either side)
    t = 6.0
    j = r._offset(t) + mid
    frame = int(round((j - r.w // 2) / r.px_per_s * song.frame_rate))
    assert abs(frame - round(t * song.frame_rate)) <= 1


@pytest.mark.parametrize("n,width", [(10000, 1200), (9000, 7), (4097, 4096), (100, 300)])
def test_pooled_overview_columns_are_the_mean_of_their_frames(tmp_path, n, width):
    """SongCQT.pooled (the overview's CQT): each column the mean over its frames of the
    channel max, across the 4096-frame read blocks."""
    from cqtml_env.show.inference import SongCQT
    from cqtml_env.show.stream import StreamStats

    x = np.random.default_rng(n).random((n, 2, 84)).astype(np.float16)
    x.tofile(tmp_path / "c.f16")
    song = SongCQT(tmp_path / "c.f16", n, 84, 43.0, n / 43.0, np.zeros(n, np.float32),
                   StreamStats())
    got = song.pooled(width)
    w = min(width, n)
    edges = np.linspace(0, n, w + 1).astype(int)
    mono = x.astype(np.float32).max(axis=1)
    want = np.stack([mono[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])], axis=1)
    assert got.shape == (84, w)
    np.testing.assert_allclose(got, want, atol=1e-6)
