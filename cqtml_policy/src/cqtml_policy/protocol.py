"""The contract a GRPO (or any policy-gradient) framework can rely on.

Anything with these three methods can be trained and evaluated by the CQTML agents;
nothing else about the policy (architecture, backbone, device) is assumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

# One clip's CQT is ``[2, n_bins, T]`` (tensor or numpy array); a batch is ``[N, 2, n_bins, T]``.
States = torch.Tensor | Sequence[Any]
# One action per state (``[N]`` results) or a group of actions per state (``[N, G]`` results).
Actions = torch.Tensor | Sequence[Any]


@runtime_checkable
class PolicyModel(Protocol):
    """A stochastic policy over device activations on the ``K``-level grid.

    - ``generate_actions(states, num_actions_per_state=G, temperature=τ)`` returns a list (one
      per state) of lists (one per sample) of ``[num_devices, T]`` float tensors whose values
      are ``index / (K - 1)``. All ``G`` samples come from one forward pass. ``temperature=0``
      means greedy (the mode, repeated ``G`` times).
    - ``get_log_probabilities(states, actions, temperature=τ, reduction="sum")`` returns the
      differentiable log-probability of the given actions under the same distribution that
      ``generate_actions`` samples from: ``[N]`` for one action per state, ``[N, G]`` for a
      list of ``G`` actions per state; ``reduction="none"`` keeps ``[..., num_devices, T]``.
    - ``parameters()`` yields the trainable tensors (possibly none, for baselines).
    """

    def generate_actions(
        self, states: States, num_actions_per_state: int = 1, temperature: float = 1.0
    ) -> list[list[torch.Tensor]]: ...

    def get_log_probabilities(
        self, states: States, actions: Actions, temperature: float = 1.0, reduction: str = "sum"
    ) -> torch.Tensor: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...
