"""SB3 features extractor: a CQT policy's backbone, its feature grid flattened."""

from __future__ import annotations

import math
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from cqtml_policy.categorical import CategoricalPolicy

BACKBONES = ("vit", "cnn")


def build_policy_model(
    backbone: str,
    cqt_shape: tuple[int, int, int],
    num_devices: int,
    distribution_size: int,
    model_kwargs: dict[str, Any] | None = None,
) -> CategoricalPolicy:
    """A fresh ``CQTViTModel`` (``"vit"``) or ``TemporalCNNModel`` (``"cnn"``) on the CPU,
    built from :mod:`cqtml_policy.registry` (any of its names for these two, e.g. ``cqt_cnn``).

    ``model_kwargs`` may repeat ``cqt_shape``/``num_devices``/``distribution_size`` as long as
    they agree with the spaces; ``device`` is ignored (SB3 moves the policy itself).
    """
    model_kwargs = dict(model_kwargs or {})
    model_kwargs.pop("device", None)
    for key, value in (
        ("cqt_shape", tuple(cqt_shape)),
        ("num_devices", num_devices),
        ("distribution_size", distribution_size),
    ):
        given = model_kwargs.pop(key, value)
        if (tuple(given) if key == "cqt_shape" else int(given)) != value:
            raise ValueError(f"model_kwargs {key}={given!r} disagrees with the spaces ({value!r})")
    model_kwargs["device"] = "cpu"
    from cqtml_policy import registry

    try:
        name = registry.canonical_name(backbone)
    except ValueError:
        name = None
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    # the class's own defaults (not create_policy's): SB3 runs stay what they were in 0.1
    cls = registry.policy_class(name)
    return cls.create_model(cqt_shape, num_devices, distribution_size, **model_kwargs)


class CQTFeaturesExtractor(BaseFeaturesExtractor):
    """Runs the backbone of a CQT policy (ViT or CNN) and flattens its ``[C, H, W]`` grid.

    The whole policy model is built here so the head that matches the backbone is at hand;
    the head is *not* registered in this module: :class:`CQTViTPolicy` registers it as its
    ``action_net``. ``policy_model`` keeps the complete :class:`CategoricalPolicy` (sharing
    the same modules), so an SB3-trained policy can be saved and used through the protocol.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        backbone: str = "vit",
        num_devices: int = 4,
        distribution_size: int = 32,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        shape = tuple(int(s) for s in observation_space.shape)
        if not isinstance(observation_space, spaces.Box) or len(shape) != 3:
            raise ValueError(
                f"observation space must be Box(0, 1, (2, n_bins, T)), got {observation_space}"
            )
        model = build_policy_model(backbone, shape, num_devices, distribution_size, model_kwargs)
        grid = model.backbone.grid_shape(shape[1], shape[2])
        super().__init__(observation_space, features_dim=math.prod(grid))
        self.grid_shape: tuple[int, int, int] = tuple(grid)  # type: ignore[assignment]
        self.backbone = model.backbone
        object.__setattr__(self, "policy_model", model)  # not a submodule: no duplicate weights

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.backbone(observations).flatten(1)
