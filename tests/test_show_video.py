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
