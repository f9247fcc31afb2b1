"""Stable-Baselines3 adapter (needs ``pip install 'cqtml-policy[sb3]'``).

``PPO(CategoricalSB3Policy, env, policy_kwargs=dict(backbone="vit" | "cnn", model_kwargs={...}))``
on the env's discrete action mode. Pieces: :class:`CQTFeaturesExtractor` (the backbone),
:class:`FrameCategoricalDistribution` (vectorised multi-categorical), :class:`CategoricalSB3Policy` (``CQTViTPolicy`` in 0.1, a deprecated alias).
"""

from cqtml_policy._deprecated import alias_getattr
from cqtml_policy.sb3.distribution import FrameCategoricalDistribution
from cqtml_policy.sb3.features import CQTFeaturesExtractor, build_policy_model
from cqtml_policy.sb3.policy import CategoricalSB3Policy, FrameLogitsNet, ValueHead

__all__ = [
    "CQTFeaturesExtractor",
    "CategoricalSB3Policy",
    "FrameCategoricalDistribution",
    "FrameLogitsNet",
    "ValueHead",
    "build_policy_model",
]

__getattr__ = alias_getattr(
    __name__, {"CQTViTPolicy": ("cqtml_policy.sb3.policy", "CategoricalSB3Policy")}
)
