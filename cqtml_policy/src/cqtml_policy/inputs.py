"""Input transforms shared by the policies."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cqtml_policy.contract import DEFAULT_FRAME_RATE, SAMPLE_RATE, device_bands


def clip_relative(cqt: torch.Tensor, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """Each bin rescaled by its own clip statistics: ``(x - q_low) / (q_high - q_low)`` over time.

    What every band-follower and the gold target do (per-clip auto-gain): the same music
    recorded hotter, quieter or denser gives the same relative picture.
    """
    q = torch.quantile(cqt, torch.tensor([low, high], device=cqt.device, dtype=cqt.dtype), dim=-1, keepdim=True)
    return ((cqt - q[0]) / (q[1] - q[0]).clamp(min=0.05)).clamp(-1.0, 2.0)


def with_relative(cqt: torch.Tensor) -> torch.Tensor:
    """``[B, C, F, T]`` -> ``[B, 2C, F, T]``: the CQT and its :func:`clip_relative` version."""
    return torch.cat([cqt, clip_relative(cqt)], dim=1)


class BandFeatures(nn.Module):
    """Per-device band curves ``[B, 5·D, T]`` computed from the CQT (no parameters): what the
    gold target and the band-follower are built from, which convolutions over average-pooled
    frequency rows reach only approximately.

    For each contract device band (``device_bands``), on the channel-max (mono) CQT: the band
    level (mean of its ``top_bins`` loudest bins), that level relative to its own clip-level
    ``quantile`` (per-band auto-gain), the relative level through a loudness law
    (``2 ** (8 · rel)``: brightness halves for every 1/8 of the CQT's range below the clip's
    loud level), the band's spectral flux (mean positive difference over its bins) and the
    flux relative to the band's strongest flux in the clip (``sqrt``).
    """

    per_band = 5

    def __init__(self, num_bands: int, top_bins: int = 3, quantile: float = 0.95) -> None:
        super().__init__()
        self.num_bands, self.top_bins, self.quantile = int(num_bands), int(top_bins), float(quantile)
        self.out_features = self.per_band * self.num_bands

    def forward(self, cqt: torch.Tensor) -> torch.Tensor:
        mono = cqt.amax(dim=1)  # [B, F, T]
        diff = F.pad(mono, (1, 0)).diff(dim=-1).clamp(min=0.0)  # silence before the clip
        feats = []
        for lo, hi in device_bands(mono.shape[1], self.num_bands):
            k = min(self.top_bins, hi - lo)
            level = mono[:, lo:hi].topk(k, dim=1).values.mean(dim=1)  # [B, T]
            rel = level - torch.quantile(level, self.quantile, dim=-1, keepdim=True)
            flux = diff[:, lo:hi].mean(dim=1)
            peak = flux.amax(dim=-1, keepdim=True).clamp(min=1e-4)
            feats += [level, rel, torch.exp2(8.0 * rel.clamp(max=0.5)), flux * 10.0,
                      (flux / peak).sqrt()]
        return torch.stack(feats, dim=1)


def onset_envelope(cqt: torch.Tensor, lag: int = 2) -> torch.Tensor:
    """``[B, C, F, T]`` -> ``[B, T]``: the mean over bins of the (channel-max) CQT's rise over
    the last ``lag`` frames, librosa's onset strength on the CQT. The clip is an excerpt: the
    frames before it are taken equal to its first, so its start is not an onset."""
    mono = cqt.amax(dim=1)
    prev = torch.cat([mono[..., :1].expand(*mono.shape[:-1], lag), mono[..., :-lag]], dim=-1)
    return (mono - prev[..., : mono.shape[-1]]).clamp(min=0.0).mean(dim=1)


class PulseFeatures(nn.Module):
    """Rig-level onset and beat curves ``[B, 3, T]`` from the CQT (no parameters): what a beat
    tracker hears, which a policy whose convolutions see a third of a second cannot.

    Channels: the :func:`onset_envelope` over its clip maximum; the *predominant local pulse*
    (Grosche & Mueller 2011, librosa.beat.plp): every frame's strongest tempo between
    ``tempo_min`` and ``tempo_max`` BPM in a Hann window of ``window_s`` around it, its
    sinusoid with that tempo and phase overlap-added and half-wave rectified, so the curve
    peaks on the beats even where an onset is weak; and the pulse's strength (1 - the mean
    tempo magnitude over the strongest's), so a policy can tell a clear beat from none.
    """

    out_features = 3

    def __init__(self, frame_rate: float = DEFAULT_FRAME_RATE, *, window_s: float = 3.0,
                 tempo_min: float = 60.0, tempo_max: float = 200.0, num_tempi: int = 48,
                 lag: int = 2) -> None:
        super().__init__()
        if not (frame_rate > 0 and window_s > 0 and 0 < tempo_min < tempo_max and num_tempi >= 1
                and lag >= 1):
            raise ValueError("PulseFeatures needs frame_rate, window_s > 0, 0 < tempo_min < tempo_max, "
                             f"num_tempi >= 1 and lag >= 1; got {frame_rate}, {window_s}, "
                             f"{tempo_min}, {tempo_max}, {num_tempi}, {lag}")
        self.frame_rate, self.lag = float(frame_rate), int(lag)
        win = max(3, int(round(window_s * frame_rate)) | 1)  # odd: centred on its frame
        offsets = torch.arange(win, dtype=torch.float64) - win // 2
        hz = torch.logspace(math.log10(tempo_min / 60.0), math.log10(tempo_max / 60.0), num_tempi,
                            dtype=torch.float64)
        phase = 2.0 * math.pi * hz[:, None] * offsets[None] / self.frame_rate  # [K, W]
        hann = torch.hann_window(win + 2, periodic=False, dtype=torch.float64)[1:-1]
        self.register_buffer("_cos", (torch.cos(phase) * hann).float(), persistent=False)
        self.register_buffer("_sin", (torch.sin(phase) * hann).float(), persistent=False)
        self.window = win

    def forward(self, cqt: torch.Tensor) -> torch.Tensor:
        env = onset_envelope(cqt.float(), self.lag)  # [B, T]
        b, t = env.shape
        w, half = self.window, self.window // 2
        env_max = env.amax(dim=-1, keepdim=True)
        frames = F.pad(env, (half, half)).unfold(-1, w, 1)  # [B, T, W]: the window around t
        re, im = frames @ self._cos.T, frames @ self._sin.T  # [B, T, K]
        mag = torch.sqrt(re**2 + im**2)
        best = mag.argmax(dim=-1, keepdim=True)  # the strongest tempo at each frame
        norm = mag.gather(-1, best).clamp(min=1e-6)
        strength = 1.0 - mag.mean(dim=-1, keepdim=True) / norm  # 0: no tempo stands out
        c, s = re.gather(-1, best) / norm, im.gather(-1, best) / norm  # its phase, unit length
        # each frame's sinusoid over its window: cos(phase(w) - angle) = cos*c + sin*s
        kernels = self._cos[best.squeeze(-1)] * c + self._sin[best.squeeze(-1)] * s  # [B, T, W]
        pulse = F.fold(kernels.transpose(1, 2), output_size=(1, t + 2 * half),
                       kernel_size=(1, w)).view(b, -1)[:, half : half + t]
        pulse = pulse.clamp(min=0.0)
        pulse = pulse / pulse.amax(dim=-1, keepdim=True).clamp(min=1e-6)
        has_onsets = (env_max > 1e-4).float()  # silence: no pulse
        return torch.stack([env / env_max.clamp(min=1e-4), pulse * has_onsets,
                            strength.squeeze(-1) * has_onsets], dim=1)


class BeatFeatures(nn.Module):
    """The clip's tracked beats as curves ``[B, 2, T]`` (no parameters): a dynamic-programming
    beat tracker's decision (librosa.beat.beat_track: one tempo for the clip, beats placed on
    the :func:`onset_envelope`'s peaks), which :class:`PulseFeatures`' local pulse only hints at.

    Channels: 1 on every tracked beat frame (0 elsewhere); the same impulses weighted by
    ``(envelope at the beat / the strongest beat's) ** strength_power``, so a policy can
    pulse weak beats less. Like a lighting desk's beat detector it sees the whole clip it is
    given. Clips shorter than ``min_s`` or whose envelope never reaches ``min_onset`` (near
    silence) get no beats. Not differentiable (its input is the CQT, never trained); needs
    librosa (``pip install "cqtml-policy[beat]"``). Tracking is deterministic in the envelope
    and takes ~4 ms a clip, so the last ``memo`` envelopes' beats are kept: training, which
    sees the same clips every epoch, tracks each once. ``segment`` > 0 (the policies pass their
    clip length): an input longer than that is tracked ``segment`` frames at a time, so beats
    are found as in training whatever is appended (a show's window with song context after
    it: tracked as one sequence, 30 % of the window's beats moved).

    >>> BeatFeatures()(torch.zeros(1, 2, 84, 216)).shape
    torch.Size([1, 2, 216])
    """

    out_features = 2

    def __init__(self, frame_rate: float = DEFAULT_FRAME_RATE, *, lag: int = 2, min_s: float = 2.0,
                 min_onset: float = 0.02, strength_power: float = 0.5, memo: int = 8192,
                 segment: int = 0) -> None:
        super().__init__()
        if not (frame_rate > 0 and lag >= 1 and min_s > 0 and min_onset >= 0 and segment >= 0):
            raise ValueError("BeatFeatures needs frame_rate > 0, lag >= 1, min_s > 0, "
                             f"min_onset >= 0 and segment >= 0; got {frame_rate}, {lag}, "
                             f"{min_s}, {min_onset}, {segment}")
        self.segment = int(segment)
        self.frame_rate, self.lag = float(frame_rate), int(lag)
        self.min_s, self.min_onset, self.strength_power = float(min_s), float(min_onset), float(strength_power)
        self.memo = int(memo)
        self._memo: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    def beats(self, env: torch.Tensor) -> list[torch.Tensor]:
        """Beat frame indices of each row of an onset envelope ``[B, T]`` (``segment`` frames
        at a time when ``segment`` > 0)."""
        t = env.shape[-1]
        seg = self.segment
        if seg <= 0 or t <= seg:
            return self._track(env)
        parts = [self._track(env[:, s : s + seg]) for s in range(0, t, seg)]
        return [torch.cat([p[i] + k * seg for k, p in enumerate(parts)]) for i in range(env.shape[0])]

    def _track(self, env: torch.Tensor) -> list[torch.Tensor]:
        try:
            import librosa
        except ImportError as exc:  # pragma: no cover - librosa ships with cqtml-env
            raise ImportError('BeatFeatures needs librosa: pip install "cqtml-policy[beat]"') from exc
        out = []
        hop = max(1, int(round(SAMPLE_RATE / self.frame_rate)))
        for row32 in env.detach().float().cpu().numpy():
            key = row32.tobytes()
            hit = self._memo.get(key)
            if hit is not None:
                self._memo.move_to_end(key)
                out.append(hit)
                continue
            row = row32.astype(np.float64)
            if row.shape[0] < self.min_s * self.frame_rate or row.max() < self.min_onset:
                b = torch.zeros(0, dtype=torch.long)
            else:
                _, frames = librosa.beat.beat_track(onset_envelope=row, sr=SAMPLE_RATE,
                                                    hop_length=hop, units="frames")
                b = torch.as_tensor(frames, dtype=torch.long).clamp(0, row.shape[0] - 1)
            out.append(b)
            if self.memo > 0:
                self._memo[key] = b
                if len(self._memo) > self.memo:
                    self._memo.popitem(last=False)
        return out

    def forward(self, cqt: torch.Tensor) -> torch.Tensor:
        env = onset_envelope(cqt.float(), self.lag)  # [B, T]
        out = torch.zeros(env.shape[0], 2, env.shape[1], device=env.device)
        for i, b in enumerate(self.beats(env)):
            if b.numel() == 0:
                continue
            b = b.to(env.device)
            strength = env[i, b]
            out[i, 0, b] = 1.0
            out[i, 1, b] = (strength / strength.max().clamp(min=1e-9)) ** self.strength_power
        return out


GAIN_FLOOR = 0.05  # GainFeatures' default dark end: the 5th percentile, gold-v4..v6's floor


class GainFeatures(nn.Module):
    """Per-device band levels through a lighting console's per-band auto-gain ``[B, 2·D, T]``
    (no parameters): each band's level (the mean of its ``top_bins`` loudest bins, as the
    band-follower hears broadband attacks), rescaled so that the band's own ``floor``
    percentile over the clip is dark and its ``ceiling`` percentile full, below a ``gate``
    noise floor dark, with at least ``min_span`` between floor and full; and that curve's rise
    over the last frame (the frame before the input taken as dark, as :class:`BandFeatures`'
    flux takes it). :class:`BandFeatures` gives one upper quantile and three bins; a
    show's brightness is set by both ends of the band's range, which a frame's convolutions
    cannot estimate from the clip. With the defaults the level curve is, to float precision,
    the gold scorer's (gold-v4/v5) level target before its attack / decay follower: what a
    student of that target otherwise misjudged by ~0.03 of full scale per clip.

    Example:
        >>> gain = GainFeatures(4)
        >>> gain(torch.rand(1, 2, 84, 216)).shape  # 4 bands x (level, rise)
        torch.Size([1, 8, 216])
    """

    per_band = 2

    def __init__(self, num_bands: int, *, top_bins: int = 6, floor: float = GAIN_FLOOR,
                 ceiling: float = 0.98, gate: float = 0.15, min_span: float = 0.15) -> None:
        super().__init__()
        if num_bands < 1 or top_bins < 1 or not 0 <= floor < ceiling <= 1 or min_span <= 0:
            raise ValueError("GainFeatures needs num_bands, top_bins >= 1, 0 <= floor < ceiling <= 1 "
                             f"and min_span > 0; got {num_bands}, {top_bins}, {floor}, {ceiling}, {min_span}")
        self.num_bands, self.top_bins = int(num_bands), int(top_bins)
        self.floor, self.ceiling, self.gate, self.min_span = float(floor), float(ceiling), float(gate), float(min_span)
        self.out_features = self.per_band * self.num_bands

    def forward(self, cqt: torch.Tensor) -> torch.Tensor:
        mono = cqt.float().amax(dim=1)  # [B, F, T]
        level = torch.stack([mono[:, lo:hi].topk(min(self.top_bins, hi - lo), dim=1).values.mean(dim=1)
                             for lo, hi in device_bands(mono.shape[1], self.num_bands)], dim=1)
        q = torch.tensor([self.floor, self.ceiling], device=mono.device)
        fl, ce = torch.quantile(level, q, dim=-1, keepdim=True)  # [B, D, 1] each: one sort
        fl = fl.clamp(min=self.gate)
        ce = torch.maximum(ce, fl + self.min_span)
        rel = torch.where(level > fl, (level - fl) / (ce - fl), torch.zeros_like(level)).clamp(0.0, 1.0)
        rise = (rel - F.pad(rel, (1, 0))[..., :-1]).clamp(min=0.0)
        return torch.stack([rel, rise], dim=2).flatten(1, 2)  # [B, 2·D, T]: level, rise per band


class CurveFeatures(nn.Module):
    """:class:`BandFeatures` of ``num_bands`` bands (0: none), then (``pulse``)
    :class:`PulseFeatures`, then (``beat``) :class:`BeatFeatures`, then :class:`GainFeatures`
    of ``gain_bands`` bands (0: none; its dark end at the ``gain_floor`` percentile), stacked
    ``[B, 5·D (+3) (+2) (+2·G), T]``: the one module behind every policy's per-frame input
    curves."""

    def __init__(self, num_bands: int, pulse: bool = False, beat: bool = False,
                 beat_segment: int = 0, gain_bands: int = 0, gain_floor: float = GAIN_FLOOR) -> None:
        super().__init__()
        if num_bands <= 0 and not pulse and not beat and gain_bands <= 0:
            raise ValueError("CurveFeatures needs num_bands > 0, pulse, beat or gain_bands > 0")
        self.bands = BandFeatures(num_bands) if num_bands > 0 else None
        self.pulse = PulseFeatures() if pulse else None
        self.beat = BeatFeatures(segment=beat_segment) if beat else None
        self.gain = GainFeatures(gain_bands, floor=gain_floor) if gain_bands > 0 else None
        self.out_features = sum(m.out_features for m in self._parts())

    def _parts(self) -> list[nn.Module]:
        return [m for m in (self.bands, self.pulse, self.beat, self.gain) if m is not None]

    def forward(self, cqt: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(cqt) for m in self._parts()], dim=1)


__all__ = ["GAIN_FLOOR", "BandFeatures", "BeatFeatures", "CurveFeatures", "GainFeatures", "PulseFeatures", "clip_relative", "onset_envelope", "with_relative"]
