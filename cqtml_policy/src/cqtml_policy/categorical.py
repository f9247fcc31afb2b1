"""Sampling and log-probabilities for per-frame, per-device categorical policies — in one place.

A :class:`CategoricalPolicy` only has to implement ``forward(states) -> log_probs`` with
shape ``[B, num_devices, T, K]``; this base class turns that into the :class:`PolicyModel`
protocol (``generate_actions`` / ``get_log_probabilities``), greedy actions, entropy and
save/load. ViT, CNN and the baselines all share it, so they cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from cqtml_policy import io

Self = TypeVar("Self", bound="CategoricalPolicy")
REDUCTIONS = ("sum", "mean", "none")
# Actions given as floats may carry rounding error; beyond this they are rejected.
ACTION_TOLERANCE = 1e-4


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def sample_indices(
    log_probs: torch.Tensor,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw bin indices from categoricals given as log-probabilities over the last axis.

    Inverse-CDF sampling: one uniform per draw, located in the cumulative probabilities by
    ``searchsorted`` — fully vectorised, much cheaper than one ``Categorical`` per dimension
    or Gumbel noise over every bin. ``probs`` (``log_probs.exp()``) may be passed when
    already computed. Returns ``log_probs.shape[:-1]``, or ``[S, *shape[:-1]]`` with
    ``num_samples=S``.

    The uniforms are kept at or above ``2**-24`` (the smallest step of ``torch.rand``): a
    uniform of exactly 0 would otherwise pick the first bin with any probability at all, even a
    denormal one (a level of probability e^-100 was drawn that way, and its KL term to the
    reference overflowed a long GRPO run). With the floor, a bin is drawn only if the float32
    CDF can tell it apart, i.e. at a probability the CDF resolves.
    """
    if probs is None:
        probs = log_probs.detach().float().exp()
    cdf = probs.detach().float().cumsum(-1)
    draws = 1 if num_samples is None else int(num_samples)
    u = torch.rand((*cdf.shape[:-1], draws), generator=generator, device=cdf.device)
    u.clamp_(min=2.0**-24)  # u == 0 would select a bin of denormal probability (see above)
    index = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)
    index = index.clamp_(max=log_probs.shape[-1] - 1)
    return index.squeeze(-1) if num_samples is None else index.movedim(-1, 0)


def entropy_from_log_probs(
    log_probs: torch.Tensor, probs: torch.Tensor | None = None
) -> torch.Tensor:
    """Entropy of each categorical (last axis); bins with probability 0 contribute 0."""
    if probs is None:
        probs = log_probs.exp()
    return -(probs * log_probs.nan_to_num(neginf=0.0)).sum(-1)


def _as_state_tensor(state: Any) -> torch.Tensor:
    if isinstance(state, torch.Tensor):
        return state
    if isinstance(state, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(state))
    raise TypeError(
        f"a state must be a torch.Tensor or numpy array [2, n_bins, T], got {type(state).__name__}"
    )


class CategoricalPolicy(nn.Module):
    """Base class: per-frame, per-device categorical over ``K`` activation levels.

    Subclasses implement :meth:`forward` (a batch ``[B, C, n_bins, T]`` -> log-probabilities
    ``[B, num_devices, T, K]``) and ``get_config``/``_load_weights`` style hooks for save/load.
    Level ``i`` means activation ``i / (K - 1)``.
    """

    model_type: ClassVar[str] = ""
    # Baselines that always act greedily set this; their log-probabilities stay a categorical.
    deterministic: ClassVar[bool] = False
    in_channels: int = 2

    def __init__(self, num_devices: int = 4, distribution_size: int = 32) -> None:
        super().__init__()
        if int(num_devices) < 1:
            raise ValueError(f"num_devices must be >= 1, got {num_devices}")
        if int(distribution_size) < 2:
            raise ValueError(f"distribution_size (K levels) must be >= 2, got {distribution_size}")
        self.num_devices = int(num_devices)
        self.distribution_size = int(distribution_size)
        # States per forward pass in generate_actions/get_log_probabilities (None: all at once).
        self.max_batch_size: int | None = None

    # ------------------------------------------------------------------ subclass hooks
    def forward(self, states: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``[B, C, n_bins, T]`` -> log-probabilities ``[B, num_devices, T, K]``."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable keyword arguments that rebuild this policy (without weights)."""
        return {"num_devices": self.num_devices, "distribution_size": self.distribution_size}

    @classmethod
    def from_config(cls: type[Self], config: dict[str, Any], **overrides: Any) -> Self:
        """Build an untrained policy from :meth:`get_config` output."""
        return cls(**{**config, **overrides})

    def weights_state_dict(self) -> dict[str, torch.Tensor]:
        """Full-precision weights to save (subclasses dequantise 8-bit layers here)."""
        return {k: v.float() if v.is_floating_point() else v for k, v in self.state_dict().items()}

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def levels(self) -> torch.Tensor:
        """The activation value of each level, ``[K]``: ``0, 1/(K-1), ..., 1``."""
        return torch.linspace(0.0, 1.0, self.distribution_size, device=self.device)

    def indices_to_actions(self, indices: torch.Tensor) -> torch.Tensor:
        """Level indices -> float32 activations ``index / (K - 1)``."""
        return indices.to(torch.float32) / (self.distribution_size - 1)

    # ------------------------------------------------------------------ input handling
    def _states_list(self, states: Any) -> list[torch.Tensor]:
        """Validate states and return one ``[C, n_bins, T]`` float32 tensor per state."""
        if isinstance(states, (torch.Tensor, np.ndarray)):
            batch = _as_state_tensor(states)
            if batch.dim() == 3:
                batch = batch.unsqueeze(0)
            if batch.dim() != 4:
                raise ValueError(
                    f"states must be a batch [N, {self.in_channels}, n_bins, T] or a list of "
                    f"[{self.in_channels}, n_bins, T]; got a tensor of shape {tuple(batch.shape)}"
                )
            items = list(batch.unbind(0))
        elif isinstance(states, Sequence) and not isinstance(states, (str, bytes)):
            items = [_as_state_tensor(s) for s in states]
        else:
            raise TypeError(
                f"states must be a tensor [N, {self.in_channels}, n_bins, T] or a list of CQT arrays, "
                f"got {type(states).__name__}"
            )
        if not items:
            raise ValueError("states is empty: need at least one CQT [2, n_bins, T]")
        out = []
        for i, s in enumerate(items):
            if s.dim() != 3 or s.shape[0] != self.in_channels or s.shape[1] < 1 or s.shape[2] < 1:
                raise ValueError(
                    f"state {i} has shape {tuple(s.shape)}; expected [{self.in_channels}, n_bins, T]"
                )
            if not s.is_floating_point():
                raise ValueError(
                    f"state {i} has dtype {s.dtype}; expected float CQT values in [0, 1]"
                )
            s = s.to(device=self.device, dtype=torch.float32)
            lo, hi = torch.aminmax(s)
            if not (torch.isfinite(lo) and torch.isfinite(hi)) or lo < -1e-3 or hi > 1 + 1e-3:
                raise ValueError(
                    f"state {i} has values in [{float(lo):.4g}, {float(hi):.4g}]; expected a CQT in [0, 1]"
                )
            out.append(s)
        return out

    @staticmethod
    def _groups(states: list[torch.Tensor]) -> list[list[int]]:
        """Indices of states grouped by shape: each group is one batched forward pass."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, s in enumerate(states):
            groups.setdefault(tuple(s.shape), []).append(i)
        return list(groups.values())

    def _chunks(self, idx: list[int]) -> Iterator[list[int]]:
        step = self.max_batch_size or len(idx)
        for start in range(0, len(idx), step):
            yield idx[start : start + step]

    def _log_probs(self, batch: torch.Tensor, temperature: float) -> torch.Tensor:
        """Tempered log-probabilities ``[B, D, T, K]`` in float32."""
        log_probs = self(batch).float()
        expected = (batch.shape[0], self.num_devices, batch.shape[-1], self.distribution_size)
        if tuple(log_probs.shape) != expected:  # a subclass bug, not a user error
            raise RuntimeError(
                f"{type(self).__name__}.forward returned {tuple(log_probs.shape)}, expected {expected}"
            )
        if temperature != 1.0:
            log_probs = torch.log_softmax(log_probs / temperature, dim=-1)
        return log_probs

    def _action_indices(self, action: Any, state: torch.Tensor, where: str) -> torch.Tensor:
        """One action ``[D, T]`` (activations in [0, 1], or integer level indices) -> long indices."""
        a = _as_state_tensor(action) if not isinstance(action, torch.Tensor) else action
        expected = (self.num_devices, state.shape[-1])
        if tuple(a.shape) != expected:
            raise ValueError(
                f"action {where} has shape {tuple(a.shape)}; expected [num_devices, T] = {list(expected)}"
            )
        k = self.distribution_size
        a = a.to(self.device)
        if a.dtype == torch.bool:
            raise ValueError(
                f"action {where} is boolean; expected activations in [0, 1] or level indices"
            )
        if a.is_floating_point():
            lo, hi = torch.aminmax(a)
            if (
                not (torch.isfinite(lo) and torch.isfinite(hi))
                or lo < -ACTION_TOLERANCE
                or hi > 1 + ACTION_TOLERANCE
            ):
                raise ValueError(
                    f"action {where} has values in [{float(lo):.4g}, {float(hi):.4g}]; "
                    "expected activations in [0, 1] (they are mapped to the nearest of K levels)"
                )
            return torch.round(a.float().clamp(0, 1) * (k - 1)).long()
        lo, hi = torch.aminmax(a)
        if lo < 0 or hi > k - 1:
            raise ValueError(
                f"action {where} has integer levels in [{int(lo)}, {int(hi)}]; expected 0..{k - 1}"
            )
        return a.long()

    def _parse_actions(
        self, actions: Any, states: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], bool]:
        """Actions -> per state ``[G, D, T]`` long indices, and whether they were grouped."""
        n = len(states)
        if isinstance(actions, np.ndarray):
            actions = torch.from_numpy(actions)
        if isinstance(actions, torch.Tensor):
            if actions.dim() not in (3, 4) or actions.shape[0] != n:
                raise ValueError(
                    f"actions tensor has shape {tuple(actions.shape)}; expected [N, num_devices, T] or "
                    f"[N, G, num_devices, T] with N = {n} states"
                )
            actions = list(actions.unbind(0))
        if not isinstance(actions, Sequence) or len(actions) != n:
            got = len(actions) if isinstance(actions, Sequence) else type(actions).__name__
            raise ValueError(
                f"need one action (or one list of actions) per state: {n} states, got {got}"
            )

        def is_group(a: Any) -> bool:
            if isinstance(a, (list, tuple)):
                return True
            return isinstance(a, (torch.Tensor, np.ndarray)) and a.ndim == 3

        grouped = [is_group(a) for a in actions]
        if any(grouped) and not all(grouped):
            raise ValueError(
                "mix of single actions and lists of actions: give either one [D, T] per state or a list per state"
            )
        out: list[torch.Tensor] = []
        for i, (a, s) in enumerate(zip(actions, states)):
            members = list(a) if grouped[i] else [a]
            if not members:
                raise ValueError(f"state {i} has an empty list of actions")
            out.append(
                torch.stack(
                    [self._action_indices(m, s, f"[{i}][{j}]") for j, m in enumerate(members)]
                )
            )
        if all(grouped) and len({o.shape[0] for o in out}) > 1:
            raise ValueError(
                f"every state needs the same number of actions G; got {[o.shape[0] for o in out]}"
            )
        return out, all(grouped)

    @staticmethod
    def _check_temperature(temperature: float, allow_zero: bool) -> float:
        t = float(temperature)
        if not math.isfinite(t) or t < 0 or (t == 0 and not allow_zero):
            need = ">= 0 (0 = greedy)" if allow_zero else "> 0"
            raise ValueError(f"temperature must be finite and {need}, got {temperature}")
        return t

    # ------------------------------------------------------------------ the protocol
    def generate_actions(
        self,
        states: Any,
        num_actions_per_state: int = 1,
        temperature: float = 1.0,
        *,
        generator: torch.Generator | None = None,
        return_log_probs: bool = False,
    ) -> list[list[torch.Tensor]] | tuple[list[list[torch.Tensor]], torch.Tensor]:
        """Sample ``G = num_actions_per_state`` actions per state from one forward pass.

        Returns ``actions[n][g]``: float32 ``[num_devices, T_n]`` on the level grid
        ``index / (K - 1)``. ``temperature`` divides the logits (higher: more diverse);
        ``temperature=0`` is greedy (the argmax level, ``G`` identical copies). With
        ``return_log_probs=True`` also returns ``[N, G]`` summed log-probabilities under the
        sampling distribution (untempered for greedy), equal to what
        :meth:`get_log_probabilities` recomputes. States of different shapes are batched
        per shape (one forward pass per distinct shape).
        """
        g = int(num_actions_per_state)
        if g < 1:
            raise ValueError(f"num_actions_per_state must be >= 1, got {num_actions_per_state}")
        t = self._check_temperature(temperature, allow_zero=True)
        items = self._states_list(states)
        out: list[list[torch.Tensor]] = [[] for _ in items]
        logp_out = torch.zeros(len(items), g, device=self.device)
        with torch.no_grad():
            for group in self._groups(items):
                for idx in self._chunks(group):
                    log_probs = self._log_probs(
                        torch.stack([items[i] for i in idx]), t if t > 0 else 1.0
                    )
                    if t == 0 or self.deterministic:
                        index = log_probs.argmax(-1).unsqueeze(1).expand(-1, g, -1, -1)
                    else:  # [G, B, D, T] -> [B, G, D, T]
                        index = sample_indices(log_probs, g, generator).transpose(0, 1)
                    acts = self.indices_to_actions(index)
                    if return_log_probs:
                        chosen = log_probs.unsqueeze(1).expand(-1, g, -1, -1, -1)
                        lp = chosen.gather(-1, index.unsqueeze(-1)).squeeze(-1).sum((-1, -2))
                        logp_out[idx] = lp
                    for row, i in enumerate(idx):
                        out[i] = list(acts[row].unbind(0))
        return (out, logp_out) if return_log_probs else out

    def greedy_actions(self, states: Any) -> list[torch.Tensor]:
        """The mode (argmax level) per state: ``[num_devices, T]`` each; what evaluation uses."""
        return [acts[0] for acts in self.generate_actions(states, 1, temperature=0.0)]  # type: ignore[index]

    def get_log_probabilities(
        self,
        states: Any,
        actions: Any,
        temperature: float = 1.0,
        reduction: str = "sum",
    ) -> torch.Tensor:
        """Differentiable log-probabilities of ``actions`` under the (tempered) policy.

        ``actions``: one ``[D, T]`` per state -> ``[N]``; a list (or ``[G, D, T]`` tensor) per
        state -> ``[N, G]``. Float actions are activations in [0, 1] mapped to the nearest
        level; integer tensors are level indices. ``reduction``: ``"sum"`` over devices and
        frames (the action's log-probability), ``"mean"`` per element, or ``"none"`` for
        ``[N, (G,) D, T]`` (all states must then share ``T``).
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        t = self._check_temperature(temperature, allow_zero=False)
        items = self._states_list(states)
        indices, grouped = self._parse_actions(actions, items)
        if reduction == "none" and len({s.shape[-1] for s in items}) > 1:
            raise ValueError(
                "reduction='none' needs all states to have the same number of frames T"
            )
        results: list[torch.Tensor | None] = [None] * len(items)
        for group in self._groups(items):
            for idx in self._chunks(group):
                log_probs = self._log_probs(torch.stack([items[i] for i in idx]), t)  # [B, D, T, K]
                index = torch.stack([indices[i] for i in idx])  # [B, G, D, T]
                expanded = log_probs.unsqueeze(1).expand(-1, index.shape[1], -1, -1, -1)
                per_elem = expanded.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # [B, G, D, T]
                if reduction == "sum":
                    per_elem = per_elem.sum((-1, -2))
                elif reduction == "mean":
                    per_elem = per_elem.mean((-1, -2))
                for row, i in enumerate(idx):
                    results[i] = per_elem[row]
        stacked = torch.stack(results)  # type: ignore[arg-type]
        return stacked if grouped else stacked.squeeze(1)

    def log_probs(self, states: Any, temperature: float = 1.0) -> list[torch.Tensor]:
        """Full distributions per state: ``[num_devices, T, K]`` log-probabilities (differentiable)."""
        t = self._check_temperature(temperature, allow_zero=False)
        items = self._states_list(states)
        results: list[torch.Tensor | None] = [None] * len(items)
        for group in self._groups(items):
            for idx in self._chunks(group):
                lp = self._log_probs(torch.stack([items[i] for i in idx]), t)
                for row, i in enumerate(idx):
                    results[i] = lp[row]
        return results  # type: ignore[return-value]

    def entropy(self, states: Any, temperature: float = 1.0) -> torch.Tensor:
        """Per-element entropy ``[N, num_devices, T]`` (differentiable; states must share ``T``)."""
        per_state = [entropy_from_log_probs(lp) for lp in self.log_probs(states, temperature)]
        if len({e.shape for e in per_state}) > 1:
            raise ValueError("entropy needs all states to have the same number of frames T")
        return torch.stack(per_state)

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path) -> Path:
        """Save config (JSON) and full-precision weights (safetensors) to ``directory``."""
        return io.write_pretrained(
            directory, self.model_type, self.get_config(), self.weights_state_dict()
        )

    @classmethod
    def from_pretrained(cls: type[Self], directory: str | Path, **overrides: Any) -> Self:
        """Rebuild a policy saved with :meth:`save_pretrained`; ``overrides`` replace config entries."""
        model_type, config = io.read_config(directory)
        from cqtml_policy.registry import canonical_name

        if cls.model_type and not _same_kind(model_type, cls.model_type, canonical_name):
            raise ValueError(
                f"{directory} holds a {model_type!r} policy, not {cls.model_type!r}; "
                "use cqtml_policy.load_policy to load any kind"
            )
        return cls._from_saved(config, io.read_weights(directory), **overrides)

    @classmethod
    def _from_saved(
        cls: type[Self],
        config: dict[str, Any],
        state_dict: dict[str, torch.Tensor] | None,
        **overrides: Any,
    ) -> Self:
        overrides.pop("device", None)  # parameter-free policies live on the CPU
        model = cls.from_config(config, **overrides)
        if state_dict:
            model.load_state_dict(state_dict)
        return model

    def extra_repr(self) -> str:
        return f"num_devices={self.num_devices}, distribution_size={self.distribution_size}"


def _same_kind(saved: str, expected: str, canonical: Any) -> bool:
    """Whether a saved ``model_type`` (any alias, e.g. a 0.1 name) names ``expected``'s kind."""
    try:
        return canonical(saved) == canonical(expected)
    except ValueError:
        return saved == expected
