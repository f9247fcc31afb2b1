"""Numpy-only rendering of a clip's CQT with device activations drawn over it.

No matplotlib on the hot path: ``render_mode="rgb_array"`` is used by video recorders every
episode, so the image is composed from arrays (colour map lookup, ``np.repeat`` upscaling, a
tiny built-in 5x7 bitmap font for labels). Layout, top to bottom:

- a header line (clip id, proxy and gold scores when known);
- the CQT (mean of both channels, low notes at the bottom) in a dark colour map, with each
  device's frequency band marked by a coloured bar on the left and its activation drawn as a
  trace inside that band (band bottom = 0, band top = 1), time-aligned with the CQT frames;
- one "light" lane per device whose brightness is the activation, as the lamp would show it;
- a time axis in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cqtml_env.contract import device_bands

# Device colours (colour-blind friendly: Okabe-Ito orange, sky blue, bluish green, yellow,
# vermillion, reddish purple, blue); cycled for more devices.
DEVICE_COLOURS = np.array(
    [
        [230, 159, 0],
        [86, 180, 233],
        [0, 158, 115],
        [240, 228, 66],
        [213, 94, 0],
        [204, 121, 167],
        [0, 114, 178],
    ],
    dtype=np.float32,
)

# Dark-to-light map (black -> deep blue -> teal -> pale grey); kept low in saturation so that
# the coloured device traces stay the most salient thing in the picture.
_CMAP_ANCHORS = np.array(
    [
        [0.00, 8, 8, 14],
        [0.35, 28, 40, 80],
        [0.65, 60, 110, 130],
        [0.85, 150, 175, 180],
        [1.00, 235, 240, 240],
    ],
    dtype=np.float32,
)
_LUT = np.stack(
    [np.interp(np.linspace(0.0, 1.0, 256), _CMAP_ANCHORS[:, 0], _CMAP_ANCHORS[:, c]) for c in (1, 2, 3)],
    axis=1,
).astype(np.uint8)

# 5x7 bitmap font: one string of 7 rows of 5 bits per glyph. Lower case is drawn as upper case.
_GLYPHS: dict[str, str] = {
    " ": "00000 00000 00000 00000 00000 00000 00000",
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11110 00001 00001 01110 00001 00001 11110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    "_": "00000 00000 00000 00000 00000 00000 11111",
    "/": "00001 00010 00010 00100 01000 01000 10000",
    "=": "00000 00000 11111 00000 11111 00000 00000",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    "[": "01110 01000 01000 01000 01000 01000 01110",
    "]": "01110 00010 00010 00010 00010 00010 01110",
    "%": "11001 11010 00010 00100 01000 01011 10011",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    "#": "01010 11111 01010 01010 01010 11111 01010",
    "?": "01110 10001 00001 00010 00100 00000 00100",
}
_FONT = {
    ch: np.array([[c == "1" for c in row] for row in rows.split()], dtype=bool)
    for ch, rows in _GLYPHS.items()
}

WHITE = (235, 235, 235)
GREY = (150, 150, 150)
BACKGROUND = (18, 18, 24)


def text_width(text: str, scale: int = 2) -> int:
    """Pixel width of ``text`` drawn by :func:`draw_text`."""
    return len(text) * 6 * scale


def draw_text(
    img: np.ndarray, text: str, x: int, y: int, colour: Sequence[int] = WHITE, scale: int = 2
) -> None:
    """Draw ``text`` in place with its top-left corner at ``(x, y)``; clipped at the edges."""
    h, w = img.shape[:2]
    col = np.asarray(colour, dtype=np.uint8)
    for k, ch in enumerate(text.upper()):
        glyph = _FONT.get(ch, _FONT["?"])
        if scale > 1:
            glyph = np.repeat(np.repeat(glyph, scale, axis=0), scale, axis=1)
        gx = x + k * 6 * scale
        x0, y0 = max(gx, 0), max(y, 0)
        x1, y1 = min(gx + glyph.shape[1], w), min(y + glyph.shape[0], h)
        if x1 <= x0 or y1 <= y0:
            continue
        sub = glyph[y0 - y : y1 - y, x0 - gx : x1 - gx]
        img[y0:y1, x0:x1][sub] = col


device_band_edges = device_bands  # the contract's bands (kept under the renderer's old name)


def device_colour(d: int) -> np.ndarray:
    return DEVICE_COLOURS[d % len(DEVICE_COLOURS)]


def _trace(panel: np.ndarray, xs: np.ndarray, ys: np.ndarray, colour: np.ndarray, thick: int) -> None:
    """Polyline through (xs[i], ys[i]) with vertical joins, so steps stay connected."""
    h = panel.shape[0]
    col = colour.astype(np.uint8)
    for i in range(len(xs)):
        y_prev = ys[i - 1] if i > 0 else ys[i]
        lo, hi = min(y_prev, ys[i]), max(y_prev, ys[i])
        lo, hi = max(lo - thick // 2, 0), min(hi + (thick + 1) // 2, h)
        x0 = xs[i]
        x1 = xs[i + 1] if i + 1 < len(xs) else panel.shape[1]
        # vertical join at the column start, then the horizontal run of this frame
        panel[lo:hi, x0 : x0 + thick] = col
        y0, y1 = max(ys[i] - thick // 2, 0), min(ys[i] + (thick + 1) // 2, h)
        panel[y0:y1, x0:x1] = col


def render_activations(
    cqt: np.ndarray,
    actions: np.ndarray | None = None,
    *,
    frame_rate: float | None = None,
    title: str = "",
    subtitle: str = "",
    bands: Sequence[tuple[int, int]] | None = None,
    num_devices: int | None = None,
    px_per_frame: int | None = None,
    px_per_bin: int = 4,
    colours: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """RGB ``uint8 [H, W, 3]`` picture of a CQT ``[2, F, T]`` (or ``[F, T]``) and activations ``[D, T]``.

    ``bands`` are each device's ``(lo, hi)`` bins (default: the contract's equal slices);
    ``num_devices`` (default: from ``actions``) keeps the layout, and so the image size,
    the same before the first action (video recorders need a fixed frame size);
    ``frame_rate`` (frames/s) labels the time axis in seconds (frames if ``None``);
    ``px_per_frame`` defaults to what makes the plot ~860 px wide (4 for 5 s clips);
    ``colours`` (RGB 0-255 per device, e.g. a rig's) replace the default device colours.
    """
    c = np.asarray(cqt, dtype=np.float32)
    if c.ndim == 3:
        c = c.mean(axis=0)
    if c.ndim != 2:
        raise ValueError(f"cqt must be [2, n_bins, T] or [n_bins, T], got shape {np.shape(cqt)}")
    n_bins, t = c.shape
    acts = None if actions is None else np.asarray(actions, dtype=np.float32)
    if acts is not None and (acts.ndim != 2 or acts.shape[1] != t):
        raise ValueError(f"actions must be [num_devices, {t}], got shape {acts.shape}")
    if num_devices is None:
        num_devices = 0 if acts is None else acts.shape[0]
    if acts is not None and acts.shape[0] != num_devices:
        raise ValueError(f"actions have {acts.shape[0]} devices, num_devices={num_devices}")
    if bands is None:
        bands = device_bands(n_bins, num_devices) if num_devices else []
    if colours is not None and len(colours) < num_devices:
        raise ValueError(f"colours: need {num_devices}, got {len(colours)}")

    def colour_of(d: int) -> np.ndarray:  # the rig's colours when given
        if colours is not None:
            return np.asarray(colours[d], dtype=np.float32)
        return device_colour(d)

    sx = int(px_per_frame) if px_per_frame is not None else max(1, -(-860 // t))
    sy = int(px_per_bin)
    margin_l, margin_r = 64, 24
    header_h = 48
    lane_h, lane_gap = 22, 4
    axis_h = 26
    cqt_w, cqt_h = t * sx, n_bins * sy
    lanes_h = num_devices * (lane_h + lane_gap) + (8 if num_devices else 0)
    width = margin_l + cqt_w + margin_r
    height = header_h + cqt_h + lanes_h + axis_h
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = BACKGROUND

    # Header
    draw_text(img, title, 8, 6, WHITE, 2)
    draw_text(img, subtitle, 8, 28, GREY, 2)

    # CQT panel (row 0 = top = highest bin)
    idx = np.clip((np.nan_to_num(c) * 255.0).round(), 0, 255).astype(np.uint8)
    rgb = _LUT[idx[::-1]]  # [F, T, 3]
    panel = np.repeat(np.repeat(rgb, sy, axis=0), sx, axis=1)
    xs = np.arange(t) * sx
    for d in range(num_devices):
        lo, hi = bands[d]
        top = (n_bins - hi) * sy  # panel row of the band's top edge
        bottom = (n_bins - lo) * sy - 1
        col = colour_of(d)
        # band separator (dashed) at the band's upper edge
        if top > 0:
            sep = panel[top, :]
            dash = (np.arange(cqt_w) // 6) % 2 == 0
            sep[dash] = (0.5 * sep[dash] + 0.5 * col).astype(np.uint8)
        if acts is not None:
            a = np.clip(np.nan_to_num(acts[d]), 0.0, 1.0)
            ys = np.round(bottom - a * (bottom - top - 1)).astype(int)
            # a dark halo under the trace keeps it readable over bright CQT regions
            _trace(panel, xs, ys, np.zeros(3, np.float32), 4)
            _trace(panel, xs, ys, col, 2)
    y0 = header_h
    img[y0 : y0 + cqt_h, margin_l : margin_l + cqt_w] = panel

    # Band markers and labels in the left margin
    for d in range(num_devices):
        lo, hi = bands[d]
        top, bottom = y0 + (n_bins - hi) * sy, y0 + (n_bins - lo) * sy
        col = colour_of(d).astype(np.uint8)
        img[top + 1 : bottom - 1, margin_l - 8 : margin_l - 3] = col
        draw_text(img, f"D{d}", 10, (top + bottom) // 2 - 7, col, 2)
    if num_devices == 0:
        draw_text(img, "CQT", 10, y0 + cqt_h // 2 - 7, GREY, 2)

    # Light lanes: brightness = activation, in the device colour
    ly = y0 + cqt_h + 8
    for d in range(num_devices):
        a = np.zeros(t, np.float32) if acts is None else np.clip(np.nan_to_num(acts[d]), 0.0, 1.0)
        col = colour_of(d)
        row = (a[:, None] * col[None, :] + (1 - a[:, None]) * 0.12 * col[None, :]).astype(np.uint8)
        img[ly : ly + lane_h, margin_l : margin_l + cqt_w] = np.repeat(row, sx, axis=0)[None]
        draw_text(img, f"D{d}", 10, ly + lane_h // 2 - 7, col.astype(np.uint8), 2)
        ly += lane_h + lane_gap

    # Time axis
    ay = height - axis_h
    img[ay : ay + 1, margin_l : margin_l + cqt_w] = GREY
    if frame_rate:
        seconds = t / frame_rate
        step = 1.0 if seconds <= 12 else 5.0
        ticks = np.arange(0.0, seconds + 1e-9, step)
        for s in ticks:
            x = margin_l + int(round(s * frame_rate * sx))
            if x >= margin_l + cqt_w:
                continue
            img[ay : ay + 5, x : x + 2] = GREY
            # faint guide through the lanes
            img[y0 + cqt_h + 4 : ay, x : x + 1] = (
                0.6 * img[y0 + cqt_h + 4 : ay, x : x + 1] + 0.4 * np.array(GREY)
            ).astype(np.uint8)
            label = f"{s:g}S"
            draw_text(img, label, min(x - 4, width - text_width(label) - 2), ay + 8, GREY, 2)
    else:
        for f in range(0, t, max(t // 8, 1)):
            x = margin_l + f * sx
            img[ay : ay + 5, x : x + 2] = GREY
            draw_text(img, str(f), x - 4, ay + 8, GREY, 2)
    return img


__all__ = ["render_activations", "draw_text", "text_width", "device_band_edges", "DEVICE_COLOURS"]
