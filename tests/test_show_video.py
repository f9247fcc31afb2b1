"""preview.mp4 decoded back with PyAV: H.264 + AAC, the song's duration, and lamps whose
brightness follows each device's level; overview.png is a valid image."""

from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")


def test_preview_decodes_back(band_show):
    from cqtml_env.show.video import lamp_boxes

    path = band_show.files["preview.mp4"]
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264"
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        fps = float(v.average_rate)
        w, h = v.codec_context.width, v.codec_context.height
        frames = []
        times = []
        for f in c.decode(v):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.pts * f.time_base))
    duration = len(frames) / fps
    assert abs(duration - band_show.duration) <= 1.0 / fps + 1e-6
    boxes = lamp_boxes(band_show.rig.num_devices, w, h)
    levels = band_show.levels
    idx = np.clip(np.round(np.array(times) * band_show.frame_rate).astype(int), 0,
                  levels.shape[1] - 1)
    for i, d in enumerate(band_show.rig.devices):
        x0, y0, x1, y1 = boxes[i]
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        patch = np.stack([f[cy - 3 : cy + 3, cx - 3 : cx + 3].reshape(-1, 3).mean(0)
                          for f in frames])  # [n, 3]
        channel = int(np.argmax(d.colour))  # the device colour's strongest primary
        brightness = patch[:, channel]
        r = np.corrcoef(brightness, levels[i, idx])[0, 1]
        assert r > 0.9, (d.name, r)
        # and its absolute value: the colour times the level (video compression aside)
        err = np.abs(brightness - d.colour[channel] * levels[i, idx]).mean()
        assert err < 12, (d.name, err)


def test_overview_png(band_show):
    data = band_show.files["overview.png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 300_000
    with av.open(str(band_show.files["overview.png"])) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert img.ndim == 3 and img.shape[1] >= 400 and img.std() > 10


class _FlatSong:
    """The bits of a song CQT ``overview_image`` reads: a dark, flat spectrum."""

    n_bins, frame_rate = 84, 40.0

    def pooled(self, width: int) -> np.ndarray:
        return np.zeros((self.n_bins, width), np.float32)


def test_overview_draws_devices_in_the_rigs_colours(tmp_path):
    from cqtml_env.env.render import DEVICE_COLOURS
    from cqtml_env.show.export import overview_image
    from cqtml_env.show.rig import load_rig

    colours = [(255, 0, 255), (0, 255, 255), (255, 128, 0)]
    rig_file = tmp_path / "rig.toml"
    rig_file.write_text("".join(
        f'[[devices]]\nname = "d{i}"\ncolour = "#{r:02x}{g:02x}{b:02x}"\nchannel = {i + 1}\n'
        for i, (r, g, b) in enumerate(colours)))
    rig = load_rig(rig_file, num_devices=3)
    levels = np.ones((3, 400), np.float32)  # full on: the light lanes are the pure colours
    img = overview_image(_FlatSong(), levels, rig, width=400)
    pixels = {tuple(p) for p in img.reshape(-1, 3)}
    for c in colours:
        assert c in pixels, c  # the rig's colour, exactly, in its lane
    for c in DEVICE_COLOURS[:3]:
        assert tuple(int(v) for v in c) not in pixels  # not the renderer defaults
