"""A vectorised multi-categorical distribution for SB3 (all dimensions share ``K`` bins).

SB3's ``MultiCategoricalDistribution`` builds one ``torch.distributions.Categorical`` per
dimension and loops over them in Python; with ``D·T = 864`` dimensions that dominates PPO's
time. Here the logits are one ``[B, N, K]`` tensor: log-softmax once, ``gather`` for
log-probabilities, inverse-CDF sampling, all vectorised.
"""

from __future__ import annotations

import torch
from stable_baselines3.common.distributions import Distribution
from torch import nn

from cqtml_policy.categorical import entropy_from_log_probs, sample_indices


class FrameCategoricalDistribution(Distribution):
    """``N`` independent categoricals with ``K`` bins each, flattened row-major like ``MultiDiscrete([K] * N)``."""

    def __init__(self, num_dims: int, num_bins: int) -> None:
        super().__init__()
        self.num_dims = int(num_dims)
        self.num_bins = int(num_bins)
        self.log_probs: torch.Tensor | None = None
        self._probs: torch.Tensor | None = None

    def proba_distribution_net(self, latent_dim: int) -> nn.Module:
        """A plain linear layer to ``N·K`` logits (the CQT policy uses its own per-frame head)."""
        return nn.Linear(latent_dim, self.num_dims * self.num_bins)

    def proba_distribution(self, action_logits: torch.Tensor) -> FrameCategoricalDistribution:
        logits = action_logits.reshape(action_logits.shape[0], self.num_dims, self.num_bins)
        self.log_probs = torch.log_softmax(logits.float(), dim=-1)
        self._probs = None  # exp(log_probs), computed once when sample/entropy need it
        return self

    def _require(self) -> torch.Tensor:
        if self.log_probs is None:
            raise RuntimeError("call proba_distribution(action_logits) first")
        return self.log_probs

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        log_probs = self._require()
        index = actions.reshape(log_probs.shape[0], self.num_dims).long()
        return log_probs.gather(-1, index.unsqueeze(-1)).squeeze(-1).sum(dim=1)

    def _probabilities(self) -> torch.Tensor:
        if self._probs is None:
            self._probs = self._require().exp()
        return self._probs

    def entropy(self) -> torch.Tensor:
        return entropy_from_log_probs(self._require(), self._probabilities()).sum(dim=1)

    def sample(self) -> torch.Tensor:
        return sample_indices(self._require(), probs=self._probabilities())

    def mode(self) -> torch.Tensor:
        return self._require().argmax(dim=-1)

    def actions_from_params(
        self, action_logits: torch.Tensor, deterministic: bool = False
    ) -> torch.Tensor:
        self.proba_distribution(action_logits)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(
        self, action_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        actions = self.actions_from_params(action_logits)
        return actions, self.log_prob(actions)
