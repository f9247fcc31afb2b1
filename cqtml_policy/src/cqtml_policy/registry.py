"""One registry of policy kinds: name -> class, with aliases (the timm/SB3 way).

Every place that names a policy goes through it: :func:`cqtml_policy.load_policy` reads a saved
directory's ``model_type`` here, the agents' ``--policy`` flag builds one here, and a class's
``model_type`` (what ``save_pretrained`` writes) is its registered name. Names are
case-insensitive and ``_``/``-`` are the same, so the names written by cqtml-policy 0.1
(``cqt_vit``, ``cqt_cnn``, ``band_follow``) still load.

    >>> from cqtml_policy.registry import create_policy, canonical_name
    >>> canonical_name("cqt_cnn")
    'cnn'
    >>> policy = create_policy("cnn", (2, 84, 216), num_devices=4, device="cpu")
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cqtml_policy.categorical import CategoricalPolicy


@dataclass(frozen=True)
class PolicyEntry:
    """One registered policy kind."""

    name: str
    """canonical name: the ``--policy`` value and the ``model_type`` saved in ``config.json``"""
    target: str
    """``"module:Class"``, imported on first use (loading a CNN never imports timm)"""
    trainable: bool
    """built from a CQT shape with ``create_model`` (True) or a parameter-free baseline"""
    aliases: tuple[str, ...] = ()
    """other accepted names (older ``model_type`` values, spellings)"""
    defaults: dict[str, Any] = field(default_factory=dict)
    """constructor arguments :func:`create_policy` uses unless told otherwise"""
    summary: str = ""


_ENTRIES: dict[str, PolicyEntry] = {}
_NAMES: dict[str, str] = {}  # normalised name or alias -> canonical name


def _norm(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def register_policy(entry: PolicyEntry) -> PolicyEntry:
    """Add a policy kind; a name or alias already taken by another kind is an error."""
    keys = [_norm(entry.name), *(_norm(a) for a in entry.aliases)]
    for key in keys:
        owner = _NAMES.get(key)
        if owner is not None and owner != entry.name:
            raise ValueError(f"policy name {key!r} is already registered for {owner!r}")
    _ENTRIES[entry.name] = entry
    for key in keys:
        _NAMES[key] = entry.name
    return entry


def list_policies() -> list[str]:
    """Canonical names of every registered policy kind."""
    return list(_ENTRIES)


def canonical_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases; ValueError naming the choices."""
    key = _NAMES.get(_norm(name))
    if key is None:
        known = ", ".join(
            f"{e.name}" + (f" (or {', '.join(e.aliases)})" if e.aliases else "")
            for e in _ENTRIES.values()
        )
        raise ValueError(f"unknown policy {name!r}; expected one of: {known}")
    return key


def policy_entry(name: str) -> PolicyEntry:
    return _ENTRIES[canonical_name(name)]


def policy_class(name: str) -> type[CategoricalPolicy]:
    """The class registered for ``name`` (canonical name or alias)."""
    module, attr = policy_entry(name).target.split(":")
    return getattr(importlib.import_module(module), attr)


def create_policy(
    name: str,
    cqt_shape: tuple[int, int, int] | None = None,
    *,
    num_devices: int = 4,
    distribution_size: int = 32,
    device: str = "auto",
    **kwargs: Any,
) -> CategoricalPolicy:
    """A fresh policy of kind ``name``: trainable ones need ``cqt_shape`` (``(2, n_bins, T)``);
    baselines take only ``num_devices``/``distribution_size`` (and their own ``kwargs``)."""
    entry = policy_entry(name)
    cls = policy_class(entry.name)
    kw = {**entry.defaults, **kwargs}
    if entry.trainable:
        if cqt_shape is None:
            raise ValueError(f"policy {entry.name!r} needs cqt_shape=(2, n_bins, T)")
        return cls.create_model(
            tuple(cqt_shape), num_devices=num_devices, distribution_size=distribution_size,
            device=device, **kw,
        )
    return cls(num_devices=num_devices, distribution_size=distribution_size, **kw)


def _vit_pulse() -> dict[str, Any]:
    """vit-pulse's keyword arguments (a fresh dict each time: vit-beat adds to them)."""
    return {
        "relative_input": True, "patch_size": (0, 8), "frame_conv": 9,
        "band_features": True, "frame_layers": 3, "frame_context": True, "pulse_features": True,
        "size": {"embed_dim": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0},
    }


for _entry in (
    PolicyEntry(
        "vit", "cqtml_policy.vit:CQTViTModel", True, aliases=("cqt_vit",),
        # fresh ViTs get the per-clip relative channels like the CNN (README, "The ViT");
        # configs saved without the key still load without them. Tokens are full-height
        # strips of 2 frames (patch (0, 2): all bins x 2 frames), so onsets land at frame
        # precision; saved configs record their patch size (0.1's 16 x 16 still loads).
        defaults={"relative_input": True, "patch_size": (0, 2)},
        summary="timm ViT-tiny over CQT strips (all bins x 2 frames)",
    ),
    PolicyEntry(
        "cnn", "cqtml_policy.cnn:TemporalCNNModel", True, aliases=("cqt_cnn",),
        summary="dilated temporal CNN with clip context (learns fast on a CPU)",
    ),
    PolicyEntry(
        "band-follow", "cqtml_policy.baselines:BandFollowPolicy", False,
        aliases=("band_follow", "bandfollow"),
        summary="baseline: each device follows its band's energy (normalised scores' 1)",
    ),
    PolicyEntry(
        "random", "cqtml_policy.baselines:RandomPolicy", False,
        summary="baseline: uniform random levels (normalised scores' 0)",
    ),
    PolicyEntry(
        "vit-small", "cqtml_policy.vit:CQTViTModel", True, aliases=("vit_small",),
        # the same strips with a transformer small enough to learn within a CPU budget
        # (bench/bench_vit_configs.py): 128-dim tokens, 4 blocks of 4 heads, MLP ratio 2.
        # Saved as model_type "vit" with its size in config.json, so it loads as any ViT.
        defaults={
            "relative_input": True, "patch_size": (0, 2),
            "size": {"embed_dim": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0},
        },
        summary="ViT over CQT strips, 4 blocks x 128 dims (several times cheaper than ViT-tiny)",
    ),
    PolicyEntry(
        "cnn-bands", "cqtml_policy.cnn:TemporalCNNModel", True, aliases=("cnn_bands",),
        # the CNN with each device band's level, clip-relative level, loudness and onset flux
        # as extra per-frame inputs (cnn.BandFeatures). Saved as model_type "cnn" with
        # band_features in config.json, so it loads as any CNN.
        defaults={"band_features": True},
        summary="the CNN plus per-band level / auto-gain / flux curves as inputs",
    ),
    PolicyEntry(
        "vit-bands", "cqtml_policy.vit:CQTViTModel", True, aliases=("vit_bands",),
        # vit-small's transformer on strips of 8 frames, with the cnn-bands curves added to
        # its patch embeddings (ViTBackbone) and to every frame of a frame stage (FrameConv:
        # 3 blocks of 9 frames dilated 1/2/4, and the clip's mean / max as a FiLM): strips of
        # 2 without the frame stage flicker (README, "A ViT that learns: vit-bands"). Saved
        # as model_type "vit" with these keys in config.json.
        defaults={
            "relative_input": True, "patch_size": (0, 8), "frame_conv": 9,
            "band_features": True, "frame_layers": 3, "frame_context": True,
            "size": {"embed_dim": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0},
        },
        summary="ViT over 8-frame strips plus per-band curves in its tokens and frames",
    ),
    PolicyEntry(
        "cnn-pulse", "cqtml_policy.cnn:TemporalCNNModel", True, aliases=("cnn_pulse",),
        # cnn-bands plus the clip's onset envelope and predominant local pulse (inputs.
        # PulseFeatures): a beat tracker's view over 3 s, where the convolutions see 0.3 s.
        # Saved as model_type "cnn" with pulse_features in config.json.
        defaults={"band_features": True, "pulse_features": True},
        summary="cnn-bands plus the clip's onset envelope and beat pulse as inputs",
    ),
    PolicyEntry(
        "vit-pulse", "cqtml_policy.vit:CQTViTModel", True, aliases=("vit_pulse",),
        # vit-bands with cnn-pulse's onset envelope and beat pulse among its curves. Saved as
        # model_type "vit" with pulse_features in config.json.
        defaults=_vit_pulse(),
        summary="vit-bands plus the clip's onset envelope and beat pulse as inputs",
    ),
    PolicyEntry(
        "cnn-beat", "cqtml_policy.cnn:TemporalCNNModel", True, aliases=("cnn_beat",),
        # cnn-pulse plus the clip's tracked beats (inputs.BeatFeatures: librosa's DP beat
        # tracker on the onset envelope). Saved as model_type "cnn" with beat_features.
        defaults={"band_features": True, "pulse_features": True, "beat_features": True},
        summary="cnn-pulse plus the clip's tracked beats as inputs",
    ),
    PolicyEntry(
        "vit-beat", "cqtml_policy.vit:CQTViTModel", True, aliases=("vit_beat",),
        # vit-pulse with cnn-beat's tracked beats among its curves. Saved as model_type "vit"
        # with beat_features in config.json.
        defaults={**_vit_pulse(), "beat_features": True},
        summary="vit-pulse plus the clip's tracked beats as inputs",
    ),
    PolicyEntry(
        "cnn-gain", "cqtml_policy.cnn:TemporalCNNModel", True, aliases=("cnn_gain",),
        # cnn-beat plus each device band's level through a per-band auto-gain (inputs.
        # GainFeatures: the band's own 5th percentile dark, its 98th full, a -68 dB gate) and
        # that curve's rise. Saved as model_type "cnn" with gain_features in config.json.
        defaults={"band_features": True, "pulse_features": True, "beat_features": True,
                  "gain_features": True},
        summary="cnn-beat plus each band's auto-gained level and its rise as inputs",
    ),
    PolicyEntry(
        "vit-gain", "cqtml_policy.vit:CQTViTModel", True, aliases=("vit_gain",),
        # vit-beat with cnn-gain's auto-gained band curves among its curves. Saved as
        # model_type "vit" with gain_features in config.json.
        defaults={**_vit_pulse(), "beat_features": True, "gain_features": True},
        summary="vit-beat plus each band's auto-gained level and its rise as inputs",
    ),
):
    register_policy(_entry)
del _entry

__all__ = [
    "PolicyEntry",
    "register_policy",
    "list_policies",
    "canonical_name",
    "policy_entry",
    "policy_class",
    "create_policy",
]
