"""``CategoricalSB3Policy``: an SB3 ``ActorCriticPolicy`` for the env's discrete action mode
over any CQT categorical policy (ViT or CNN); ``CQTViTPolicy`` is its deprecated 0.1 name.

Observation ``Box(0, 1, (2, n_bins, T), float32)``; action flat ``MultiDiscrete([K] * D * T)``
(row-major over ``[D, T]``). The CQT policy's backbone is the features extractor, its
per-frame head the action net, a small pooled MLP the value net, and a vectorised
multi-categorical the distribution.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from cqtml_policy._deprecated import alias_getattr
from cqtml_policy.categorical import CategoricalPolicy
from cqtml_policy.heads import LogProbabilityHead
from cqtml_policy.sb3.distribution import FrameCategoricalDistribution
from cqtml_policy.sb3.features import CQTFeaturesExtractor


class FrameLogitsNet(nn.Module):
    """Flat features -> the head's per-frame log-probabilities, flattened to ``[B, D·T·K]``."""

    def __init__(
        self, head: LogProbabilityHead, grid_shape: tuple[int, int, int], num_frames: int
    ) -> None:
        super().__init__()
        self.head = head
        self.grid_shape = tuple(grid_shape)
        self.num_frames = int(num_frames)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        grid = features.view(features.shape[0], *self.grid_shape)
        return self.head(grid, num_frames=self.num_frames).flatten(1)


class ValueHead(nn.Module):
    """Flat features -> state value: mean over the feature grid, then a small MLP."""

    def __init__(self, grid_shape: tuple[int, int, int], hidden: int = 64) -> None:
        super().__init__()
        self.grid_shape = tuple(grid_shape)
        channels = self.grid_shape[0]
        self.mlp = nn.Sequential(
            nn.LayerNorm(channels), nn.Linear(channels, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        grid = features.view(features.shape[0], *self.grid_shape)
        return self.mlp(grid.mean(dim=(2, 3)))


def _discrete_layout(
    observation_space: spaces.Space, action_space: spaces.Space
) -> tuple[int, int, int]:
    """``(num_devices, T, K)`` from the spaces, with clear errors for anything else."""
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
        raise ValueError(
            f"observation space must be Box(0, 1, (2, n_bins, T)), got {observation_space}"
        )
    frames = int(observation_space.shape[-1])
    if not isinstance(action_space, spaces.MultiDiscrete) or action_space.nvec.ndim != 1:
        raise ValueError(
            f"action space must be a flat MultiDiscrete([K] * num_devices * T), got {action_space}"
        )
    nvec = np.asarray(action_space.nvec)
    if nvec.size % frames or len(set(nvec.tolist())) != 1:
        raise ValueError(
            f"action space MultiDiscrete of size {nvec.size} with levels {sorted(set(nvec.tolist()))} is not "
            f"[K] * num_devices * T with T = {frames} frames"
        )
    return nvec.size // frames, frames, int(nvec[0])


class CategoricalSB3Policy(ActorCriticPolicy):
    """Actor-critic policy for PPO/A2C on the CQTML discrete action mode.

    ``policy_kwargs``: ``backbone="vit"`` (default, ``CQTViTModel``) or ``"cnn"``
    (``TemporalCNNModel``, fast); ``model_kwargs`` go to that model's ``create_model``
    (e.g. ``patch_size``, ``pretrained``, ``use_8bit``, ``gradient_checkpointing``);
    ``value_hidden`` sizes the value MLP. ``ortho_init`` defaults to False so SB3 does not
    overwrite timm's initialisation or pretrained weights. Other ``ActorCriticPolicy``
    options (optimizer, ``share_features_extractor``) pass through.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        backbone: str = "vit",
        model_kwargs: dict[str, Any] | None = None,
        value_hidden: int = 64,
        ortho_init: bool = False,
        **kwargs: Any,
    ) -> None:
        num_devices, frames, levels = _discrete_layout(observation_space, action_space)
        fixed = sorted(
            k
            for k in ("features_extractor_class", "features_extractor_kwargs", "net_arch")
            if k in kwargs
        )
        if fixed or kwargs.get("use_sde"):
            raise ValueError(
                f"CategoricalSB3Policy sets {fixed or ['use_sde']} itself; choose the model with backbone= and model_kwargs="
            )
        self.backbone_name = backbone
        self.model_kwargs = dict(model_kwargs or {})
        self.value_hidden = int(value_hidden)
        self.layout = (num_devices, frames, levels)
        kwargs.setdefault("normalize_images", False)  # the CQT is float in [0, 1] already
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],  # identity MlpExtractor: the head and value net read the features directly
            ortho_init=ortho_init,
            features_extractor_class=CQTFeaturesExtractor,
            features_extractor_kwargs=dict(
                backbone=backbone,
                num_devices=num_devices,
                distribution_size=levels,
                model_kwargs=self.model_kwargs,
            ),
            **kwargs,
        )

    def _build(self, lr_schedule: Schedule) -> None:
        num_devices, frames, levels = self.layout
        self.action_dist = FrameCategoricalDistribution(num_devices * frames, levels)
        self._build_mlp_extractor()
        extractor: CQTFeaturesExtractor = self.pi_features_extractor  # type: ignore[assignment]
        self.action_net = FrameLogitsNet(extractor.policy_model.head, extractor.grid_shape, frames)
        vf_extractor: CQTFeaturesExtractor = self.vf_features_extractor  # type: ignore[assignment]
        self.value_net = ValueHead(vf_extractor.grid_shape, self.value_hidden)
        if self.ortho_init:  # only the new value net: the backbone and head keep their own init
            self.value_net.apply(lambda m: self.init_weights(m, gain=1.0))
        self.optimizer = self.optimizer_class(
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> Distribution:
        return self.action_dist.proba_distribution(self.action_net(latent_pi))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for fixed in (
            "features_extractor_class",
            "features_extractor_kwargs",
            "net_arch",
            "use_sde",
            "full_std",
            "use_expln",
            "squash_output",
            "log_std_init",
        ):
            data.pop(fixed, None)
        data.update(
            backbone=self.backbone_name,
            model_kwargs=self.model_kwargs,
            value_hidden=self.value_hidden,
        )
        return data

    def policy_model(self) -> CategoricalPolicy:
        """The trained actor as a :class:`CategoricalPolicy` (shares weights with this policy).

        Use it for greedy evaluation through the ``PolicyModel`` protocol or to
        ``save_pretrained`` the actor without SB3.
        """
        return self.pi_features_extractor.policy_model  # type: ignore[return-value]


__getattr__ = alias_getattr(__name__, {"CQTViTPolicy": (__name__, "CategoricalSB3Policy")})
