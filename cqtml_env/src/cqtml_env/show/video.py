"""``preview.mp4``: the rig's devices as lamps in their colours above a scrolling CQT, with
the song's audio (H.264 yuv420p + AAC, ``+faststart``: plays in any browser). PyAV ships
its own ffmpeg, so no system ffmpeg is needed.

Layout (``W x H``): the top ``lamp_fraction`` holds one lamp per device (a rectangle whose
colour is the device colour times its intensity, name underneath); below, the CQT of about
``span_s`` seconds around the playhead (a white line in the middle), low notes at the bottom.

The CQT scrolls by a whole number of pixels per video frame, so each frame's CQT is exactly
the previous one shifted: H.264's motion search then codes it as a shift instead of new
pixels (measured on a 2-min song: x264 ~15 % less CPU, the file ~20 % smaller than with the
earlier free-running scroll), and a frame's CQT is one slice of a pixel-grid copy.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading

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


def rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    """``[..., 3]`` RGB -> ``[..., 3]`` Y'CbCr, BT.601 limited range (what H.264 players
    assume for an untagged SD stream, and what ffmpeg's rgb24->yuv420p scaler produces)."""
    x = np.asarray(rgb, np.float64) / 255.0
    m = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0],
                  [112.0, -93.786, -18.214]])
    return np.clip(np.rint(x @ m.T + np.array([16.0, 128.0, 128.0])), 0, 255).astype(np.uint8)


class PreviewRenderer:
    """Draws video frames; fixed size, numpy only.

    :meth:`frame_yuv` draws straight into the encoder's I420 (yuv420p) layout: converting
    an RGB frame with ffmpeg's scaler cost more than the H.264 encode itself. Every picture
    element is either static (background, names: converted once), a flat lamp colour (one
    conversion per lamp), or a colour-mapped CQT value (a look-up table per plane)."""

    def __init__(self, songcqt, levels: np.ndarray, rig: Rig, size: tuple[int, int],
                 span_s: float = 8.0, lamp_fraction: float = 0.5, fps: int = 20) -> None:
        self.w, self.h = (int(size[0]) // 2 * 2, int(size[1]) // 2 * 2)
        self.song, self.levels, self.rig = songcqt, levels, rig
        self.fr = songcqt.frame_rate
        self.top = int(self.h * lamp_fraction)
        self.boxes = lamp_boxes(rig.num_devices, self.w, self.h, lamp_fraction)
        # scroll speed: a whole, even number of pixels per video frame (see the module doc;
        # even, so the half-width chroma planes shift by whole pixels too)
        self.px_per_s = max(2, 2 * int(round(self.w / span_s / fps / 2))) * int(fps)
        self.rows = (np.arange(self.h - self.top)[::-1] * songcqt.n_bins // (self.h - self.top))
        base = np.empty((self.h, self.w, 3), np.uint8)
        base[:] = BACKGROUND
        for i, d in enumerate(rig.devices):
            x0, _, x1, y1 = self.boxes[i]
            draw_text(base, d.name[: max(1, (x1 - x0) // 12)], x0, y1 + 6, scale=2)
        self.base = base
        # display copy: mono uint8 [screen rows, CQT frames + a blank column] (~5 KB a
        # second), and the CQT frame each pixel column of the scrolling strip shows: column
        # j shows time (j - w/2) / px_per_s (blank outside the song)
        n = songcqt.num_frames
        frames = np.zeros((songcqt.n_bins, n + 1), np.uint8)
        for s in range(0, n, 8192):
            block = songcqt.frames(s, min(s + 8192, n)).max(axis=0)
            frames[:, s : s + block.shape[1]] = np.clip(block * 255, 0, 255).astype(np.uint8)
        self.display = np.ascontiguousarray(frames[self.rows])  # rows in screen order
        cols = int(np.ceil(n / self.fr * self.px_per_s)) + self.w + 2
        idx = np.rint((np.arange(cols) - self.w // 2) / self.px_per_s * self.fr).astype(np.int64)
        idx[(idx < 0) | (idx >= n)] = n
        self.column_frame = idx
        self._init_yuv()

    def _offset(self, t: float) -> int:
        """First pixel column of the frame at ``t`` s (its playhead column shows ``t``),
        rounded to an even column so the half-width chroma planes line up."""
        off = 2 * int(round(t * self.px_per_s / 2))
        return min(max(off, 0), (len(self.column_frame) - self.w) // 2 * 2)

    def _init_yuv(self) -> None:
        w, h, top = self.w, self.h, self.top
        yuv = rgb_to_yuv(self.base).astype(np.float64)
        self.base_y = np.ascontiguousarray(yuv[..., 0].astype(np.uint8))
        # chroma: mean of each 2x2 block
        c = yuv[..., 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
        self.base_u = np.rint(c[..., 0]).astype(np.uint8)
        self.base_v = np.rint(c[..., 1]).astype(np.uint8)
        lut = rgb_to_yuv(_LUT)  # [256, 3]
        # the colour map applied once to the whole display copy (per plane), so a frame is
        # one slice per plane; chroma rows of the CQT region (row j covers luma rows 2j, 2j + 1)
        self.ctop = (top + 1) // 2
        rows_c = self.display[2 * self.ctop - top :: 2]
        # on the pixel grid, colour-mapped: Y [rows, columns] (~11 KB a second at 80 px/s),
        # U and V at even columns only (the chroma planes are half width)
        self.display_y = np.take(lut[:, 0], self.display[:, self.column_frame])
        self.display_u = np.take(lut[:, 1], rows_c[:, self.column_frame[::2]])
        self.display_v = np.take(lut[:, 2], rows_c[:, self.column_frame[::2]])
        self.white = rgb_to_yuv(np.array([255, 255, 255]))
        self.colours = np.array([d.colour for d in self.rig.devices], np.float64)  # [D, 3]

    def frame_yuv(self, t: float) -> np.ndarray:
        """The frame at ``t`` seconds as I420: ``[h * 3 // 2, w]`` uint8 (Y, then U, V)."""
        w, h, top = self.w, self.h, self.top
        flat = np.empty(h * w * 3 // 2, np.uint8)
        q = (h // 2) * (w // 2)
        y = flat[: h * w].reshape(h, w)
        u = flat[h * w : h * w + q].reshape(h // 2, w // 2)
        v = flat[h * w + q :].reshape(h // 2, w // 2)
        y[:top] = self.base_y[:top]
        u[: self.ctop] = self.base_u[: self.ctop]
        v[: self.ctop] = self.base_v[: self.ctop]
        n = self.levels.shape[1]
        idx = min(max(int(round(t * self.fr)), 0), n - 1)
        lamps = rgb_to_yuv(np.round(self.colours * self.levels[:, idx : idx + 1]))  # [D, 3]
        for i, (cy, cu, cv) in enumerate(lamps.tolist()):
            x0, y0, x1, y1 = self.boxes[i]
            y[y0:y1, x0:x1] = cy
            u[(y0 + 1) // 2 : y1 // 2, (x0 + 1) // 2 : x1 // 2] = cu
            v[(y0 + 1) // 2 : y1 // 2, (x0 + 1) // 2 : x1 // 2] = cv
        off = self._offset(t)
        y[top:] = self.display_y[:, off : off + w]
        u[self.ctop :] = self.display_u[:, off // 2 : (off + w) // 2]
        v[self.ctop :] = self.display_v[:, off // 2 : (off + w) // 2]
        y[top:, w // 2] = self.white[0]
        u[self.ctop :, w // 4] = self.white[1]
        v[self.ctop :, w // 4] = self.white[2]
        return flat.reshape(h * 3 // 2, w)

    def frame(self, t: float) -> np.ndarray:
        img = self.base.copy()
        n = self.levels.shape[1]
        idx = min(max(int(round(t * self.fr)), 0), n - 1)
        for i, d in enumerate(self.rig.devices):
            x0, y0, x1, y1 = self.boxes[i]
            img[y0:y1, x0:x1] = np.round(np.array(d.colour) * float(self.levels[i, idx]))
        off = self._offset(t)
        cols = self.column_frame[off : off + self.w]
        np.take(_LUT, self.display[:, cols], axis=0, out=img[self.top:])
        img[self.top :, self.w // 2] = 255
        return img


def _encode_audio(stream, blocks, samples_total: int, out: queue.Queue) -> None:
    """Encode ``blocks`` to AAC packets on ``stream`` and put lists of them on ``out``; then
    ``None`` (or the exception). Runs in its own thread: PyAV encodes without the GIL, so the
    AAC work overlaps the video's."""
    try:
        import av

        fifo = av.AudioFifo()
        pts = 0
        fed = 0
        for a in blocks:
            a = a[:, : max(samples_total - fed, 0)]
            if not a.shape[1]:
                break
            fed += a.shape[1]
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(a), format="fltp",
                                            layout="stereo")
            af.sample_rate = AUDIO_RATE
            af.pts = None
            fifo.write(af)
            while fifo.samples >= 1024:
                f = fifo.read(1024)
                f.pts = pts
                pts += f.samples
                out.put(stream.encode(f))
        rest = fifo.read()
        if rest is not None and rest.samples:
            rest.pts = pts
            out.put(stream.encode(rest))
        out.put(stream.encode(None))
        out.put(None)
    except BaseException as exc:  # handed to the muxing thread, which raises it
        out.put(exc)


def write_preview(path: str | os.PathLike, *, song: str | os.PathLike, songcqt, levels,
                  rig: Rig, size: tuple[int, int] = (480, 272), fps: int = 20,
                  progress: bool = False) -> None:
    """Encode the preview video of ``levels`` ``[D, N]`` with ``song``'s audio.

    Frames are drawn straight in yuv420p (:meth:`PreviewRenderer.frame_yuv`); the audio is
    decoded and AAC-encoded in a second thread while the main thread draws and encodes the
    video, and muxes both (bounded queue: memory does not grow with the song)."""
    import av

    from cqtml_env.show.stream import AudioReader

    r = PreviewRenderer(songcqt, levels, rig, size, fps=fps)
    duration = songcqt.duration
    n_video = max(1, int(round(duration * fps)))
    samples_total = int(round(duration * AUDIO_RATE))
    audio_blocks = AudioReader(song, AUDIO_RATE).blocks(seconds=2.0)
    with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = r.w, r.h, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "30"}
        aus = c.add_stream("aac", rate=AUDIO_RATE)
        aus.layout = "stereo"
        aus.options = {"aac_coder": "fast"}  # ffmpeg's fast AAC search: ~25 % less audio time
        aq: queue.Queue = queue.Queue(maxsize=256)  # ~12 s of audio packets
        worker = threading.Thread(target=_encode_audio, args=(aus, audio_blocks,
                                                              samples_total, aq), daemon=True)
        audio_done = False

        def drain(block: bool) -> None:
            nonlocal audio_done
            while not audio_done:
                try:
                    item = aq.get(block=block)
                except queue.Empty:
                    return
                if item is None:
                    audio_done = True
                elif isinstance(item, BaseException):
                    audio_done = True
                    raise item
                else:
                    c.mux(item)

        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_video, unit="frame", desc="preview.mp4")
        worker.start()
        try:
            for k in range(n_video):
                frame = av.VideoFrame.from_ndarray(r.frame_yuv(k / fps), format="yuv420p")
                frame.pts = k
                c.mux(vs.encode(frame))
                drain(block=False)  # mux the audio encoded so far (interleaved)
                if bar:
                    bar.update(1)
            c.mux(vs.encode(None))
            drain(block=True)
        finally:
            if not audio_done:  # an error in the video: let the worker finish, then close
                while worker.is_alive():
                    with contextlib.suppress(queue.Empty):
                        aq.get(timeout=0.1)
            worker.join()
            if bar:
                bar.close()


__all__ = ["write_preview", "PreviewRenderer", "lamp_boxes", "rgb_to_yuv"]
