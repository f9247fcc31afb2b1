"""``CQTViTModel``: a timm ViT-tiny over the CQT with a per-frame categorical head."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cqtml_policy.categorical import CategoricalPolicy, resolve_device
from cqtml_policy.cnn import ClipContext
from cqtml_policy.heads import LogProbabilityHead
from cqtml_policy.inputs import GAIN_FLOOR, CurveFeatures, with_relative
from cqtml_policy.int8 import dequantized_state_dict, swap_linear_for_int8

DEFAULT_BACKBONE = "vit_tiny_patch16_224"
FULL_HEIGHT = 0
"""patch height meaning "all of the CQT's bins": full-height strips, one token per ``w`` frames"""


def resolve_patch_size(patch_size: Any, n_bins: int) -> tuple[int, int]:
    """``(bins, frames)`` of one patch: an int is a square patch; ``(h, w)`` a rectangular one
    (timm takes rectangular patches), ``h = FULL_HEIGHT`` (0) = all ``n_bins`` bins (a strip).

        >>> resolve_patch_size(16, 84), resolve_patch_size((0, 2), 84)
        ((16, 16), (84, 2))
    """
    if isinstance(patch_size, (int, float)) and not isinstance(patch_size, bool):
        h = w = int(patch_size)
    else:
        try:
            h, w = (int(v) for v in patch_size)
        except (TypeError, ValueError):
            raise ValueError(
                f"patch_size must be an int or (bins, frames), got {patch_size!r}"
            ) from None
    if h == FULL_HEIGHT:
        h = int(n_bins)
    if h < 1 or w < 1:
        raise ValueError(f"patch_size must be >= 1 (or height 0 = full height), got {patch_size!r}")
    return h, w


SIZE_KEYS = ("embed_dim", "depth", "num_heads", "mlp_ratio")
"""the transformer's size, overridable on top of ``backbone_name``'s (timm keyword arguments)"""


def resolve_size(size: dict[str, Any] | None) -> dict[str, Any]:
    """Checked timm keyword arguments for the transformer's size (``None``: the backbone's own).

        >>> resolve_size({"embed_dim": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 2})
        {'embed_dim': 128, 'depth': 4, 'num_heads': 4, 'mlp_ratio': 2.0}
    """
    if not size:
        return {}
    unknown = set(size) - set(SIZE_KEYS)
    if unknown:
        raise ValueError(f"unknown ViT size keys {sorted(unknown)}; expected some of {SIZE_KEYS}")
    out: dict[str, Any] = {}
    for key in SIZE_KEYS:
        if size.get(key) is None:
            continue
        value = float(size[key]) if key == "mlp_ratio" else int(size[key])
        if value <= 0:
            raise ValueError(f"ViT {key} must be > 0, got {size[key]!r}")
        out[key] = value
    if "embed_dim" in out and "num_heads" in out and out["embed_dim"] % out["num_heads"]:
        raise ValueError(
            f"ViT embed_dim {out['embed_dim']} must be divisible by num_heads {out['num_heads']}"
        )
    return out


def _check_cqt_shape(cqt_shape: Any) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in cqt_shape)
    if len(shape) != 3 or shape[0] != 2 or min(shape) < 1:
        raise ValueError(f"cqt_shape must be (2, n_bins, T), got {tuple(cqt_shape)}")
    return shape  # type: ignore[return-value]


class ViTBackbone(nn.Module):
    """timm ViT on the CQT as an image (frequency × time); returns its patch-token grid.

    Built by ``timm.create_model`` with ``in_chans`` = the CQT's channels (twice that with
    ``relative_input``: the CQT and its per-clip relative version), ``img_size`` = the CQT rounded up to
    the patch size, ``dynamic_img_size`` (position embeddings resampled for other clip
    lengths / bin counts) and ``dynamic_img_pad`` (right/bottom zero-padding to whole
    patches, so frame ``t`` stays in column ``t // patch``).

    ``band_features`` (the number of devices; 0 = off): each device band's level, auto-gained
    level, loudness and flux (:class:`~cqtml_policy.inputs.BandFeatures`, what the gold target
    and the band-follower are built from) for the ``w`` frames of each token column, stacked
    and linearly embedded, are added to every patch embedding of that column before the
    position embedding, so the transformer reads them at frame precision within its tokens.
    ``pulse_features``: the clip's onset envelope and beat pulse
    (:class:`~cqtml_policy.inputs.PulseFeatures`) join those curves; ``beat_features``: the
    clip's tracked beats (:class:`~cqtml_policy.inputs.BeatFeatures`) too; ``gain_features``:
    each band's auto-gained level and its rise (:class:`~cqtml_policy.inputs.GainFeatures`) too.
    """

    def __init__(
        self,
        cqt_shape: tuple[int, int, int],
        patch_size: int | tuple[int, int] = 16,
        backbone_name: str = DEFAULT_BACKBONE,
        pretrained: str | Path | None = None,
        relative_input: bool = False,
        size: dict[str, Any] | None = None,
        band_features: int = 0,
        pulse_features: bool = False,
        beat_features: bool = False,
        gain_features: bool = False,
        gain_floor: float = GAIN_FLOOR,
    ) -> None:
        super().__init__()
        import timm

        self.relative_input = bool(relative_input)
        _, n_bins, frames = cqt_shape
        self.patch_size = resolve_patch_size(patch_size, n_bins)
        img_size = (self.padded(n_bins, 0), self.padded(frames, 1))
        kwargs: dict[str, Any] = dict(
            in_chans=cqt_shape[0] * (2 if self.relative_input else 1),
            img_size=img_size,
            patch_size=self.patch_size,
            num_classes=0,
            global_pool="",
            dynamic_img_size=True,
            dynamic_img_pad=True,
            **resolve_size(size),
        )
        if pretrained is not None:
            path = Path(pretrained)
            if not path.is_file():
                raise FileNotFoundError(
                    f"pretrained weights file not found: {path} (no hub access: give a local file)"
                )
            # timm's own loader adapts the input conv (adapt_input_conv), resamples the position
            # embedding and the patch embedding, and drops the classifier (num_classes=0).
            kwargs.update(
                pretrained=True, pretrained_cfg_overlay=dict(file=str(path), custom_load=False)
            )
        self.vit = timm.create_model(backbone_name, **kwargs)
        self.embed_dim = int(self.vit.embed_dim)
        self.compute_dtype = torch.float32
        if (pulse_features or beat_features or gain_features) and band_features <= 0:
            raise ValueError("pulse_features / beat_features / gain_features join the band "
                             "curves: each needs band_features")
        self.band_features = (
            CurveFeatures(band_features, pulse_features, beat_features, frames,
                          band_features if gain_features else 0, gain_floor)
            if band_features > 0 else None
        )
        self.band_embed = (
            nn.Linear(self.band_features.out_features * self.patch_size[1], self.embed_dim)
            if self.band_features is not None else None
        )

    def size(self) -> dict[str, Any]:
        """The transformer's resolved size (what :func:`resolve_size` takes back)."""
        blocks = self.vit.blocks
        mlp = blocks[0].mlp.fc1.out_features if len(blocks) else 4 * self.embed_dim
        return {
            "embed_dim": self.embed_dim,
            "depth": len(blocks),
            "num_heads": int(blocks[0].attn.num_heads) if len(blocks) else 1,
            "mlp_ratio": mlp / self.embed_dim,
        }

    def padded(self, size: int, axis: int = 1) -> int:
        """``size`` rounded up to whole patches along ``axis`` (0: bins, 1: frames)."""
        p = self.patch_size[axis]
        return math.ceil(size / p) * p

    def grid_shape(self, n_bins: int, frames: int) -> tuple[int, int, int]:
        """``(C, H, W)`` of the feature grid for a CQT of ``n_bins × frames``."""
        return (
            self.embed_dim,
            math.ceil(n_bins / self.patch_size[0]),
            math.ceil(frames / self.patch_size[1]),
        )

    def forward(self, cqt: torch.Tensor, bands: torch.Tensor | None = None) -> torch.Tensor:
        """``bands``: the clip's :class:`BandFeatures` when the caller has them already."""
        _, h, w = self.grid_shape(cqt.shape[-2], cqt.shape[-1])
        inputs = with_relative(cqt.float()) if self.relative_input else cqt
        if self.band_features is None:
            tokens = self.vit.forward_features(inputs.to(self.compute_dtype))
        else:
            if bands is None:
                bands = self.band_features(cqt.float())
            tokens = self._forward_with_bands(inputs.to(self.compute_dtype), bands, w)
        tokens = tokens[:, self.vit.num_prefix_tokens :]  # drop the class token
        grid = tokens.reshape(tokens.shape[0], h, w, self.embed_dim).permute(0, 3, 1, 2)
        return grid.float()  # the head (and log-softmax) always run in float32

    def _forward_with_bands(self, inputs: torch.Tensor, bands: torch.Tensor, w: int) -> torch.Tensor:
        """timm's ``forward_features`` with the band embedding added to the patch embedding."""
        vit = self.vit
        x = vit.patch_embed(inputs)  # [B, H, W, C] (dynamic_img_size: NHWC)
        b, n, t = bands.shape  # [B, 5D, T]
        per = self.patch_size[1]
        f = nn.functional.pad(bands, (0, w * per - t))  # like dynamic_img_pad: zeros past the end
        f = f.reshape(b, n, w, per).permute(0, 2, 3, 1).reshape(b, w, per * n)
        x = x + self.band_embed(f).to(x.dtype)[:, None]  # the same for every row of a column
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        if vit.grad_checkpointing and not torch.jit.is_scripting():
            from timm.models._manipulate import checkpoint_seq

            x = checkpoint_seq(vit.blocks, x)
        else:
            x = vit.blocks(x)
        return vit.norm(x)


class FrameConv(nn.Module):
    """Token grid ``[B, C, H, W]`` (``W`` columns of ``frames_per_token`` frames) -> per-frame
    features ``[B, C, H, T]``: each column is repeated once per frame, plus a learned offset
    for the frame's place inside its token, then a residual depthwise convolution over time
    (``kernel`` frames) mixes neighbouring frames, across token boundaries. The head then
    reads one column per frame, so adjacent frames share context instead of each frame of a
    token getting its own unrelated output (which flickers).

    ``extra`` per-frame input channels (``[B, extra, T]``, e.g. the band curves) are projected
    and added to each frame's feature before the mixing (zero-initialised), so frame-exact
    onsets reach the head without going through a token.
    """

    def __init__(
        self,
        channels: int,
        frames_per_token: int,
        kernel: int,
        extra: int = 0,
        layers: int = 1,
        context: bool = False,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"frame_layers must be >= 1, got {layers}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"frame_conv must be an odd kernel size >= 1 (0 = off), got {kernel}")
        self.frames_per_token = int(frames_per_token)
        self.offset = nn.Parameter(torch.zeros(channels, self.frames_per_token))
        self.norm = nn.LayerNorm(channels)  # per frame: no statistics across the clip
        self.conv = nn.Conv2d(
            channels, channels, (1, kernel), padding=(0, kernel // 2), groups=channels
        )
        self.mix = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.mix.weight)  # starts as the identity: tokens repeated per frame
        nn.init.zeros_(self.mix.bias)
        self.extra = nn.Conv1d(extra, channels, 1) if extra > 0 else None
        if self.extra is not None:
            nn.init.zeros_(self.extra.weight)
            nn.init.zeros_(self.extra.bias)
        # clip-level mean / max of each frame feature -> FiLM (the CNN's ClipContext): the
        # per-clip auto-gain a token's attention reaches only approximately
        self.context = ClipContext(channels) if context else None
        # layers beyond the first: the same residual block, dilated 2, 4, ... frames (the
        # history of a decay is longer than one kernel)
        self.more = nn.ModuleList(
            _FrameBlock(channels, kernel, 2**i) for i in range(1, int(layers))
        )

    def forward(
        self, grid: torch.Tensor, num_frames: int, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, c, h, w = grid.shape
        f = self.frames_per_token
        x = grid[..., None] + self.offset[None, :, None, None, :]  # [B, C, H, W, f]
        x = x.reshape(b, c, h, w * f)[..., :num_frames]
        if self.extra is not None:
            if extra is None:
                raise ValueError("this FrameConv was built with extra inputs: pass them")
            x = x + self.extra(extra[..., :num_frames])[:, :, None, :]
        if self.context is not None:  # per row of the grid: [B, C, H, T] as [B·H, C, T]
            rows = self.context(x.permute(0, 2, 1, 3).reshape(b * h, c, -1))
            x = rows.reshape(b, h, c, -1).permute(0, 2, 1, 3)
        x = _mix_frames(x, self.norm, self.conv, self.mix)
        for block in self.more:
            x = block(x)
        return x


def _mix_frames(x: torch.Tensor, norm: nn.Module, conv: nn.Module, mix: nn.Module) -> torch.Tensor:
    """One residual frame-mixing step: per-frame LayerNorm, depthwise conv over time, GELU, 1×1."""
    normed = norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return x + mix(nn.functional.gelu(conv(normed)))


class _FrameBlock(nn.Module):
    """One more residual frame-mixing block of :class:`FrameConv` (dilated depthwise conv)."""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv2d(
            channels, channels, (1, kernel), padding=(0, dilation * (kernel // 2)),
            dilation=(1, dilation), groups=channels,
        )
        self.mix = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _mix_frames(x, self.norm, self.conv, self.mix)


class CQTViTModel(CategoricalPolicy):
    """ViT-tiny policy: CQT ``[B, 2, n_bins, T]`` -> log-probabilities ``[B, devices, T, K]``.

    Build it with :meth:`create_model`; the constructor only assembles float32 modules on
    the CPU. Any clip length or bin count works (position embeddings are resampled).
    ``patch_size``: an int (square patches; 16 = one token per 16 frames, the 0.1 default)
    or ``(bins, frames)``; ``(0, 2)`` = full-height strips of 2 frames (the registry's
    ``vit`` default), so each token covers 2 frames and onsets land at frame precision.
    The config records the resolved ``[bins, frames]``; old configs with an int still load.
    """

    model_type = "vit"

    def __init__(
        self,
        cqt_shape: tuple[int, int, int] = (2, 84, 216),
        num_devices: int = 4,
        distribution_size: int = 32,
        patch_size: int | tuple[int, int] = 16,
        backbone_name: str = DEFAULT_BACKBONE,
        pretrained: str | Path | None = None,
        relative_input: bool = False,
        size: dict[str, Any] | None = None,
        frame_conv: int = 0,
        band_features: bool = False,
        frame_layers: int = 1,
        frame_context: bool = False,
        pulse_features: bool = False,
        beat_features: bool = False,
        gain_features: bool = False,
        gain_floor: float = GAIN_FLOOR,
    ) -> None:
        super().__init__(num_devices, distribution_size)
        self.cqt_shape = _check_cqt_shape(cqt_shape)
        self.in_channels = self.cqt_shape[0]
        self.patch_size = resolve_patch_size(patch_size, self.cqt_shape[1])
        self.backbone_name = backbone_name
        self.relative_input = bool(relative_input)
        self.band_features = bool(band_features)
        self.pulse_features = bool(pulse_features)
        self.beat_features = bool(beat_features)
        self.gain_features = bool(gain_features)
        self.gain_floor = float(gain_floor)
        self.backbone = ViTBackbone(
            self.cqt_shape, self.patch_size, backbone_name, pretrained, self.relative_input,
            resolve_size(size), num_devices if self.band_features else 0, self.pulse_features,
            self.beat_features, self.gain_features, self.gain_floor,
        )
        self.size = self.backbone.size()
        self.frame_conv = int(frame_conv)
        self.frame_layers = int(frame_layers)
        self.frame_context = bool(frame_context)
        if not self.frame_conv and (self.frame_layers != 1 or self.frame_context):
            raise ValueError(
                "frame_layers / frame_context shape the frame stage: they need frame_conv > 0"
            )
        self.frames = (
            FrameConv(
                self.backbone.embed_dim, self.patch_size[1], self.frame_conv,
                self.backbone.band_features.out_features if self.band_features else 0,
                frame_layers, frame_context,
            )
            if self.frame_conv else None
        )
        self.head = LogProbabilityHead(
            self.backbone.embed_dim, num_devices, distribution_size,
            1 if self.frames is not None else self.patch_size[1],
        )
        self.use_half_precision = False
        self.use_8bit = False
        self.gradient_checkpointing = False

    @classmethod
    def create_model(
        cls,
        cqt_shape: tuple[int, int, int],
        num_devices: int = 4,
        distribution_size: int = 32,
        patch_size: int | tuple[int, int] = 16,
        device: str | torch.device = "auto",
        use_half_precision: bool = False,
        use_8bit: bool = False,
        gradient_checkpointing: bool = False,
        pretrained: str | Path | None = None,
        backbone_name: str = DEFAULT_BACKBONE,
        relative_input: bool = False,
        size: dict[str, Any] | None = None,
        frame_conv: int = 0,
        band_features: bool = False,
        frame_layers: int = 1,
        frame_context: bool = False,
        pulse_features: bool = False,
        beat_features: bool = False,
        gain_features: bool = False,
        gain_floor: float = GAIN_FLOOR,
    ) -> CQTViTModel:
        """Build the policy, ready to run on ``device`` (``"auto"``: CUDA when present).

        - ``pretrained``: a local timm ViT weights file (``.safetensors``/``.pth``, e.g. an
          ImageNet ``vit_tiny_patch16_224`` checkpoint); timm adapts its 3-channel input conv
          and 14×14 position embedding to this CQT. There is no hub download.
        - ``use_half_precision``: bf16 (or fp16 without bf16 support) backbone on CUDA; on CPU
          it warns and stays float32 (half math is slow without AVX-512/AMX).
        - ``use_8bit``: the backbone's Linear layers become bitsandbytes 8-bit (frozen); the
          head stays float32.
        - ``gradient_checkpointing``: timm's ``set_grad_checkpointing`` (recompute blocks in
          backward; less activation memory at batch size 64+).
        - ``relative_input``: also feed the CQT rescaled per clip and bin (5th..95th
          percentile over time), as the CNN does: lighting follows a clip's own dynamics, and
          this makes a quiet recording look like a loud one. Doubles the input channels.
        - ``size``: the transformer's ``embed_dim`` / ``depth`` / ``num_heads`` / ``mlp_ratio``
          on top of ``backbone_name``'s (ViT-tiny: 192 / 12 / 3 / 4); the registry's
          ``vit-small`` is 128 / 4 / 4 / 2, several times cheaper per step on a CPU.
        - ``frame_conv``: 0 (off) or an odd kernel in frames: tokens are expanded to one feature
          per frame and mixed over time by a residual depthwise convolution (:class:`FrameConv`)
          before the head, so neighbouring frames agree (less flicker) across token edges.
        - ``band_features``: add each device band's level / auto-gain / flux curves to the
          patch embeddings (:class:`ViTBackbone`), as ``cnn-bands`` adds them to the CNN's
          per-frame features (registry name ``vit-bands``); with ``frame_conv`` they also
          enter each frame's feature in the frame stage (:class:`FrameConv` ``extra``).
        - ``frame_layers``: residual blocks in the frame stage (dilated 1, 2, 4, ...): a
          decay's history is longer than one kernel. ``frame_context``: a FiLM from each
          frame feature's clip mean / max (the CNN's ``ClipContext``) in the frame stage.
        - ``pulse_features``: the clip's onset envelope and beat pulse join the band curves
          (needs ``band_features``; registry name ``vit-pulse``). ``beat_features``: the
          clip's tracked beats too (needs ``band_features``; registry name ``vit-beat``).
          ``gain_features``: each band's auto-gained level and its rise too (needs
          ``band_features``; registry name ``vit-gain``). ``gain_floor``: the percentile (as a
          fraction) of the clip that those levels call dark: the teacher's floor (gold-v7:
          0.005; gold-v4..v6: the default 0.05).
        """
        model = cls(
            cqt_shape, num_devices, distribution_size, patch_size, backbone_name, pretrained,
            relative_input, size, frame_conv, band_features, frame_layers, frame_context,
            pulse_features, beat_features, gain_features, gain_floor,
        )
        return model._prepare(device, use_half_precision, use_8bit, gradient_checkpointing)

    def _prepare(
        self,
        device: str | torch.device,
        use_half_precision: bool,
        use_8bit: bool,
        gradient_checkpointing: bool,
    ) -> CQTViTModel:
        dev = resolve_device(device)
        self.to(dev)
        if use_8bit:
            swap_linear_for_int8(self.backbone.vit, dev)
            self.use_8bit = True
        if use_half_precision:
            if dev.type == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
                self.backbone.vit.to(dtype=dtype)
                self.backbone.compute_dtype = dtype
                self.use_half_precision = True
            else:
                warnings.warn(
                    "use_half_precision needs CUDA: half math is slow on CPUs without AVX-512/AMX, "
                    "so the model stays float32 on the CPU",
                    UserWarning,
                    stacklevel=3,
                )
        if gradient_checkpointing:
            self.backbone.vit.set_grad_checkpointing(True)
            self.gradient_checkpointing = True
        return self

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """``[B, 2, n_bins, T]`` -> log-probabilities ``[B, num_devices, T, K]``."""
        bands = self.backbone.band_features(states.float()) if self.band_features else None
        grid = self.backbone(states, bands)
        if self.frames is not None:
            grid = self.frames(grid, states.shape[-1], bands)
        return self.head(grid, num_frames=states.shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {
            "cqt_shape": list(self.cqt_shape),
            "num_devices": self.num_devices,
            "distribution_size": self.distribution_size,
            "patch_size": list(self.patch_size),
            "backbone_name": self.backbone_name,
            "relative_input": self.relative_input,
            "size": dict(self.size),
            "frame_conv": self.frame_conv,
            "band_features": self.band_features,
            "frame_layers": self.frame_layers,
            "frame_context": self.frame_context,
            **({"pulse_features": True} if self.pulse_features else {}),
            **({"beat_features": True} if self.beat_features else {}),
            **({"gain_features": True} if self.gain_features else {}),
            **({"gain_floor": self.gain_floor}
               if self.gain_features and self.gain_floor != GAIN_FLOOR else {}),
            "use_half_precision": self.use_half_precision,
            "use_8bit": self.use_8bit,
            "gradient_checkpointing": self.gradient_checkpointing,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> CQTViTModel:
        return cls.create_model(**{**config, **overrides})

    def weights_state_dict(self) -> dict[str, torch.Tensor]:
        return dequantized_state_dict(self)

    @classmethod
    def _from_saved(
        cls, config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None, **overrides: Any
    ) -> CQTViTModel:
        cfg = {**config, **overrides}
        device = cfg.pop("device", "auto")
        flags = {
            k: bool(cfg.pop(k, False))
            for k in ("use_half_precision", "use_8bit", "gradient_checkpointing")
        }
        cfg.pop("pretrained", None)  # the saved weights replace any pretrained file
        model = cls(**cfg)
        if state_dict is None:
            raise FileNotFoundError("saved CQTViTModel has no model.safetensors")
        model.load_state_dict(state_dict)
        return model._prepare(device, **flags)
