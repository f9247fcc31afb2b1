"""The rig file: which lights a show drives, where they live, and how levels map to them.

TOML, validated field by field; every error names the file, the line and the field::

    refresh_hz = 40            # output refresh (DMX512 caps at 44 Hz)
    latency_ms = 30            # the lights lag this much: frames are sent this much earlier

    [limiter]                  # WCAG 2.3.1 general-flash limiter (on unless --unsafe-no-limiter)
    max_flashes = 3            # per window_s, per device and for the rig as a whole
    threshold = 0.10           # a change of at least this much of full scale
    dark_level = 1.0           # ... where the darker state is below this (WCAG's screens: 0.80)
    rig_threshold = 0.5        # a rig flash: the mean of all devices changes this much

    [sacn]                     # any of sacn / artnet / osc / midi; absent = not used live
    destination = "127.0.0.1"  # unicast; or multicast = true
    priority = 100

    [[devices]]
    name = "bass"
    colour = "#ff3020"
    layout = "rgb"             # dimmer | rgb | rgbw (channel types from the Open Fixture Library)
    fine = true                # 16-bit: coarse then fine channel per colour
    universe = 1
    channel = 1                # DMX start channel, 1..512
    gamma = 2.2
    min = 0.0
    max = 1.0
    osc_address = "/cqtml/bass"
    midi_cc = 20

Device ``i`` follows the policy's device ``i`` (lowest band first, see docs/CONTRACT.md).
Without a file, :func:`default_rig` is 4 dimmers on universe 1, channels 1-4.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from cqtml_env.show.limiter import DEFAULT_DARK_LEVEL

LAYOUTS = {"dimmer": ("Intensity",), "rgb": ("Red", "Green", "Blue"),
           "rgbw": ("Red", "Green", "Blue", "White")}
DMX_SLOTS = 512
DMX_MAX_HZ = 44.0
DEFAULT_COLOURS = ("#ff3b30", "#ffcc00", "#34c759", "#0a84ff", "#af52de", "#ff9500")


class RigError(ValueError):
    """A rig file that cannot be used; the message names the file, line and field."""


@dataclass(frozen=True)
class Device:
    name: str
    colour: tuple[int, int, int] = (255, 255, 255)
    layout: str = "dimmer"
    fine: bool = False
    universe: int = 1
    channel: int = 1
    gamma: float = 1.0
    min: float = 0.0
    max: float = 1.0
    osc_address: str = ""
    midi_channel: int = 1
    midi_cc: int = 20

    @property
    def num_channels(self) -> int:
        return len(LAYOUTS[self.layout]) * (2 if self.fine else 1)

    def channel_names(self) -> list[str]:
        out = []
        for c in LAYOUTS[self.layout]:
            out += [c, f"{c} fine"] if self.fine else [c]
        return out

    def intensity(self, level: np.ndarray) -> np.ndarray:
        """Activation in [0, 1] -> light intensity in [min, max] through the gamma curve."""
        v = np.clip(np.asarray(level, dtype=np.float64), 0.0, 1.0)
        return self.min + (self.max - self.min) * v**self.gamma

    def colour_weights(self) -> np.ndarray:
        """Per-channel colour of the layout (without fine channels), in [0, 1]."""
        r, g, b = (c / 255.0 for c in self.colour)
        if self.layout == "dimmer":
            return np.array([1.0])
        if self.layout == "rgb":
            return np.array([r, g, b])
        w = min(r, g, b)  # the white emitter takes the common part
        return np.array([r - w, g - w, b - w, w])

    def dmx(self, intensity: np.ndarray) -> np.ndarray:
        """Intensity ``[T]`` in [0, 1] -> DMX slot values ``[T, num_channels]`` (uint8)."""
        x = np.clip(np.asarray(intensity, dtype=np.float64), 0, 1)[:, None] * self.colour_weights()
        if not self.fine:
            return np.round(x * 255).astype(np.uint8)
        v16 = np.round(x * 65535).astype(np.int64)
        out = np.empty((x.shape[0], x.shape[1] * 2), np.uint8)
        out[:, 0::2] = v16 >> 8
        out[:, 1::2] = v16 & 0xFF
        return out


@dataclass(frozen=True)
class LimiterSettings:
    enabled: bool = True
    max_flashes: int = 3
    window_s: float = 1.0
    threshold: float = 0.10
    dark_level: float = DEFAULT_DARK_LEVEL
    rig_threshold: float = 0.5


@dataclass(frozen=True)
class Rig:
    devices: tuple[Device, ...]
    refresh_hz: float = 40.0
    latency_ms: float = 0.0
    limiter: LimiterSettings = field(default_factory=LimiterSettings)
    sacn: dict[str, Any] | None = None
    artnet: dict[str, Any] | None = None
    osc: dict[str, Any] | None = None
    midi: dict[str, Any] | None = None
    source: str = "<default rig>"

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.devices]

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    def intensities(self, levels: np.ndarray) -> np.ndarray:
        """``[D, T]`` activations -> ``[D, T]`` intensities (gamma, min, max per device)."""
        levels = np.asarray(levels)
        return np.stack([d.intensity(levels[i]) for i, d in enumerate(self.devices)])

    def universes(self) -> list[int]:
        return sorted({d.universe for d in self.devices})

    def dmx_frames(self, intensities: np.ndarray) -> dict[int, np.ndarray]:
        """``[D, T]`` intensities -> ``{universe: uint8 [T, 512]}``."""
        t = np.asarray(intensities).shape[1]
        out = {u: np.zeros((t, DMX_SLOTS), np.uint8) for u in self.universes()}
        for i, d in enumerate(self.devices):
            out[d.universe][:, d.channel - 1 : d.channel - 1 + d.num_channels] = d.dmx(
                intensities[i]
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "refresh_hz": self.refresh_hz,
            "latency_ms": self.latency_ms,
            "devices": [
                {"name": d.name, "colour": "#{:02x}{:02x}{:02x}".format(*d.colour), "layout": d.layout,
                 "fine": d.fine, "universe": d.universe, "channel": d.channel,
                 "gamma": d.gamma, "min": d.min, "max": d.max, "osc_address": d.osc_address,
                 "midi_channel": d.midi_channel, "midi_cc": d.midi_cc}
                for d in self.devices
            ],
        }


def default_rig(num_devices: int = 4) -> Rig:
    """``num_devices`` dimmers on universe 1, channels 1..D, OSC ``/cqtml/<name>``."""
    names = ["bass", "low-mid", "high-mid", "treble"] if num_devices == 4 else [
        f"device{i + 1}" for i in range(num_devices)]
    devices = tuple(
        Device(name=n, colour=parse_colour(DEFAULT_COLOURS[i % len(DEFAULT_COLOURS)], "colour"),
               channel=i + 1, osc_address=f"/cqtml/{n}", midi_cc=20 + i)
        for i, n in enumerate(names)
    )
    return Rig(devices=devices)


# ----------------------------------------------------------------------------- parsing
_DEVICE_KEYS = {"name", "colour", "color", "layout", "fine", "universe", "channel", "gamma",
                "min", "max", "osc_address", "midi_channel", "midi_cc"}
_TOP_KEYS = {"refresh_hz", "latency_ms", "limiter", "devices", "sacn", "artnet", "osc", "midi"}
_OUTPUT_KEYS = {
    "sacn": {"destination", "multicast", "priority", "bind_address", "bind_port", "source_name"},
    "artnet": {"destination", "port"},
    "osc": {"host", "port"},
    "midi": {"port", "channel"},
}
_LIMITER_KEYS = {"enabled", "max_flashes", "window_s", "threshold", "dark_level",
                 "rig_threshold"}


def parse_colour(value: Any, where: str) -> tuple[int, int, int]:
    if isinstance(value, str) and re.fullmatch(r"#?[0-9a-fA-F]{6}", value):
        h = value.lstrip("#")
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    if (isinstance(value, list) and len(value) == 3
            and all(isinstance(c, int) and 0 <= c <= 255 for c in value)):
        return (value[0], value[1], value[2])
    raise RigError(f"{where}: expected a colour like \"#ff8800\" or [255, 136, 0], got {value!r}")


class _Locator:
    """Finds the line of a key in the TOML text (tomllib does not keep positions)."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def _table_start(self, table: str, index: int | None) -> int:
        if table == "":
            return 0
        pat = re.compile(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]" if index is not None
                         else rf"^\s*\[\s*{re.escape(table)}\s*\]")
        hits = [i for i, ln in enumerate(self.lines) if pat.match(ln)]
        k = index or 0
        return hits[k] if k < len(hits) else 0

    def line(self, table: str, key: str | None, index: int | None = None) -> int:
        start = self._table_start(table, index)
        if key is not None:
            pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
            for i in range(start + (1 if table else 0), len(self.lines)):
                if table == "" and self.lines[i].lstrip().startswith("["):
                    break
                if i > start and table and self.lines[i].lstrip().startswith("["):
                    break
                if pat.match(self.lines[i]):
                    return i + 1
        return start + 1

    def error(self, msg: str, table: str, key: str | None, index: int | None = None) -> RigError:
        return RigError(f"{self.source} line {self.line(table, key, index)}: {msg}")


def _number(v: Any, where: str, lo: float, hi: float, loc: _Locator, table: str, key: str,
            index: int | None = None, integer: bool = False) -> float:
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or not (lo <= v <= hi):
        kind = "an integer" if integer else "a number"
        raise loc.error(f"{where}: expected {kind} in [{lo:g}, {hi:g}], got {v!r}", table, key,
                        index)
    return v


def parse_rig(text: str, source: str = "<rig>") -> Rig:
    """Parse and validate rig TOML ``text`` (see the module docstring for the format)."""
    loc = _Locator(text, source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RigError(f"{source}: not valid TOML: {exc}") from exc
    unknown = set(data) - _TOP_KEYS
    if unknown:
        k = sorted(unknown)[0]
        raise loc.error(f"unknown key {k!r} (expected one of {sorted(_TOP_KEYS)})", "", k)
    refresh = _number(data.get("refresh_hz", 40.0), "refresh_hz", 1, 1000, loc, "", "refresh_hz")
    latency = _number(data.get("latency_ms", 0.0), "latency_ms", -2000, 2000, loc, "",
                      "latency_ms")
    lim = data.get("limiter", {})
    if not isinstance(lim, dict):
        raise loc.error("limiter must be a table [limiter]", "", "limiter")
    for k in lim:
        if k not in _LIMITER_KEYS:
            raise loc.error(f"limiter.{k}: unknown key (expected {sorted(_LIMITER_KEYS)})",
                            "limiter", k)
    if "enabled" in lim and lim["enabled"] is not True:
        raise loc.error("limiter.enabled: the flash limiter cannot be switched off in a rig "
                        "file; use the explicit --unsafe-no-limiter flag", "limiter", "enabled")
    limiter = LimiterSettings(
        max_flashes=int(_number(lim.get("max_flashes", 3), "limiter.max_flashes", 1, 3, loc,
                                "limiter", "max_flashes", integer=True)),
        window_s=float(_number(lim.get("window_s", 1.0), "limiter.window_s", 1.0, 10.0, loc,
                               "limiter", "window_s")),
        threshold=float(_number(lim.get("threshold", 0.1), "limiter.threshold", 0.01, 0.5, loc,
                                "limiter", "threshold")),
        dark_level=float(_number(lim.get("dark_level", DEFAULT_DARK_LEVEL), "limiter.dark_level", 0.0, 1.0,
                                 loc, "limiter", "dark_level")),
        rig_threshold=float(_number(lim.get("rig_threshold", 0.5), "limiter.rig_threshold",
                                    0.1, 0.9, loc, "limiter", "rig_threshold")),
    )
    if limiter.rig_threshold < limiter.threshold:
        raise loc.error(f"limiter.rig_threshold ({limiter.rig_threshold:g}) must be at least "
                        f"limiter.threshold ({limiter.threshold:g})", "limiter", "rig_threshold")
    outputs: dict[str, dict[str, Any] | None] = {}
    for name, keys in _OUTPUT_KEYS.items():
        table = data.get(name)
        if table is None:
            outputs[name] = None
            continue
        if not isinstance(table, dict):
            raise loc.error(f"{name} must be a table [{name}]", "", name)
        for k in table:
            if k not in keys:
                raise loc.error(f"{name}.{k}: unknown key (expected {sorted(keys)})", name, k)
        for k in ("port", "bind_port"):
            if k in table and name != "midi":
                _number(table[k], f"{name}.{k}", 1, 65535, loc, name, k, integer=True)
        if "priority" in table:
            _number(table["priority"], f"{name}.priority", 0, 200, loc, name, "priority",
                    integer=True)
        for k in ("destination", "host", "bind_address", "source_name"):
            if k in table and not isinstance(table[k], str):
                raise loc.error(f"{name}.{k}: expected a string, got {table[k]!r}", name, k)
        outputs[name] = dict(table)
    if (outputs["sacn"] is not None or outputs["artnet"] is not None) and refresh > DMX_MAX_HZ:
        raise loc.error(f"refresh_hz: DMX512 refreshes at most {DMX_MAX_HZ:g} Hz, got "
                        f"{refresh:g}", "", "refresh_hz")
    devs = data.get("devices")
    if devs is None:
        raise RigError(f"{source}: no [[devices]] (a rig needs at least one device)")
    if not isinstance(devs, list) or not devs:
        raise loc.error("devices must be one or more [[devices]] tables", "", "devices")
    devices = []
    for i, d in enumerate(devs):
        t = "devices"
        w = f"devices[{i}]"
        for k in d:
            if k not in _DEVICE_KEYS:
                raise loc.error(f"{w}.{k}: unknown key (expected {sorted(_DEVICE_KEYS)})", t, k,
                                i)
        name = d.get("name", f"device{i + 1}")
        if not isinstance(name, str) or not name.strip() or "," in name:
            raise loc.error(f"{w}.name: expected a non-empty name without commas, got {name!r}",
                            t, "name", i)
        layout = d.get("layout", "dimmer")
        if layout not in LAYOUTS:
            raise loc.error(f"{w}.layout: expected one of {sorted(LAYOUTS)}, got {layout!r}", t,
                            "layout", i)
        fine = d.get("fine", False)
        if not isinstance(fine, bool):
            raise loc.error(f"{w}.fine: expected true or false, got {fine!r}", t, "fine", i)
        ckey = "colour" if "colour" in d else "color"
        try:
            colour = parse_colour(d.get(ckey, DEFAULT_COLOURS[i % len(DEFAULT_COLOURS)]),
                                  f"{w}.{ckey}")
        except RigError as exc:
            raise loc.error(str(exc), t, ckey, i) from None
        universe = int(_number(d.get("universe", 1), f"{w}.universe", 1, 63999, loc, t,
                               "universe", i, integer=True))
        channel = int(_number(d.get("channel", 1), f"{w}.channel", 1, DMX_SLOTS, loc, t,
                              "channel", i, integer=True))
        lo = float(_number(d.get("min", 0.0), f"{w}.min", 0, 1, loc, t, "min", i))
        hi = float(_number(d.get("max", 1.0), f"{w}.max", 0, 1, loc, t, "max", i))
        if hi < lo:
            raise loc.error(f"{w}.max ({hi}) must be >= min ({lo})", t, "max", i)
        dev = Device(
            name=name, colour=colour, layout=layout, fine=fine, universe=universe,
            channel=channel,
            gamma=float(_number(d.get("gamma", 1.0), f"{w}.gamma", 0.1, 5.0, loc, t, "gamma",
                                i)),
            min=lo, max=hi,
            osc_address=str(d.get("osc_address", f"/cqtml/{name}")),
            midi_channel=int(_number(d.get("midi_channel", 1), f"{w}.midi_channel", 1, 16, loc,
                                     t, "midi_channel", i, integer=True)),
            midi_cc=int(_number(d.get("midi_cc", 20 + i), f"{w}.midi_cc", 0, 119, loc, t,
                                "midi_cc", i, integer=True)),
        )
        if not dev.osc_address.startswith("/"):
            raise loc.error(f"{w}.osc_address: must start with '/', got {dev.osc_address!r}", t,
                            "osc_address", i)
        if channel + dev.num_channels - 1 > DMX_SLOTS:
            raise loc.error(f"{w}.channel: {dev.num_channels} channels from {channel} run past "
                            f"slot {DMX_SLOTS}", t, "channel", i)
        devices.append(dev)
    names = [d.name for d in devices]
    for i, d in enumerate(devices):
        if names.index(d.name) != i:
            raise loc.error(f"devices[{i}].name: {d.name!r} is used twice", "devices", "name", i)
        for j in range(i):
            e = devices[j]
            if e.universe == d.universe and not (
                d.channel + d.num_channels <= e.channel or e.channel + e.num_channels <= d.channel
            ):
                raise loc.error(
                    f"devices[{i}].channel: channels {d.channel}-{d.channel + d.num_channels - 1}"
                    f" overlap {e.name!r} ({e.channel}-{e.channel + e.num_channels - 1}) in "
                    f"universe {d.universe}", "devices", "channel", i)
    return Rig(devices=tuple(devices), refresh_hz=float(refresh), latency_ms=float(latency),
               limiter=limiter, source=source, **outputs)


def load_rig(path: str | os.PathLike | None, *, num_devices: int = 4) -> Rig:
    """Read a rig file; ``None`` gives :func:`default_rig` (``num_devices`` dimmers)."""
    if path is None:
        return default_rig(num_devices)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RigError(f"{p}: cannot read the rig file ({exc})") from exc
    return parse_rig(text, source=str(p))


__all__ = ["Device", "LimiterSettings", "Rig", "RigError", "default_rig", "load_rig",
           "parse_rig", "LAYOUTS"]
