"""Stable-Baselines3 adapter (needs ``pip install 'cqtml-policy[sb3]'``).

``PPO(CQTViTPolicy, env, policy_kwargs=dict(backbone="vit" | "cnn", model_kwargs={...}))``
on the env's discrete action mode. Pieces: :class:`CQTFeaturesExtractor` (the backbone),
:class:`FrameCategoricalDistribution` (vectorised multi-categorical), :class:`CQTViTPolicy`.
"""

from cqtml_policy.sb3.distribution import FrameCategoricalDistribution
from cqtml_policy.sb3.features import CQTFeaturesExtractor, build_policy_model
from cqtml_policy.sb3.policy import CQTViTPolicy, FrameLogitsNet, ValueHead

__all__ = [
    "CQTFeaturesExtractor",
    "CQTViTPolicy",
    "FrameCategoricalDistribution",
    "FrameLogitsNet",
    "ValueHead",
    "build_policy_model",
]
