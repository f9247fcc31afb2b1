"""``preview.mp4``: the rig's devices as lamps in their colours above a scrolling CQT, with
the song's audio (H.264 yuv420p + AAC, ``+faststart``: plays in any browser). PyAV ships
its own ffmpeg, so no system ffmpeg is needed.

Layout (``W x H``): the top ``lamp_fraction`` holds one lamp per device (a rectangle whose
colour is the device colour times its intensity, name underneath); below, the CQT of
``span_s`` seconds around the playhead (a white line in the middle), low notes at the bottom.
"""

from __future__ import annotations

import os

import numpy as np

from cqtml_env.contract import SAMPLE_RATE
from cqtml_env.env.render import _LUT, BACKGROUND, draw_text
from cqtml_env.show.rig import Rig

AUDIO_RATE = SAMPLE_RATE  # the CQT's rate: enough for a preview, and half the AAC work of 44.1k


def lamp_boxes(num_devices: int, width: int, height: int, lamp_fraction: float = 0.5
               ) -> list[tuple[int, int, int, int]]:
    """``(x0, y0, x1, y1)`` of each device's lamp in the frame (tests sample their centres)."""
    top = int(height * lamp_fraction)
    cell = width // num_devices
    pad = max(4, cell // 8)
    return [(i * cell + pad, pad, (i + 1) * cell - pad, top - 24) for i in range(num_devices)]


class PreviewRenderer:
    """Draws video frames; fixed size, numpy only."""

    def __init__(self, songcqt, levels: np.ndarray, rig: Rig, size: tuple[int, int],
                 span_s: float = 8.0, lamp_fraction: float = 0.5) -> None:
        self.w, self.h = (int(size[0]) // 2 * 2, int(size[1]) // 2 * 2)
        self.song, self.levels, self.rig = songcqt, levels, rig
        self.fr = songcqt.frame_rate
        self.top = int(self.h * lamp_fraction)
        self.boxes = lamp_boxes(rig.num_devices, self.w, self.h, lamp_fraction)
        self.span = max(2, int(round(span_s * self.fr)))
        self.rows = (np.arange(self.h - self.top)[::-1] * songcqt.n_bins // (self.h - self.top))
        self.cols = np.arange(self.w) * self.span // self.w
        base = np.empty((self.h, self.w, 3), np.uint8)
        base[:] = BACKGROUND
        for i, d in enumerate(rig.devices):
            x0, _, x1, y1 = self.boxes[i]
            draw_text(base, d.name[: max(1, (x1 - x0) // 12)], x0, y1 + 6, scale=2)
        self.base = base
        # display copy: mono uint8 [screen rows, N] (~136 bytes a frame, 21 MB an hour)
        n = songcqt.num_frames
        display = np.zeros((songcqt.n_bins, n + self.span), np.uint8)
        for s in range(0, n, 8192):
            block = songcqt.frames(s, min(s + 8192, n)).max(axis=0)
            display[:, self.span // 2 + s : self.span // 2 + s + block.shape[1]] = np.clip(
                block * 255, 0, 255).astype(np.uint8)
        # rows already in screen order, so a frame is one column gather and one colour map
        self.display = np.ascontiguousarray(display[self.rows])

    def frame(self, t: float) -> np.ndarray:
        img = self.base.copy()
        n = self.levels.shape[1]
        idx = min(max(int(round(t * self.fr)), 0), n - 1)
        for i, d in enumerate(self.rig.devices):
            x0, y0, x1, y1 = self.boxes[i]
            img[y0:y1, x0:x1] = np.round(np.array(d.colour) * float(self.levels[i, idx]))
        # the span centred on idx (the display copy is padded by span/2 on each side)
        np.take(_LUT, np.take(self.display, idx + self.cols, axis=1), axis=0, out=img[self.top:])
        img[self.top :, self.w // 2] = 255
        return img


def write_preview(path: str | os.PathLike, *, song: str | os.PathLike, songcqt, levels,
                  rig: Rig, size: tuple[int, int] = (480, 272), fps: int = 20,
                  progress: bool = False) -> None:
    """Encode the preview video of ``levels`` ``[D, N]`` with ``song``'s audio."""
    import av

    from cqtml_env.show.stream import AudioReader

    r = PreviewRenderer(songcqt, levels, rig, size)
    duration = songcqt.duration
    n_video = max(1, int(round(duration * fps)))
    audio_blocks = AudioReader(song, AUDIO_RATE).blocks(seconds=2.0)
    with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = r.w, r.h, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "30"}
        aus = c.add_stream("aac", rate=AUDIO_RATE)
        aus.layout = "stereo"
        aus.options = {"aac_coder": "fast"}  # ffmpeg's fast AAC search: ~25 % less audio time
        fifo = av.AudioFifo()
        audio_pts = 0
        audio_done = False
        samples_total = int(round(duration * AUDIO_RATE))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_video, unit="frame", desc="preview.mp4")
        for k in range(n_video):
            frame = av.VideoFrame.from_ndarray(r.frame(k / fps), format="rgb24")
            frame.pts = k
            c.mux(vs.encode(frame))
            # keep audio up to the video time (interleaved muxing, bounded memory)
            want = min(int((k + 1) / fps * AUDIO_RATE), samples_total)
            while not audio_done and audio_pts + fifo.samples < want:
                try:
                    a = next(audio_blocks)
                except StopIteration:
                    audio_done = True
                    break
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(a), format="fltp",
                                                layout="stereo")
                af.sample_rate = AUDIO_RATE
                af.pts = None
                fifo.write(af)
            while fifo.samples >= 1024:
                out = fifo.read(1024)
                out.pts = audio_pts
                audio_pts += out.samples
                c.mux(aus.encode(out))
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        rest = fifo.read()
        if rest is not None and rest.samples:
            rest.pts = audio_pts
            c.mux(aus.encode(rest))
        c.mux(aus.encode(None))
        c.mux(vs.encode(None))


__all__ = ["write_preview", "PreviewRenderer", "lamp_boxes"]
