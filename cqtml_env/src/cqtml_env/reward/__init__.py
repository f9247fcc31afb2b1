"""The learned reward: the Bradley–Terry model and its shipped weights (``model``), the reward
protocol the env scores through (``protocol``), training (``training``), evaluation against
gold (``evaluation``) and the seeded recipe behind the default weights (``default``)."""

from cqtml_env.reward.model import (
    DEFAULT_GOLD_VERSION,
    SHIPPED_GOLD_VERSIONS,
    ClipEncoding,
    RewardModel,
    RewardModelConfig,
    bt_loss,
    spearman,
)

__all__ = ["DEFAULT_GOLD_VERSION", "SHIPPED_GOLD_VERSIONS", "ClipEncoding", "RewardModel",
           "RewardModelConfig", "bt_loss", "spearman"]
