"""A small Bradley–Terry reward model over (clip CQT, device activations).

Structured like the task so that it is fast and transfers to real music:

1. **Clip encoder** (once per clip): the louder channel of the CQT is pooled over frequency
   per device with learned band weights (softmax over bins, initialised to the device's band
   from ``device_bands``): a soft mean, two soft maxima (log-sum-exp at two temperatures) and
   the pooled positive flux (onset strength), plus whole-spectrum loudness and flux. A target
   estimate ``y_hat = clip((L - gate) / (q95(L) - gate), 0, 1)`` (learned gate, per-clip
   auto-gain) mirrors how a lighting controller maps loudness to brightness.
2. **Per-frame head** (per action and device, shared over devices): action level, first
   difference, 2-frame rise, |a - y_hat| and the band features, through a residual stack of
   dilated temporal convolutions (receptive field ~1.5 s, enough to count flashes per second)
   to a per-frame contribution ``c[b, d, t]``.
3. **Global head**: pooled statistics per device (correlation of ``a`` with ``y_hat``, std of
   both, their ratio, mean level, mean |a - y_hat|, mean of the conv features) to ``g[b, d]``.

4. **Per-device terms** (``device_terms=True``; off in the shipped model): both heads above
   are shared over devices and see a device only through its band features, but a person may
   give devices different roles (the bass lamp pumps, the treble lamp stays calm). Four
   tensors add a per-device correction: ``device_in [D, H, F]`` and ``device_bias [D, H]`` to
   the per-frame layer's pre-activation, ``device_out [D, H]`` to its read-out and
   ``device_global [D, G]`` to the global head's read-out. They start at zero, so enabling
   them (:meth:`RewardModel.with_device_terms`) leaves every score bit-identical, and weight
   decay pulls them back towards the shared head; the fine-tune learns them.

5. **Gold version** (``gold_version``; the shipped models: gold-v5's, the default, and
   gold-v1's). gold-v1's target is the estimate of item 1, computed here with a learned gate. Later gold
   versions shape their target with rules a small encoder cannot learn from a few thousand
   pairs (per-band floor and ceiling, a follower with attack and decay, punches, a pulse on
   the clip's beats from librosa's beat tracker). There the encoder takes the target, the band
   onsets, the silent frames and the beats from that version's :class:`GoldScorer` (fixed per
   clip and cached by content; the band pooling stays learned), the flash rule uses that
   version's swing, and the per-frame and global heads also see the rig's beat response (the
   gold ``beat`` component: rises of the mean over devices near the clip's beats).

``raw = mean_{d,t}(c + g)``; :meth:`RewardModel.forward` returns ``raw`` (the Bradley–Terry
logit scale it was trained on) unless ``calibrated=True``. :meth:`RewardModel.score` returns
the *calibrated* score ``raw * calib_scale + calib_bias``: an affine map fitted after training
(least squares on the training candidates) onto the gold scorer's [0, 1] scale. Weights are
stored as safetensors + a JSON config (never pickle).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cqtml_env.contract import DEFAULT_FRAME_RATE, device_bands
from cqtml_env.gold.scorer import GOLD_VERSIONS, GoldConfig, GoldScorer

CONFIG_VERSION = 1


@dataclass
class RewardModelConfig:
    """Architecture and calibration; saved as JSON beside the weights."""

    num_devices: int = 4
    n_bins: int = 84
    frame_rate: float = DEFAULT_FRAME_RATE  # the CQT's; the flash window is one second of it
    hidden: int = 8
    global_hidden: int = 32
    gate_init: float = 0.35
    min_ref_span: float = 0.3
    device_terms: bool = False
    """per-device corrections of the shared heads (module doc, item 4)"""
    gold_version: str = "gold-v1"
    """the gold scorer whose rules the hand-made features follow (module doc, item 5)"""
    calib_scale: float = 1.0
    calib_bias: float = 0.0
    version: int = CONFIG_VERSION
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RewardModelConfig:
        d = dict(d)
        if d.get("version", CONFIG_VERSION) != CONFIG_VERSION:
            raise ValueError(f"reward model config version {d.get('version')} not supported")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown reward model config keys {sorted(unknown)}")
        return cls(**d)


NUM_CLIP_FEATURES = 9
NUM_ACTION_FEATURES = 11
NUM_GLOBAL_STATS = 12
# what a gold version after v1 adds (module doc, item 5): near-beat and beat maps per clip;
# the rig's beat events, events near a beat, beat hits per frame; beat precision, recall, F
BEAT_CLIP_FEATURES, BEAT_ACTION_FEATURES, BEAT_GLOBAL_STATS = 2, 3, 4
# the per-device parameters (module doc, item 4); weights saved without them load as zeros
DEVICE_TERMS = ("device_in", "device_bias", "device_out", "device_global")
# the gold scorer's rule constants, mirrored by the model's hand-made features (one source)
GOLD = GoldConfig()
# the gold versions whose trained models ship in the wheel; load_default()'s is the newest
SHIPPED_GOLD_VERSIONS = ("gold-v1", "gold-v5")
DEFAULT_GOLD_VERSION = "gold-v5"
# the model a person's taste starts from (labelling page, ``--init default``): gold-v1's. From
# it, 300 page labels reach 0.859 agreement with a taste (3 seeds); from gold-v5's model, with
# the page's candidates around gold-v5's target, 0.838 (README, "Does it learn a person's taste?")
TASTE_GOLD_VERSION = "gold-v1"


def shipped_version_for(gold_version: str) -> str:
    """The shipped reward model that goes with ``gold_version``: its own where one ships,
    otherwise the default (for runs that only report the proxy beside that gold)."""
    return gold_version if gold_version in SHIPPED_GOLD_VERSIONS else DEFAULT_GOLD_VERSION


class ClipEncoding:
    """Per-clip tensors (computed once per clip, reused for any number of actions)."""

    FIELDS = ("feats", "target", "onset", "near", "jump", "silent", "beat", "near_beat")

    def __init__(self, feats, target, onset, near, jump, silent, beat, near_beat) -> None:
        self.feats = feats  # [C, D, T, clip features]
        self.target = target  # [C, D, T] brightness target estimate
        self.onset = onset  # [C, D, T] 1 at band onsets
        self.near = near  # [C, D, T] Gaussian closeness to the nearest onset
        self.jump = jump  # [C, D, T] target jump around each frame (>= 0.1)
        self.silent = silent  # [C, D, T] 1 where the band is silent
        self.beat = beat  # [C, 1, T] 1 on the clip's beats (gold-v1: none)
        self.near_beat = near_beat  # [C, 1, T] closeness to the nearest beat or band onset

    def index(self, idx: torch.Tensor) -> ClipEncoding:
        return ClipEncoding(*(getattr(self, f)[idx] for f in self.FIELDS))


def _shift(x: torch.Tensor, k: int) -> torch.Tensor:
    """Delay along the last axis by k > 0 frames (zeros before the clip), advance for k < 0."""
    if k > 0:
        return F.pad(x, (k, 0))[..., :-k]
    return F.pad(x, (0, -k))[..., -k:]


def _pool(x: torch.Tensor, width: int, kind: str = "avg") -> torch.Tensor:
    """Centred pooling along time of ``[..., T]`` keeping the length."""
    shape = x.shape
    pad = (width // 2, width - 1 - width // 2)
    if kind == "avg":  # running mean over the window (edges: over the part inside the clip)
        c = F.pad(torch.cumsum(x, dim=-1), (1, 0))
        t = shape[-1]
        idx = torch.arange(t, device=x.device)
        lo = (idx - pad[0]).clamp(0, t)
        hi = (idx + pad[1] + 1).clamp(0, t)
        return (c[..., hi] - c[..., lo]) / (hi - lo).to(x.dtype)
    y = x.reshape(-1, 1, shape[-1])
    if kind == "max":
        y = F.max_pool1d(F.pad(y, pad, value=-1e4), width, stride=1)
    else:  # min
        y = -F.max_pool1d(F.pad(-y, pad, value=-1e4), width, stride=1)
    return y.reshape(shape)


def _top_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the ``k`` largest values over dim 1 (repeated max: faster than topk on CPU)."""
    k = min(k, x.shape[1])
    total = torch.zeros_like(x[:, 0])
    for i in range(k):
        v, idx = x.max(dim=1, keepdim=True)
        total = total + v.squeeze(1)
        if i + 1 < k:
            x = x.scatter(1, idx, -1e4)
    return total / k


class RewardModel(nn.Module):
    """``forward(cqt [B, 2, F, T], action [B, D, T]) -> [B]`` (raw BT scale; see module doc)."""

    def __init__(self, config: RewardModelConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        cfg = config or RewardModelConfig(**kwargs)
        self.config = cfg
        d, f = cfg.num_devices, cfg.n_bins
        logits = torch.full((d, f), -6.0)
        for i, (lo, hi) in enumerate(device_bands(f, d)):
            logits[i, lo:hi] = 0.0
        self.band_logits = nn.Parameter(logits)
        self.gate = nn.Parameter(torch.tensor(float(cfg.gate_init)))  # gold-v1's target only
        if cfg.gold_version not in GOLD_VERSIONS:
            raise ValueError(f"unknown gold_version {cfg.gold_version!r}; known: {GOLD_VERSIONS}")
        self.beats = cfg.gold_version != "gold-v1"  # module doc, item 5
        if self.beats:  # that version's rules, and its clip features (cached by content)
            self._gold = GoldScorer(num_devices=d, version=cfg.gold_version,
                                    frame_rate=cfg.frame_rate, cache_size=1024)
            self.rules = self._gold.config
        else:
            self._gold, self.rules = None, GOLD
        self.n_clip = NUM_CLIP_FEATURES + BEAT_CLIP_FEATURES * self.beats
        self.n_action = NUM_ACTION_FEATURES + BEAT_ACTION_FEATURES * self.beats
        self.n_stats = NUM_GLOBAL_STATS + BEAT_GLOBAL_STATS * self.beats
        cin = self.n_clip + self.n_action
        h = cfg.hidden
        self.bands = device_bands(f, d)
        self.frame_mlp = nn.Sequential(nn.Linear(cin, h), nn.ReLU())
        self.frame_out = nn.Linear(h, 1)
        self.global_mlp = nn.Sequential(
            nn.Linear(h + self.n_stats, cfg.global_hidden),
            nn.GELU(),
            nn.Linear(cfg.global_hidden, 1),
        )
        if cfg.device_terms:
            self.device_in = nn.Parameter(torch.zeros(d, h, cin))
            self.device_bias = nn.Parameter(torch.zeros(d, h))
            self.device_out = nn.Parameter(torch.zeros(d, h))
            self.device_global = nn.Parameter(torch.zeros(d, cfg.global_hidden))

    def with_device_terms(self) -> RewardModel:
        """A copy with per-device terms (zero where this model has none: same scores)."""
        import copy

        cfg = copy.deepcopy(self.config)
        cfg.device_terms = True
        with torch.random.fork_rng(devices=[]):
            out = RewardModel(cfg)
        missing, unexpected = out.load_state_dict(self.state_dict(), strict=False)
        if unexpected or not set(missing) <= set(DEVICE_TERMS):
            raise RuntimeError(f"with_device_terms: missing {missing}, unexpected {unexpected}")
        out.train(self.training)
        return out.to(next(self.parameters()).device)

    # -- clip side -----------------------------------------------------------------------
    def encode_clip(self, cqt: torch.Tensor) -> ClipEncoding:
        """Band features, target estimate and onset maps of clips ``[C, 2, F, T]``."""
        cfg = self.config
        if cqt.ndim != 4 or cqt.shape[1] != 2 or cqt.shape[2] != cfg.n_bins:
            raise ValueError(f"cqt must be [B, 2, {cfg.n_bins}, T], got {tuple(cqt.shape)}")
        x = cqt.float().amax(dim=1)  # [C, F, T] louder channel
        flux = F.relu(x - _shift(x, 1))
        w = torch.softmax(self.band_logits, dim=-1)  # [D, F]
        mean = torch.einsum("df,cft->cdt", w, x)
        bflux = torch.einsum("df,cft->cdt", w, flux)
        if self.beats:
            level, y, onset, near, silent, beat, near_beat = self._gold_maps(cqt)
        else:
            level, y, onset, near, silent = self._v1_maps(x, bflux)
            beat = near_beat = torch.zeros_like(y[:, :1])
        after = torch.maximum(torch.maximum(y, _shift(y, -1)), _shift(y, -2))
        before = torch.minimum(_shift(y, 1), _shift(y, 2))
        jump = (after - before).clamp(min=self.rules.min_jump)
        y_rise = y - before
        loud = x.mean(dim=1, keepdim=True).expand_as(mean)
        cols = [y, mean, level, bflux * 10, onset, near, y_rise, silent, loud]
        if self.beats:
            cols += [beat.expand_as(y), near_beat.expand_as(y)]
        feats = torch.stack(cols, dim=-1)
        return ClipEncoding(feats, y, onset, near, jump, silent, beat, near_beat)

    def _v1_maps(self, x: torch.Tensor, bflux: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """gold-v1's rules in torch: level, target (learned gate), onsets, nearness, silence."""
        cfg = self.config
        level = torch.stack([_top_mean(x[:, lo:hi], 3) for lo, hi in self.bands], dim=1)
        gate = self.gate
        ref = torch.quantile(level.flatten(1), 0.95, dim=1)[:, None, None]
        ref = torch.maximum(ref, gate + cfg.min_ref_span)
        y = ((level - gate) / (ref - gate)).clamp(0.0, 1.0)
        # onsets: local flux maxima above the local mean, followed by an audible band
        local_max = bflux >= _pool(bflux, 7, "max") - 1e-7
        above = bflux >= _pool(bflux, 21, "avg") + GOLD.onset_delta
        after = torch.maximum(torch.maximum(y, _shift(y, -1)), _shift(y, -2))
        onset = (local_max & above & (after >= GOLD.onset_min_target)).float()
        near = torch.zeros_like(onset)
        for k in range(-4, 5):
            near = torch.maximum(near, _shift(onset, k) * math.exp(-(k**2) / (2 * GOLD.onset_sigma**2)))
        silent = y <= 0
        for k in range(1, GOLD.silence_release + 1):
            silent = silent & (_shift(y, k) <= 0)
        return level, y, onset, near, silent.float()

    def _gold_maps(self, cqt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Later gold versions: level, target, onsets, nearness, silence ``[C, D, T]`` and
        beats, nearness to a beat ``[C, 1, T]``, from that version's scorer (fixed per clip)."""
        feats = [self._gold.features(c) for c in cqt.detach().float().cpu().numpy()]
        c, d, t = len(feats), self.config.num_devices, cqt.shape[-1]
        onset = np.zeros((c, d, t), np.float32)
        beat = np.zeros((c, 1, t), np.float32)
        for i, f in enumerate(feats):
            for j, frames in enumerate(f.onset_frames):
                onset[i, j, frames] = 1.0
            beat[i, 0, f.beat_frames] = 1.0
        maps = [np.stack([getattr(f, k) for f in feats]).astype(np.float32)
                for k in ("level", "target", "near_onset", "silent")]
        near_beat = np.stack([f.near_beat for f in feats])[:, None].astype(np.float32)
        level, y, near, silent = maps
        out = (level, y, onset, near, silent, beat, near_beat)
        return tuple(torch.from_numpy(np.ascontiguousarray(m)).to(cqt.device) for m in out)

    # -- action side ---------------------------------------------------------------------
    def score_encoded(
        self, enc: ClipEncoding, action: torch.Tensor, per_frame: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Raw scores ``[B]`` for actions ``[B, D, T]`` of the C clips ``enc``.

        C divides B and rows come in C consecutive groups of G = B / C actions, group c on
        clip c: C = B pairs one clip with each action, C = 1 scores every action on one clip,
        anything between is a GRPO batch. Each clip's tensors are broadcast over its group,
        never copied per action (the result equals scoring ``enc.index(arange(B) // G)``).
        """
        b, d, t = action.shape
        c = enc.feats.shape[0]
        if c < 1 or b % c:
            raise ValueError(
                f"{b} actions do not split into groups over the {c} encoded clips "
                "(pass 1 clip, one clip per action, or B/C consecutive actions per clip)"
            )
        g = b // c
        action = action.reshape(c, g, d, t)
        # [C, 1, D, T]: broadcast over the G actions of each clip
        y, onset, near, jump, silent = (
            getattr(enc, f).unsqueeze(1) for f in ("target", "onset", "near", "jump", "silent")
        )
        rules = self.rules
        a = action.float()
        prev1, prev2 = _shift(a, 1), _shift(a, 2)
        diff = a - prev1
        rise = a - torch.minimum(prev1, prev2)
        # best Gaussian-weighted rise within gold's onset window, relative to the target's jump
        resp = torch.zeros_like(a)
        k0, k1 = rules.onset_window
        gauss = [math.exp(-(k**2) / (2 * rules.onset_sigma**2)) for k in range(k0, k1 + 1)]
        for k, gk in zip(range(k0, k1 + 1), gauss):
            resp = torch.maximum(resp, _shift(rise, -k) * gk)
        hit = (resp / jump).clamp(0, 1) * onset
        event = ((rise >= rules.rise_event) & (rise >= _shift(rise, 1)) & (rise > _shift(rise, -1))).float()
        nxt2 = _shift(a, -2)
        extremum = (diff * _shift(diff, -1) < 0) & (
            torch.maximum((a - prev2).abs(), (a - nxt2).abs()) >= rules.flash_swing
        )
        window = max(1, int(round(self.config.frame_rate)))  # one second: the flash-count window
        flashes = _pool(extremum.float(), window) * (window / 2.0)
        lim = rules.max_flashes_per_s
        excess = ((flashes - lim) / lim).clamp(0, 1)
        err = a - y
        cols = [a, err, err.abs(), diff, rise, hit, event, event * near, excess, a * silent,
                a - a.mean(-1, keepdim=True)]
        if self.beats:  # the rig's beat response (gold's ``beat`` component), per frame
            beat_ev, beat_hit, beat_stats = self._beat_response(enc, a, k0, gauss)
            near_beat = enc.near_beat.unsqueeze(1)
            cols += [x.expand_as(a) for x in (beat_ev, beat_ev * near_beat, beat_hit)]
        act = torch.stack(cols).reshape(self.n_action, -1)  # [F_a, C*G*D*T]
        # frame_mlp's first layer on [clip features, action features], split so the clip
        # part is computed once per clip instead of once per action. Feature-major layout:
        # one wide [H, F_a] @ [F_a, frames] product is ~3x faster on CPU than a Linear over
        # frames with 11 input features, and stacking along dim 0 is a plain copy.
        lin = self.frame_mlp[0]
        nc = self.n_clip
        clip_part = F.linear(enc.feats, lin.weight[:, :nc], lin.bias)  # [C, D, T, H]
        clip_part = clip_part.permute(3, 0, 1, 2).unsqueeze(2)  # [H, C, 1, D, T]
        hdn = (lin.weight[:, nc:] @ act).view(-1, c, g, d, t)  # [H, C, G, D, T]
        hdn = hdn.add_(clip_part)
        dev = self.config.device_terms
        if dev:  # separate additive terms: zero terms leave the shared path's numbers as they are
            w_in = self.device_in
            hdn = hdn + torch.einsum("dhf,fcgdt->hcgdt", w_in[:, :, nc:], act.view(-1, c, g, d, t))
            dev_clip = torch.einsum("dhf,cdtf->hcdt", w_in[:, :, :nc], enc.feats)
            hdn = hdn + (dev_clip + self.device_bias.T[:, None, :, None]).unsqueeze(2)
        hdn = F.relu(hdn, inplace=True)  # in place: no more 7 MB temporaries
        out = self.frame_out
        frame = (out.weight @ hdn.reshape(hdn.shape[0], -1)).view(c, g, d, t) + out.bias  # [C, G, D, T]
        if dev:
            frame = frame + torch.einsum("dh,hcgdt->cgdt", self.device_out, hdn)
        am = a - a.mean(-1, keepdim=True)
        ym = y - y.mean(-1, keepdim=True)
        sa = am.pow(2).mean(-1).add(1e-6).sqrt()
        sy = ym.pow(2).mean(-1).add(1e-6).sqrt()
        corr = (am * ym).mean(-1) / (sa * sy)
        ratio = torch.minimum(sa, sy) / torch.maximum(sa, sy)
        n_ev = event.sum(-1)
        prec = torch.where(n_ev > 0, (event * near).sum(-1) / n_ev.clamp(min=1), 1.0)
        n_on = onset.sum(-1)
        rec = hit.sum(-1) / n_on.clamp(min=1)
        f1 = torch.where(n_on > 0, 2 * prec * rec / (prec + rec).clamp(min=1e-6), prec)
        n_sil = silent.sum(-1)
        dark = torch.where(n_sil > 0, 1 - (a * silent).sum(-1) / n_sil.clamp(min=1), 1.0)
        per_device = [corr, sa, sy, ratio, a.mean(-1), err.abs().mean(-1), prec, rec, f1, dark,
                      1 - excess.mean(-1), (n_on > 0).float()]
        if self.beats:
            per_device += list(beat_stats)
        stats = torch.stack(  # clip-only stats ([C, 1, D]) broadcast over the group
            torch.broadcast_tensors(*per_device), dim=-1
        )
        frame_mean = hdn.mean(-1).movedim(0, -1)  # [C, G, D, H]
        g_in = torch.cat([frame_mean, stats], dim=-1)
        if dev:
            g_hid = self.global_mlp[1](self.global_mlp[0](g_in))  # [C, G, D, G_h]
            glob = self.global_mlp[2](g_hid).squeeze(-1) + (g_hid * self.device_global).sum(-1)
        else:
            glob = self.global_mlp(g_in).squeeze(-1)  # [C, G, D]
        contrib = frame + glob[..., None]
        raw = contrib.mean(dim=(-2, -1)).reshape(b)
        if per_frame:
            return raw, contrib.reshape(b, d, t)
        return raw

    def _beat_response(self, enc: ClipEncoding, a: torch.Tensor, k0: int, gauss: list[float]):
        """The rig's beat response (gold ``beat``): rises of the mean over devices.

        Returns per-frame events and beat hits ``[C, G, 1, T]`` and the precision, recall, F
        and whether the clip has beats ``[C, G, 1]``."""
        thr = self.rules.rise_event / 2
        m = a.mean(dim=2, keepdim=True)  # [C, G, 1, T]
        mr = m - torch.minimum(_shift(m, 1), _shift(m, 2))
        ev = ((mr >= thr) & (mr >= _shift(mr, 1)) & (mr > _shift(mr, -1))).float()
        resp = torch.zeros_like(mr)
        for k, gk in zip(range(k0, k0 + len(gauss)), gauss):
            resp = torch.maximum(resp, (_shift(mr, -k) / thr).clamp(0, 1) * gk)
        beat, near_beat = enc.beat.unsqueeze(1), enc.near_beat.unsqueeze(1)  # [C, 1, 1, T]
        hit = resp * beat
        n_ev, n_beat = ev.sum(-1), beat.sum(-1)
        prec = torch.where(n_ev > 0, (ev * near_beat).sum(-1) / n_ev.clamp(min=1), 1.0)
        rec = hit.sum(-1) / n_beat.clamp(min=1)
        has = (n_beat > 0).float()
        f1 = has * 2 * prec * rec / (prec + rec).clamp(min=1e-6) + (1 - has)
        return ev, hit, (prec, rec, f1, has.expand_as(f1))

    def forward(
        self, cqt: torch.Tensor, action: torch.Tensor, calibrated: bool = False
    ) -> torch.Tensor:
        """Raw scores ``[B]`` (``calibrated=True``: on the gold scale). ``cqt`` may be 1 clip."""
        self._check_action(action, cqt)
        raw = self.score_encoded(self.encode_clip(cqt), action)
        return self.calibrate(raw) if calibrated else raw

    # -- reward protocol (cqtml_env.reward.protocol): what the env scores through ---------
    def prepare(self, cqt: np.ndarray) -> ClipEncoding:
        """One clip's encoding (``cqt [2, F, T]``), for :meth:`score_prepared`."""
        dev = next(self.parameters()).device
        with torch.inference_mode():
            return self.encode_clip(torch.as_tensor(np.array(cqt, dtype=np.float32))[None].to(dev))

    def score_prepared(self, states: list[ClipEncoding], actions: np.ndarray) -> np.ndarray:
        """Calibrated scores ``[B]`` of actions ``[B, D, T]`` in C groups over ``states``
        (each clip's encoding is broadcast over its group, never copied per action)."""
        dev = next(self.parameters()).device
        with torch.inference_mode():
            enc = states[0]
            if len(states) > 1:
                enc = ClipEncoding(*(torch.cat([getattr(e, f) for e in states]) for f in enc.FIELDS))
            out = self.calibrate(self.score_encoded(enc, torch.as_tensor(actions).to(dev)))
        return out.double().cpu().numpy().reshape(-1)

    def state_version(self) -> tuple:
        """Changes whenever a parameter is replaced or updated in place (optimizer steps)."""
        return tuple((p.data_ptr(), p._version, str(p.device)) for p in self.parameters())

    def calibrate(self, raw: torch.Tensor) -> torch.Tensor:
        return raw * self.config.calib_scale + self.config.calib_bias

    def _check_action(self, action: torch.Tensor, cqt: torch.Tensor) -> None:
        d = self.config.num_devices
        if action.ndim != 3 or action.shape[1] != d or action.shape[2] != cqt.shape[-1]:
            raise ValueError(
                f"action must be [B, {d}, T] with T = the CQT's frames ({cqt.shape[-1]}), "
                f"got {tuple(action.shape)}"
            )
        if cqt.shape[0] not in (1, action.shape[0]):
            raise ValueError(
                f"cqt batch {cqt.shape[0]} must be 1 or match the action batch {action.shape[0]}"
            )

    @torch.no_grad()
    def score(
        self,
        cqt,
        actions,
        per_frame: bool = False,
        calibrated: bool = True,
        batch_size: int = 1024,
    ):
        """Calibrated scores under ``no_grad`` for numpy or torch input.

        ``cqt [2, F, T]`` with ``actions [N, D, T]`` (or one ``[D, T]``) scores N actions of
        one clip, encoding the clip once; ``cqt [B, 2, F, T]`` with ``actions [B, D, T]``
        scores B pairs. Returns ``[N]`` (numpy in, numpy out), and with ``per_frame=True``
        also the contributions ``[N, D, T]`` whose mean over (D, T) is the raw score (scaled
        by ``calib_scale`` when calibrated, without the bias).
        """
        as_numpy = not isinstance(actions, torch.Tensor)
        c = torch.as_tensor(np.asarray(cqt) if not isinstance(cqt, torch.Tensor) else cqt)
        a = torch.as_tensor(np.asarray(actions) if as_numpy else actions)
        single = a.ndim == 2
        if single:
            a = a[None]
        if c.ndim == 3:
            c = c[None]
        if c.ndim != 4:
            raise ValueError(f"cqt must be [2, F, T] or [B, 2, F, T], got {tuple(c.shape)}")
        self._check_action(a, c)
        if not torch.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ValueError("actions must be finite and in [0, 1]")
        dev = next(self.parameters()).device
        c, a = c.to(dev, torch.float32), a.to(dev, torch.float32)
        enc_all = self.encode_clip(c) if c.shape[0] == 1 else None
        raws, frames = [], []
        for s in range(0, a.shape[0], batch_size):
            enc = enc_all if enc_all is not None else self.encode_clip(c[s : s + batch_size])
            out = self.score_encoded(enc, a[s : s + batch_size], per_frame=per_frame)
            if per_frame:
                raws.append(out[0])
                frames.append(out[1])
            else:
                raws.append(out)
        raw = torch.cat(raws)
        res = self.calibrate(raw) if calibrated else raw
        pf = None
        if per_frame:
            pf = torch.cat(frames) * (self.config.calib_scale if calibrated else 1.0)
        if single:
            res = res[0]
            pf = pf[0] if pf is not None else None
        if as_numpy:
            res = res.cpu().numpy() if res.ndim else float(res)
            pf = pf.cpu().numpy() if pf is not None else None
        return (res, pf) if per_frame else res

    # -- persistence ---------------------------------------------------------------------
    def save_pretrained(self, out_dir: str | os.PathLike, name: str = "model") -> Path:
        """Write ``name.safetensors`` + ``name.json`` atomically; returns the weights path."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        wpath, cpath = out / f"{name}.safetensors", out / f"{name}.json"
        tmp_w = out / f".{name}.safetensors.tmp{os.getpid()}"
        tmp_c = out / f".{name}.json.tmp{os.getpid()}"
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(tmp_w), metadata={"format": "cqtml-reward-model"})
        tmp_c.write_text(self.config.to_json())
        os.chmod(tmp_w, 0o644)
        os.replace(tmp_w, wpath)
        os.replace(tmp_c, cpath)
        return wpath

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, name: str = "model") -> RewardModel:
        """Load from a directory (``name.*``), a ``.safetensors`` file or its ``.json``."""
        from cqtml_env.safetensors_io import SafetensorsFileError, load_safetensors

        p = Path(path)
        if p.is_dir():
            p = p / f"{name}.safetensors"
        wpath = p.with_suffix(".safetensors")
        cpath = p.with_suffix(".json")
        if not wpath.is_file() or not cpath.is_file():
            raise FileNotFoundError(f"reward model needs {wpath} and {cpath}")
        try:
            cfg = RewardModelConfig.from_dict(json.loads(cpath.read_text()))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"{cpath}: not a reward model config ({exc})") from None
        with torch.random.fork_rng(devices=[]):  # the throwaway random init must not move the caller's RNG
            model = cls(cfg)
        state = load_safetensors(wpath, expected="reward model weights", backend="torch")
        if cfg.device_terms:  # saved before the per-device terms existed: they stay zero
            for k in DEVICE_TERMS:
                state.setdefault(k, getattr(model, k).detach().clone())
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:  # missing/unexpected keys or wrong shapes
            raise SafetensorsFileError(
                f"{wpath}: tensors do not match the reward model of {cpath.name} ({exc})"
            ) from None
        model.eval()
        return model

    @classmethod
    def load_default(cls, gold_version: str = DEFAULT_GOLD_VERSION) -> RewardModel:
        """The weights shipped in the wheel for ``gold_version`` (``reward/weights/{version}.*``).

        gold-v5's model is the default (``CQTML-v1``'s reward); gold-v1's is ``CQTML-v0``'s.
        """
        from importlib.resources import files

        if gold_version not in SHIPPED_GOLD_VERSIONS:
            raise ValueError(
                f"no reward model is shipped for {gold_version!r}; shipped: {SHIPPED_GOLD_VERSIONS} "
                f"(train one with `cqtml-reward train-default --gold-version {gold_version}`)"
            )
        base = files("cqtml_env") / "reward" / "weights"
        with_path = Path(str(base / f"{gold_version}.safetensors"))
        if not with_path.is_file():
            raise FileNotFoundError(
                f"no shipped reward model at {with_path}; train it with `cqtml-reward "
                f"train-default --gold-version {gold_version} --out cqtml_env/src/cqtml_env/reward/weights`"
            )
        return cls.from_pretrained(with_path, name=gold_version)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def bt_loss(s_first: torch.Tensor, s_second: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Bradley–Terry cross-entropy with soft labels ``P(first preferred)``."""
    return F.binary_cross_entropy_with_logits(s_first - s_second, label.float())


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); nan-free for constant input."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    r = spearmanr(x, y).statistic
    return 0.0 if math.isnan(r) else float(r)


__all__ = ["DEFAULT_GOLD_VERSION", "DEVICE_TERMS", "SHIPPED_GOLD_VERSIONS", "TASTE_GOLD_VERSION",
           "ClipEncoding",
           "RewardModel", "RewardModelConfig", "bt_loss", "shipped_version_for", "spearman"]
