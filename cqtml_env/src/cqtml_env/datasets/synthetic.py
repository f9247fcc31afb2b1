"""SyntheticMusic: the embedded default data set, procedurally generated music in numpy.

Why: tests, CI and first experiments need music with known ground truth (beats, onsets,
per-stem energy) and no download. Each clip is a few bars of a genre-ish preset (rock, edm,
ambient, hiphop, jazzish, ballad): drums (kick low, snare mid, hats/ride high), bass, a chord
progression in a key and a melody on the scale, with ADSR-shaped harmonic tones, stereo
panning, dynamics (crescendo, fades, per-bar accents) and occasional breaks or silences.

Clip ``i`` of seed ``s`` is drawn from ``np.random.default_rng([s, i])`` only, so it does not
depend on ``num_clips`` or on other clips, and the (audio, metadata) pair is reproducible
across machines. ``GENERATOR_VERSION`` is part of the feature-cache key: bump it whenever the
generator's output changes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cqtml_env.datasets.base import ClipDataset, OutputFormat
from cqtml_env.datasets.windowing import Windowing
from cqtml_env.features.cache import FeatureCache
from cqtml_env.features.cqt import CQTProcessor

GENERATOR_VERSION = 2
AUDIO_MEMO = 8  # last generated clips kept (audio + info): ds[i] then clip_info(i) is one synthesis
INFO_MEMO = 4096  # metadata kept (~6 KB each at 5 s)
STEMS = ("kick", "snare", "hats", "bass", "chords", "melody")
DRUM_STEMS = ("kick", "snare", "hats")
TABLE_SIZE = 4096

MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])


# ---------------------------------------------------------------------------------------
# Instruments: a one-period wavetable (harmonic amplitudes) + an envelope.
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Instrument:
    harmonics: tuple[float, ...]
    attack: float = 0.005  # s
    tau: float | None = None  # exponential decay time constant (s); None = sustained
    release: float = 0.08  # s
    detune: float = 0.0  # cents of a second, detuned oscillator (pads: width/chorus)


INSTRUMENTS: dict[str, Instrument] = {
    "piano": Instrument((1, 0.55, 0.3, 0.22, 0.12, 0.08, 0.05, 0.03), 0.003, 0.7, 0.12),
    "epiano": Instrument((1, 0.25, 0.12, 0.05, 0.0, 0.04), 0.004, 1.0, 0.15),
    "guitar": Instrument(tuple(0.9 / h for h in range(1, 13)), 0.006, 1.6, 0.06),
    "saw": Instrument(tuple(1.0 / h for h in range(1, 11)), 0.008, 2.5, 0.06),
    "pad": Instrument((1, 0.45, 0.25, 0.15, 0.08), 0.35, None, 0.6, 9.0),
    "bell": Instrument((1, 0.0, 0.45, 0.0, 0.0, 0.22, 0.0, 0.0, 0.1), 0.002, 1.1, 0.3),
    "lead": Instrument((1, 0.0, 0.33, 0.0, 0.2, 0.0, 0.14, 0.0, 0.1), 0.015, 2.0, 0.08),
    "organ": Instrument((1, 0.8, 0.0, 0.5, 0.0, 0.3, 0.0, 0.25), 0.01, None, 0.05),
    "sub": Instrument((1, 0.12, 0.04), 0.004, 0.9, 0.06),
    "pluck_bass": Instrument((1, 0.5, 0.3, 0.15, 0.1, 0.05), 0.004, 0.4, 0.05),
    "upright": Instrument((1, 0.4, 0.18, 0.08), 0.006, 0.55, 0.06),
    "synth_bass": Instrument(tuple(0.8 / h for h in range(1, 9)), 0.004, 0.5, 0.04),
}


BRIGHTNESS_HZ = 2200.0  # harmonics roll off above this (2nd order), as in real instruments


def _make_table(harmonics: tuple[float, ...], f0: float = 0.0) -> np.ndarray:
    """One period of the harmonic series, low-passed for a note of ``f0`` Hz."""
    k = np.arange(TABLE_SIZE) / TABLE_SIZE
    t = np.zeros(TABLE_SIZE)
    for h, a in enumerate(harmonics, start=1):
        if a:
            t += a / np.sqrt(1.0 + (h * f0 / BRIGHTNESS_HZ) ** 4) * np.sin(2 * np.pi * h * k)
    return (t / np.max(np.abs(t))).astype(np.float32)


_TABLES: dict[tuple[str, int], np.ndarray] = {}


def _table(name: str, midi: float) -> np.ndarray:
    """Wavetable of an instrument for a pitch (cached per half octave)."""
    band = int(midi) // 6
    key = (name, band)
    t = _TABLES.get(key)
    if t is None:
        t = _TABLES[key] = _make_table(INSTRUMENTS[name].harmonics, _midi_hz(band * 6 + 3))
    return t


NOISE_BANDS = {"click": (1000.0, 8000.0), "snare": (180.0, 8000.0), "hat": (2500.0, 16000.0)}
_NOISE: dict[int, dict[str, np.ndarray]] = {}


def _noise(sr: int) -> dict[str, np.ndarray]:
    """Fixed band-limited noises (seeded, per sample rate) reused at random offsets: cheaper
    than fresh noise per hit, and shaped so each drum lands in its CQT region."""
    have = _NOISE.get(sr)
    if have is None:
        n = 1 << 17
        spec = np.fft.rfft(np.random.default_rng(12345).standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / sr)
        have = {}
        for name, (lo, hi) in NOISE_BANDS.items():
            shape = 1.0 / np.sqrt((1 + (lo / np.maximum(f, 1.0)) ** 4) * (1 + (f / hi) ** 4))
            x = np.fft.irfft(spec * shape, n)
            have[name] = (x / np.std(x)).astype(np.float32)
        _NOISE[sr] = have
    return have



# ---------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    tempo: tuple[float, float]
    kick: tuple[str, ...]
    snare: tuple[str, ...]
    hats: tuple[str, ...]
    hat_sound: str  # closed | open | ride
    bass_style: str  # eighths | offbeat | walking | kick | long | drone
    bass_inst: str
    chord_style: str  # sustain | strum | stabs | pad | arpeggio | comp
    chord_inst: str
    melody_inst: str
    melody_density: float  # probability of a note on an eligible step
    melody_step: int  # grid steps (16ths) per melody slot
    chord_beats: int = 4
    sevenths: bool = False
    swing: float = 0.0  # fraction of a step to delay off-beat steps
    swing_unit: int = 2  # 2: swing 8ths, 1: swing 16ths
    minor_prob: float = 0.4
    drums_prob: float = 1.0
    break_prob: float = 0.3
    levels: dict[str, float] = field(default_factory=dict)
    jitter: float = 0.004  # s of timing humanisation
    progressions: str = "pop"


PRESETS: dict[str, Preset] = {
    "rock": Preset(
        tempo=(100, 160),
        kick=("x.......x.x.....", "x.....x.x.......", "x.......x......."),
        snare=("....x.......x...", "....x.......x..o"),
        hats=("x.x.x.x.x.x.x.x.", "x.o.x.o.x.o.x.o."),
        hat_sound="closed",
        bass_style="eighths",
        bass_inst="pluck_bass",
        chord_style="strum",
        chord_inst="guitar",
        melody_inst="lead",
        melody_density=0.55,
        melody_step=2,
        levels={"kick": 1.0, "snare": 0.8, "hats": 0.3, "bass": 0.7, "chords": 0.35, "melody": 0.45},
    ),
    "edm": Preset(
        tempo=(120, 140),
        kick=("x...x...x...x...",),
        snare=("....x.......x...",),
        hats=("..x...x...x...x.", "x.x.x.x.x.x.x.x.", "oxoxoxoxoxoxoxox"),
        hat_sound="open",
        bass_style="offbeat",
        bass_inst="synth_bass",
        chord_style="pad",
        chord_inst="pad",
        melody_inst="saw",
        melody_density=0.7,
        melody_step=1,
        minor_prob=0.6,
        break_prob=0.45,
        jitter=0.0,
        levels={"kick": 1.0, "snare": 0.6, "hats": 0.3, "bass": 0.55, "chords": 0.3, "melody": 0.3},
    ),
    "ambient": Preset(
        tempo=(70, 95),
        kick=("x...............", "x.......o......."),
        snare=("................", "........o......."),
        hats=("..o...o...o...o.", "................"),
        hat_sound="closed",
        bass_style="drone",
        bass_inst="sub",
        chord_style="pad",
        chord_inst="pad",
        melody_inst="bell",
        melody_density=0.25,
        melody_step=4,
        chord_beats=8,
        minor_prob=0.3,
        drums_prob=0.35,
        break_prob=0.1,
        levels={"kick": 0.5, "snare": 0.3, "hats": 0.12, "bass": 0.45, "chords": 0.5, "melody": 0.4},
    ),
    "hiphop": Preset(
        tempo=(80, 100),
        kick=("x.....x...x.....", "x..x......x..x..", "x.........xx...."),
        snare=("....x.......x...", "....x.......x.o."),
        hats=("xoxoxoxoxoxoxoxo", "x.x.x.x.x.x.x.x.", "x.xxx.x.x.xxx.x."),
        hat_sound="closed",
        bass_style="kick",
        bass_inst="sub",
        chord_style="stabs",
        chord_inst="epiano",
        melody_inst="bell",
        melody_density=0.3,
        melody_step=2,
        sevenths=True,
        swing=0.3,
        swing_unit=1,
        minor_prob=0.75,
        break_prob=0.35,
        levels={"kick": 1.0, "snare": 0.85, "hats": 0.25, "bass": 0.8, "chords": 0.35, "melody": 0.3},
    ),
    "jazzish": Preset(
        tempo=(110, 180),
        kick=("x...............", "................", "x.........o....."),
        snare=("......o.......o.", "..........o.....", "...o.......o...."),
        hats=("x...x.xx...x.x..".replace("xx", "x."),),
        hat_sound="ride",
        bass_style="walking",
        bass_inst="upright",
        chord_style="comp",
        chord_inst="epiano",
        melody_inst="lead",
        melody_density=0.5,
        melody_step=2,
        sevenths=True,
        swing=0.66,
        swing_unit=2,
        minor_prob=0.25,
        break_prob=0.2,
        jitter=0.008,
        progressions="jazz",
        levels={"kick": 0.5, "snare": 0.35, "hats": 0.3, "bass": 0.75, "chords": 0.4, "melody": 0.5},
    ),
    "ballad": Preset(
        tempo=(70, 90),
        kick=("x.......x.......", "x.........x....."),
        snare=("....o.......o...",),
        hats=("o.o.o.o.o.o.o.o.",),
        hat_sound="closed",
        bass_style="long",
        bass_inst="upright",
        chord_style="arpeggio",
        chord_inst="piano",
        melody_inst="organ",
        melody_density=0.45,
        melody_step=2,
        minor_prob=0.35,
        drums_prob=0.6,
        break_prob=0.25,
        levels={"kick": 0.6, "snare": 0.4, "hats": 0.15, "bass": 0.5, "chords": 0.45, "melody": 0.45},
    ),
}

PROGRESSIONS = {
    ("pop", "major"): ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (3, 4, 0, 5)),
    ("pop", "minor"): ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2)),
    ("jazz", "major"): ((1, 4, 0, 0), (0, 5, 1, 4), (2, 5, 1, 4)),
    ("jazz", "minor"): ((1, 4, 0, 0), (0, 3, 1, 4)),
}


# ---------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------
@dataclass
class _Event:
    stem: str
    onset: float  # s (may be < 0: a note sounding from before the clip)
    dur: float  # s
    vel: float
    midi: float = 0.0
    sound: str = ""  # drum sound or instrument name


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def _fold(m: int, lo: int, hi: int) -> int:
    """Move ``m`` by octaves into ``[lo, hi)``."""
    while m < lo:
        m += 12
    while m >= hi:
        m -= 12
    return m


class _Song:
    """Draws one clip's musical plan (events, dynamics, breaks) from an rng."""

    def __init__(self, rng: np.random.Generator, duration: float, preset_name: str) -> None:
        self.rng = rng
        self.duration = duration
        self.preset_name = preset_name
        p = self.p = PRESETS[preset_name]
        self.tempo = float(np.round(rng.uniform(*p.tempo), 1))
        self.beat = 60.0 / self.tempo
        self.step = self.beat / 4
        self.bar = self.beat * 4
        # where the clip starts inside the song: a random phase of the bar grid
        self.t0 = -float(rng.uniform(0, self.bar))  # time of the first bar line (<= 0)
        self.n_bars = int(np.ceil((duration - self.t0) / self.bar)) + 1
        self.mode = "minor" if rng.random() < p.minor_prob else "major"
        self.scale = MINOR if self.mode == "minor" else MAJOR
        self.key = int(rng.integers(0, 12))
        progs = PROGRESSIONS[(p.progressions, self.mode)]
        self.progression = progs[int(rng.integers(len(progs)))]
        self.prog_start = int(rng.integers(len(self.progression)))
        self.has_drums = rng.random() < p.drums_prob
        self.events: list[_Event] = []
        # per-bar accent (dB) and per-stem pattern choices
        self.bar_gain = 10 ** (rng.normal(0, 1.5, self.n_bars) / 20)
        self.pattern = {
            "kick": p.kick[int(rng.integers(len(p.kick)))],
            "snare": p.snare[int(rng.integers(len(p.snare)))],
            "hats": p.hats[int(rng.integers(len(p.hats)))],
        }

    # -- helpers --------------------------------------------------------------------------
    def step_time(self, bar: int, step: int) -> float:
        t = self.t0 + bar * self.bar + step * self.step
        p = self.p
        if p.swing and (step // p.swing_unit) % 2 == 1 and step % p.swing_unit == 0:
            t += p.swing * self.step * p.swing_unit / 2
        if p.jitter:
            t += float(self.rng.normal(0, p.jitter))
        return t

    def accent(self, bar: int, step: int) -> float:
        base = 1.0 if step == 0 else 0.9 if step % 8 == 0 else 0.8 if step % 4 == 0 else 0.68
        return base * float(self.bar_gain[bar])

    def scale_midi(self, degree: int) -> int:
        return self.key + 12 * (degree // 7) + int(self.scale[degree % 7])

    def chord_at(self, bar: int, beat: int) -> int:
        """Scale degree of the chord sounding at (bar, beat)."""
        k = (bar * 4 + beat) // self.p.chord_beats
        return self.progression[(self.prog_start + k) % len(self.progression)]

    def chord_tones(self, degree: int) -> list[int]:
        n = 4 if self.p.sevenths else 3
        return [self.scale_midi(degree + 2 * j) for j in range(n)]

    def add(self, stem: str, onset: float, dur: float, vel: float, midi: float = 0.0,
            sound: str = "") -> None:
        if onset < self.duration:
            self.events.append(_Event(stem, onset, dur, vel, midi, sound))

    # -- parts ----------------------------------------------------------------------------
    def drums(self) -> None:
        if not self.has_drums:
            return
        p = self.p
        for bar in range(self.n_bars):
            fill = self.rng.random() < 0.15  # occasional extra snare hits at the bar's end
            for stem in DRUM_STEMS:
                pat = self.pattern[stem]
                for s, c in enumerate(pat):
                    hit = c in "xo"
                    if stem == "snare" and fill and s >= 12 and self.rng.random() < 0.5:
                        hit, c = True, "o"
                    if not hit:
                        continue
                    vel = (1.0 if c == "x" else 0.55) * self.accent(bar, s)
                    vel *= float(self.rng.uniform(0.9, 1.1))
                    sound = stem
                    if stem == "hats":
                        sound = p.hat_sound
                        if p.hat_sound == "open" and c == "o":
                            sound = "closed"
                    self.add(stem, self.step_time(bar, s), 0.0, vel, sound=sound)

    def bass(self) -> None:
        p, rng = self.p, self.rng
        style = p.bass_style

        def root(bar: int, beat: int) -> int:
            return _fold(self.scale_midi(self.chord_at(bar, beat)), 28, 43)

        for bar in range(self.n_bars):
            if style == "eighths":
                for s in range(0, 16, 2):
                    m = root(bar, s // 4) + (12 if rng.random() < 0.08 else 0)
                    self.add("bass", self.step_time(bar, s), self.step * 1.7,
                             0.9 * self.accent(bar, s), m, p.bass_inst)
            elif style == "offbeat":
                for s in range(2, 16, 4):
                    self.add("bass", self.step_time(bar, s), self.step * 1.8,
                             0.95 * self.accent(bar, s), root(bar, s // 4), p.bass_inst)
            elif style == "walking":
                for b in range(4):
                    tones = self.chord_tones(self.chord_at(bar, b))
                    if b == 0:
                        m = tones[0]
                    elif b == 3:  # approach the next chord's root by a step
                        nxt = self.scale_midi(self.chord_at(bar + 1, 0))
                        m = nxt + int(rng.choice([-1, 1, 2, -2]))
                    else:
                        m = int(rng.choice(tones + [self.scale_midi(self.chord_at(bar, b) + 1)]))
                    self.add("bass", self.step_time(bar, 4 * b), self.beat * 0.95,
                             0.85 * self.accent(bar, 4 * b), _fold(m, 28, 45), p.bass_inst)
            elif style == "kick":
                hits = [s for s, c in enumerate(self.pattern["kick"]) if c in "xo"] or [0, 10]
                for j, s in enumerate(hits):
                    end = hits[j + 1] if j + 1 < len(hits) else 16
                    self.add("bass", self.step_time(bar, s), (end - s) * self.step * 0.95,
                             self.accent(bar, s), root(bar, s // 4), p.bass_inst)
            elif style == "long":
                for b in (0, 2):
                    self.add("bass", self.step_time(bar, 4 * b), self.beat * 1.9,
                             0.85 * self.accent(bar, 4 * b), root(bar, b), p.bass_inst)
            elif style == "drone" and bar % 2 == 0:
                self.add("bass", self.step_time(bar, 0), self.bar * 2, 0.8, root(bar, 0),
                         p.bass_inst)

    def chords(self) -> None:
        p, rng = self.p, self.rng
        style = p.chord_style
        for bar in range(self.n_bars):
            for b in range(4):
                deg = self.chord_at(bar, b)
                changes = b == 0 or self.chord_at(bar, b - 1) != deg
                tones = sorted(_fold(m, 55, 74) for m in self.chord_tones(deg))
                if style in ("pad", "sustain") and changes:
                    span = min(p.chord_beats, 4 - b + 4 * (p.chord_beats // 4 - 1)) * self.beat
                    for m in tones:
                        self.add("chords", self.step_time(bar, 4 * b), span, 0.6, m, p.chord_inst)
                elif style == "strum" and b % 2 == 0:
                    power = [tones[0] - 12, tones[0] - 5, tones[0]]  # root-fifth-octave
                    for j, m in enumerate(power):
                        self.add("chords", self.step_time(bar, 4 * b) + 0.008 * j,
                                 self.beat * 1.9, 0.8 * self.accent(bar, 4 * b), m, p.chord_inst)
                elif style == "stabs":
                    for s in (0, 6, 10) if b == 0 else ():
                        if s and rng.random() < 0.35:
                            continue
                        for m in tones:
                            self.add("chords", self.step_time(bar, s), self.step * 3,
                                     0.7 * self.accent(bar, s), m, p.chord_inst)
                elif style == "arpeggio":
                    seq = tones + [tones[0] + 12]
                    for h in range(2):
                        s = 4 * b + 2 * h
                        m = seq[(2 * b + h) % len(seq)]
                        self.add("chords", self.step_time(bar, s), self.beat * 1.5,
                                 0.7 * self.accent(bar, s), m, p.chord_inst)
                elif style == "comp":
                    for s in (4 * b + 2,) if rng.random() < 0.45 else ():
                        for m in tones:
                            self.add("chords", self.step_time(bar, s), self.step * 2.5,
                                     0.6 * self.accent(bar, s), m, p.chord_inst)

    def melody(self) -> None:
        p, rng = self.p, self.rng
        if rng.random() < 0.15:  # some clips have no lead part
            return
        unit = p.melody_step
        slots = 16 // unit
        lo, hi = 64, 88
        # a one-bar rhythm motif, repeated with variations: sounds composed, not random
        motif = rng.random(slots) < p.melody_density
        motif[0] = motif[0] or rng.random() < 0.7
        deg = int(rng.integers(7, 12))
        for bar in range(self.n_bars):
            rhythm = motif.copy()
            flip = rng.random(slots) < 0.15
            rhythm[flip] = ~rhythm[flip]
            onsets = np.flatnonzero(rhythm)
            for j, k in enumerate(onsets):
                s = int(k) * unit
                end = (int(onsets[j + 1]) if j + 1 < len(onsets) else slots) * unit
                chord = self.chord_at(bar, s // 4)
                if s % 4 == 0 and rng.random() < 0.6:  # strong beats: land on a chord tone
                    target = [chord + 7 * o + 2 * t for o in (1, 2) for t in range(3)]
                    deg = min(target, key=lambda d: abs(d - deg))
                else:
                    deg += int(rng.choice([-2, -1, -1, 1, 1, 2, 3, -3, 0]))
                m = self.scale_midi(deg)
                if m < lo:
                    deg += 7
                elif m >= hi:
                    deg -= 7
                m = self.scale_midi(deg)
                dur = min(end - s, 8) * self.step * float(rng.uniform(0.6, 0.95))
                self.add("melody", self.step_time(bar, s), dur,
                         0.75 * self.accent(bar, s) * float(rng.uniform(0.85, 1.1)), m,
                         p.melody_inst)

    # -- dynamics and breaks -------------------------------------------------------------
    def dynamics(self) -> str:
        return str(self.rng.choice(
            ["flat", "crescendo", "fade_in", "fade_out", "swell", "flat", "flat"]))

    def breaks(self) -> list[tuple[float, float, str]]:
        """(start, end, kind) spans: 'drums_out' mutes drums, 'stop' / 'silence' mute all."""
        if self.rng.random() >= self.p.break_prob:
            return []
        kind = str(self.rng.choice(["drums_out", "stop", "silence"]))
        beats = {"drums_out": 4, "stop": 2, "silence": 3}[kind]
        length = min(beats * self.beat, 0.3 * self.duration)
        first = max(1, int(np.ceil(-self.t0 / self.beat)))
        last = int((self.duration - length) / self.beat)
        if last < first:
            return []
        b = int(self.rng.integers(first, last + 1))
        start = self.t0 + b * self.beat
        return [(float(start), float(start + length), kind)]


def _gain_curve(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.linspace(0.0, 1.0, n, dtype=np.float32)
    low = float(rng.uniform(0.08, 0.3))
    if kind == "crescendo":
        return low + (1 - low) * x
    if kind == "fade_in":
        k = float(rng.uniform(0.3, 0.7))
        return np.clip(x / k, low, 1.0)
    if kind == "fade_out":
        k = float(rng.uniform(0.3, 0.7))
        return np.clip((1 - x) / k, low, 1.0)
    if kind == "swell":
        return low + (1 - low) * np.sin(np.pi * x)
    return np.ones(n, dtype=np.float32)


_RAMPS: dict[int, tuple[np.ndarray, np.ndarray]] = {}
_PHASE_BITS = 20


def _ramps(sr: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Shared read-only (sample index int64, time float32) arrays of at least ``n`` samples."""
    have = _RAMPS.get(sr)
    if have is None or have[0].size < n:
        k = np.arange(max(n, 8 * sr), dtype=np.int64)
        have = (k, (k / sr).astype(np.float32))
        _RAMPS[sr] = have
    return have[0][:n], have[1][:n]


def _osc(table: np.ndarray, freq: float, sr: int, n: int, phase0: float) -> np.ndarray:
    """Wavetable oscillator with an exact fixed-point phase accumulator (fast, no drift)."""
    k, _ = _ramps(sr, n)
    scale = TABLE_SIZE << _PHASE_BITS
    inc = int(round(freq / sr * scale))
    idx = (k * inc + int(phase0 * scale)) >> _PHASE_BITS
    idx &= TABLE_SIZE - 1
    return table[idx]


def _render_tone(ev: _Event, sr: int, rng: np.random.Generator) -> np.ndarray:
    inst = INSTRUMENTS[ev.sound]
    n = int((ev.dur + inst.release) * sr)
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    _, t = _ramps(sr, n)
    f = _midi_hz(ev.midi)
    table = _table(ev.sound, ev.midi)
    phase0 = float(rng.random())
    wave = _osc(table, f, sr, n, phase0)
    if inst.detune:
        wave = 0.5 * (wave + _osc(table, f * 2 ** (inst.detune / 1200), sr, n, phase0 + 0.37))
    env = np.interp(t, [0.0, inst.attack, max(ev.dur, inst.attack), ev.dur + inst.release],
                    [0.0, ev.vel, ev.vel, 0.0]).astype(np.float32)
    if inst.tau:
        env *= np.exp(t * np.float32(-1.0 / inst.tau))
    wave *= env
    return wave


def _render_drum(ev: _Event, sr: int, rng: np.random.Generator) -> np.ndarray:
    def noise(kind: str, n: int) -> np.ndarray:
        src = _noise(sr)[kind]
        o = int(rng.integers(0, src.size - n))
        return src[o: o + n]

    if ev.sound == "kick":
        n = int(0.4 * sr)
        t = np.arange(n, dtype=np.float32) / sr
        f_end, f_add, tau = 48.0, 110.0, 0.035
        phase = 2 * np.pi * (f_end * t + f_add * tau * (1 - np.exp(-t / tau)))
        env = np.exp(-t / 0.16) * np.minimum(t / 0.002, 1.0)
        click = noise("click", n) * np.exp(-t / 0.004) * 0.3
        return (np.sin(phase) * env + click) * ev.vel
    if ev.sound == "snare":
        n = int(0.3 * sr)
        t = np.arange(n, dtype=np.float32) / sr
        body = np.sin(2 * np.pi * 190.0 * t) * np.exp(-t / 0.05) * 0.6
        return (body + noise("snare", n) * np.exp(-t / 0.09) * 0.45) * ev.vel
    decay = {"closed": 0.03, "open": 0.16, "ride": 0.35}[ev.sound]
    n = int(min(5 * decay, 1.0) * sr)
    t = np.arange(n, dtype=np.float32) / sr
    amp = {"closed": 0.5, "open": 0.4, "ride": 0.3}[ev.sound]
    return noise("hat", n) * np.exp(-t / decay) * amp * ev.vel


def _frame_rms(x: np.ndarray, hop: int, num_frames: int) -> np.ndarray:
    """RMS of a mono signal around each CQT frame centre ``t * hop`` (window of +-1 hop)."""
    n = x.size
    nb = -(-n // hop)
    p = np.zeros(nb * hop, dtype=np.float32)
    p[:n] = x
    p *= p
    blocks = p.reshape(nb, hop).sum(axis=1, dtype=np.float64)  # block b = [b*hop, (b+1)*hop)
    padded = np.concatenate([[0.0], blocks, np.zeros(max(num_frames - nb, 0) + 1)])
    # frame t covers blocks t-1 and t (clipped to the signal)
    sums = padded[:num_frames] + padded[1 : num_frames + 1]
    lo = np.clip(np.arange(num_frames) * hop - hop, 0, n)
    hi = np.clip(np.arange(num_frames) * hop + hop, 0, n)
    return np.sqrt(sums / np.maximum(hi - lo, 1)).astype(np.float32)


def _pan_gains(pan: float) -> tuple[float, float]:
    """Equal-power pan: -1 = hard left, +1 = hard right."""
    a = (pan + 1.0) * np.pi / 4
    return float(np.cos(a)), float(np.sin(a))


def generate_clip(
    seed: int,
    index: int,
    duration: float = 5.0,
    sample_rate: int = 22050,
    hop_length: int = 512,
    presets: tuple[str, ...] | None = None,
    stems: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One synthetic clip: (float32 ``[2, samples]``, ground-truth metadata).

    Fully determined by (seed, index, duration, sample_rate, presets). ``stems`` solos some
    parts (same clip, same gain as in the full mix): what each part contributes.
    """
    if stems is not None and not set(stems) <= set(STEMS):
        raise ValueError(f"unknown stems {sorted(set(stems) - set(STEMS))}; valid: {STEMS}")
    rng = np.random.default_rng([int(seed), int(index)])
    names = tuple(presets) if presets else tuple(PRESETS)
    preset_name = names[int(rng.integers(len(names)))]
    sr = int(sample_rate)
    n = int(round(duration * sr))
    num_frames = 1 + n // hop_length
    song = _Song(rng, duration, preset_name)
    song.drums()
    song.bass()
    song.chords()
    song.melody()
    breaks = song.breaks()
    dyn = song.dynamics()

    # stereo placement: kick/bass centred, the rest spread
    side = 1.0 if rng.random() < 0.5 else -1.0
    pan = {
        "kick": 0.0,
        "bass": float(rng.uniform(-0.1, 0.1)),
        "snare": float(rng.uniform(-0.15, 0.15)),
        "hats": side * float(rng.uniform(0.3, 0.7)),
        "chords": -side * float(rng.uniform(0.2, 0.6)),
        "melody": side * float(rng.uniform(0.05, 0.45)),
    }

    # drop events inside breaks
    def muted(stem: str, t: float) -> bool:
        return any(a <= t < b and (kind != "drums_out" or stem in DRUM_STEMS)
                   for a, b, kind in breaks)

    events = [e for e in song.events if not muted(e.stem, e.onset)]

    mono = {s: np.zeros(n, dtype=np.float32) for s in STEMS}
    for ev in events:
        sig = _render_drum(ev, sr, rng) if ev.stem in DRUM_STEMS else _render_tone(ev, sr, rng)
        start = int(round(ev.onset * sr))
        if start < 0:
            sig = sig[-start:]
            start = 0
        m = min(sig.size, n - start)
        if m > 0:
            mono[ev.stem][start: start + m] += sig[:m]

    gain = _gain_curve(dyn, n, rng)
    ramp = max(1, int(0.005 * sr))
    stem_mono: dict[str, np.ndarray] = {}
    mix = np.zeros((2, n), dtype=np.float32)
    for s in STEMS:
        g = gain * song.p.levels.get(s, 0.5)
        for a, b, kind in breaks:
            if kind == "drums_out" and s not in DRUM_STEMS:
                continue
            mask = np.ones(n, dtype=np.float32)
            i0, i1 = max(int(a * sr), 0), min(int(b * sr), n)
            mask[i0:i1] = 0.0
            # short ramps so the cut itself does not click
            r0 = np.arange(max(i0 - ramp, 0), i0)
            mask[r0] = 1.0 - (r0 - (i0 - ramp)) / ramp
            r1 = np.arange(i1, min(i1 + ramp, n))
            mask[r1] = (r1 - i1) / ramp
            g = g * mask
        lg, rg = _pan_gains(pan[s])
        sig = mono[s] * g
        stem_mono[s] = sig
        mix[0] += sig * lg
        mix[1] += sig * rg

    peak = float(np.max(np.abs(mix)))
    target = 10 ** (float(rng.uniform(-9.0, -1.0)) / 20)
    scale = target / peak if peak > 0 else 1.0
    if stems is not None:
        mix = np.zeros((2, n), dtype=np.float32)
        for st in stems:
            lg, rg = _pan_gains(pan[st])
            mix[0] += stem_mono[st] * lg
            mix[1] += stem_mono[st] * rg
    mix *= scale

    onset_times = np.unique(np.round([e.onset for e in events if 0 <= e.onset < duration], 4))
    stem_onsets = {
        s: np.unique(np.round([e.onset for e in events if e.stem == s and 0 <= e.onset < duration], 4))
        for s in STEMS
    }
    beat_times = song.t0 + song.beat * np.arange(int(np.ceil((duration - song.t0) / song.beat)) + 1)
    beat_times = beat_times[(beat_times >= 0) & (beat_times < duration)]
    bars = song.t0 + song.bar * np.arange(song.n_bars + 1)
    downbeats = bars[(bars >= 0) & (bars < duration)]
    info: dict[str, Any] = {
        "preset": preset_name,
        "tempo": song.tempo,
        "key": int(song.key),
        "mode": song.mode,
        "progression": [int(d) for d in song.progression],
        "beat_times": beat_times.astype(np.float64),
        "downbeat_times": downbeats.astype(np.float64),
        "onset_times": onset_times.astype(np.float64),
        "stem_onsets": {s: v.astype(np.float64) for s, v in stem_onsets.items()},
        # equal-power pan: mean power over L/R = mono power / 2
        "stems_energy": {
            s: _frame_rms(stem_mono[s], hop_length, num_frames) * np.float32(scale * 0.5**0.5)
            for s in STEMS
        },
        "pan": pan,
        "dynamics": dyn,
        "breaks": breaks,
        "has_drums": bool(song.has_drums),
        "peak": float(target),
    }
    return mix.astype(np.float32, copy=False), info


def _copy_info(info: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in info.items():
        if isinstance(v, np.ndarray):
            v = v.copy()
        elif isinstance(v, dict):
            v = {kk: (vv.copy() if isinstance(vv, np.ndarray) else vv) for kk, vv in v.items()}
        elif isinstance(v, list):
            v = list(v)
        out[k] = v
    return out


class SyntheticMusic(ClipDataset):
    """``num_clips`` procedurally generated music clips with ground truth in ``clip_info``.

    clip_info keys: clip_id, source ("synthetic"), offset, duration, index, seed, preset,
    tempo (BPM), key (pitch class), mode, beat_times / downbeat_times / onset_times (s),
    stem_onsets (stem -> s), stems_energy (stem -> float32 RMS per CQT frame, length T),
    pan (stem -> -1 left .. +1 right), dynamics, breaks [(start, end, kind)], has_drums.
    Generation takes ~15 ms per 5 s clip (plus ~35 ms for the CQT unless cached); the last
    few clips' audio and the last 4096 clips' metadata are memoised, so ``ds[i]`` followed by
    ``ds.clip_info(i)`` synthesises once. With a feature cache, ``clip_info`` of a clip not
    seen in this process still synthesises it (the ground truth is not stored on disk).
    """

    def __init__(
        self,
        num_clips: int = 256,
        seed: int = 0,
        *,
        max_duration: float | None = None,
        processor: CQTProcessor | None = None,
        output_format: OutputFormat = "cqt",
        cache: FeatureCache | str | os.PathLike | None = None,
        presets: list[str] | tuple[str, ...] | None = None,
        windowing: Windowing | None = None,
    ) -> None:
        super().__init__(
            processor=processor,
            windowing=windowing,
            max_duration=max_duration,
            output_format=output_format,
            cache=cache,
            seed=seed,
        )
        if int(num_clips) < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        if presets is not None:
            unknown = [p for p in presets if p not in PRESETS]
            if unknown or not presets:
                raise ValueError(f"unknown presets {unknown}; valid: {sorted(PRESETS)}")
        self.num_clips_ = int(num_clips)
        self.presets = tuple(presets) if presets else None
        self.skipped: list[tuple[str, str]] = []  # same attribute as file data sets
        self._memo: OrderedDict[int, tuple[np.ndarray, dict[str, Any]]] = OrderedDict()
        # metadata is small (~6 KB a clip) and asked for often (clip ids): keep many more
        self._infos: OrderedDict[int, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return self.num_clips_

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_memo"] = OrderedDict()
        state["_infos"] = OrderedDict()
        return state

    def _generate(self, i: int) -> tuple[np.ndarray, dict[str, Any]]:
        hit = self._memo.get(i)
        if hit is not None:
            self._memo.move_to_end(i)
            return hit
        p = self.processor
        audio, info = generate_clip(
            self.seed, i, self.max_duration, p.sample_rate, p.hop_length, self.presets
        )
        info = {
            "clip_id": f"synthetic-v{GENERATOR_VERSION}-s{self.seed}-{i}",
            "source": "synthetic",
            "offset": 0.0,
            "duration": self.max_duration,
            "index": i,
            "seed": self.seed,
            **info,
        }
        self._memo[i] = (audio, info)
        while len(self._memo) > AUDIO_MEMO:
            self._memo.popitem(last=False)
        self._infos[i] = info
        while len(self._infos) > INFO_MEMO:
            self._infos.popitem(last=False)
        return audio, info

    def _clip_info(self, index: int) -> dict[str, Any]:
        info = self._infos.get(index)
        if info is None:
            info = self._generate(index)[1]
        else:
            self._infos.move_to_end(index)
        return _copy_info(info)

    def _clip_audio(self, index: int) -> np.ndarray:
        return self._generate(index)[0].copy()

    def _cache_identity(self, index: int) -> str:
        presets = ",".join(self.presets) if self.presets else "all"
        return f"synthetic:v{GENERATOR_VERSION}:seed={self.seed}:index={index}:presets={presets}"

    def cache_key(self, index: int) -> str:
        # no need to synthesise the clip just to learn its (always 0) offset
        i = self._check_index(index)
        return FeatureCache.key(
            self._cache_identity(i), 0.0, self.max_duration, self.processor.config.to_json()
        )


__all__ = ["SyntheticMusic", "generate_clip", "PRESETS", "STEMS", "GENERATOR_VERSION"]
