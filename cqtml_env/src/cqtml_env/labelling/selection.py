"""Which two shows a person compares next: candidate pools and pair-selection strategies.

A :class:`ClipPool` is one clip with a dozen candidate shows (the candidate factory's mix
and, with a policy, the policy's samples at a few temperatures), snapped to the stored
uint8 levels so that what a person sees is exactly what the store keeps, and scored once by
the current reward model. A :class:`PairSelector` picks an unseen pair from a pool:

* ``random`` — a uniformly random pair;
* ``uncertain`` — among pairs of clearly distinct shows (mean level distance at least the
  median of the clip's unseen pairs and at least ``min_distance``), the one whose
  reward-model margin ``|r(a) - r(b)|`` is smallest: the model cannot tell them apart although
  a person can, so the answer teaches it most. (The smallest margin over all pairs picks
  near-identical shows, which teach nothing.)
* ``policy`` — a pair with at least one policy sample (people judge what the agent does).

Strategies live in :data:`SELECTORS`; add one by subclassing :class:`PairSelector` and
registering it with :func:`register_selector`.

Example:
    >>> sel = make_selector("random")
    >>> sel.name
    'random'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from cqtml_env.preferences.store import ACTION_SCALE


class PolicyLike(Protocol):
    """What the ``policy`` strategy needs of a policy (``cqtml_policy.PolicyModel`` has it)."""

    def generate_actions(
        self, states: Any, num_actions_per_state: int = 1, temperature: float = 1.0
    ) -> list[list[Any]]: ...


@dataclass
class ClipPool:
    """One clip and its candidate shows (uint8 levels ``[N, D, T]``)."""

    serial: int
    clip: int
    clip_id: str
    cqt: np.ndarray  # [2, F, T] float32
    levels: np.ndarray  # [N, D, T] uint8
    sources: list[str]
    scores: np.ndarray  # [N] reward-model scores (raw scale)
    is_policy: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def key(self) -> str:
        return f"p{self.serial}"

    def pair_id(self, i: int, j: int) -> str:
        i, j = sorted((int(i), int(j)))
        return f"{self.key}-{i}-{j}"

    def all_pairs(self) -> list[tuple[int, int]]:
        n = len(self.levels)
        return [(i, j) for i in range(n) for j in range(i + 1, n)]

    def activations(self, i: int) -> np.ndarray:
        return self.levels[i].astype(np.float32) / ACTION_SCALE


def parse_pair_id(pair_id: str) -> tuple[int, int, int]:
    """``'p12-3-7'`` -> (12, 3, 7); ValueError on anything else."""
    try:
        p, i, j = pair_id.split("-")
        if not p.startswith("p"):
            raise ValueError
        out = int(p[1:]), int(i), int(j)
    except ValueError:
        raise ValueError(f"bad pair id {pair_id!r} (expected 'p<pool>-<i>-<j>')") from None
    if min(out) < 0 or out[1] >= out[2]:
        raise ValueError(f"bad pair id {pair_id!r}")
    return out


class PairSelector(ABC):
    """Picks one pair ``(i, j)`` of a pool that the labeller has not seen, or None."""

    name: str = ""

    def usable(self, pool: ClipPool) -> bool:
        return True

    def candidates(self, pool: ClipPool, seen: set[str]) -> list[tuple[int, int]]:
        out = []
        for i, j in pool.all_pairs():
            if pool.pair_id(i, j) in seen:
                continue
            if np.array_equal(pool.levels[i], pool.levels[j]):
                continue  # nothing to compare
            out.append((i, j))
        return out

    @abstractmethod
    def choose(
        self, pool: ClipPool, seen: set[str], rng: np.random.Generator
    ) -> tuple[int, int] | None: ...


class RandomSelector(PairSelector):
    name = "random"

    def choose(self, pool, seen, rng):
        cands = self.candidates(pool, seen)
        return cands[int(rng.integers(len(cands)))] if cands else None


def show_distance(pool: ClipPool, i: int, j: int) -> float:
    """Mean absolute difference of two shows' levels, in [0, 1]."""
    a, b = pool.levels[i].astype(np.int16), pool.levels[j].astype(np.int16)
    return float(np.abs(a - b).mean() / ACTION_SCALE)


class UncertainSelector(PairSelector):
    name = "uncertain"
    min_distance: float = 0.05
    """shows closer than this (mean level difference) are never compared by ``uncertain``"""

    def choose(self, pool, seen, rng):
        cands = self.candidates(pool, seen)
        if not cands:
            return None
        dist = np.array([show_distance(pool, i, j) for i, j in cands])
        far = dist >= max(self.min_distance, float(np.median(dist)))
        if not far.any():  # every unseen pair is close: the most distinct ones
            far = dist >= dist.max()
        idx = np.flatnonzero(far)
        margin = np.array([abs(pool.scores[cands[k][0]] - pool.scores[cands[k][1]]) for k in idx])
        return cands[int(idx[np.argmin(margin + 1e-9 * rng.random(len(margin)))])]


class PolicySelector(PairSelector):
    name = "policy"

    def usable(self, pool):
        return bool(pool.is_policy.any())

    def choose(self, pool, seen, rng):
        cands = [(i, j) for i, j in self.candidates(pool, seen) if pool.is_policy[[i, j]].any()]
        return cands[int(rng.integers(len(cands)))] if cands else None


SELECTORS: dict[str, type[PairSelector]] = {}


def register_selector(cls: type[PairSelector]) -> type[PairSelector]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    SELECTORS[cls.name] = cls
    return cls


for _cls in (RandomSelector, UncertainSelector, PolicySelector):
    register_selector(_cls)


def make_selector(name: str) -> PairSelector:
    try:
        return SELECTORS[name]()
    except KeyError:
        raise ValueError(
            f"unknown pair selection {name!r}; choose from {', '.join(sorted(SELECTORS))}"
        ) from None


def parse_selection(spec: str) -> dict[str, float]:
    """``'uncertain'`` or a mix ``'random=0.3,uncertain=0.7'`` -> normalised weights."""
    weights: dict[str, float] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, w = part.partition("=")
        make_selector(name)  # validates the name
        try:
            weights[name] = float(w) if w else 1.0
        except ValueError:
            raise ValueError(f"bad weight in selection {spec!r}: {w!r}") from None
        if not weights[name] >= 0:
            raise ValueError(f"selection weights must be >= 0, got {spec!r}")
    total = sum(weights.values())
    if not weights or total <= 0:
        raise ValueError(f"empty selection {spec!r}; e.g. 'random' or 'random=0.5,uncertain=0.5'")
    return {k: v / total for k, v in weights.items()}


def policy_levels(
    policy: PolicyLike, cqt: np.ndarray, temperatures: tuple[float, ...], per_temperature: int
) -> tuple[np.ndarray, list[str]]:
    """Samples of ``policy`` on one clip at each temperature: uint8 levels and source names."""
    import torch

    states = torch.as_tensor(np.asarray(cqt, np.float32))[None]
    out, names = [], []
    for t in temperatures:
        with torch.no_grad():
            samples = policy.generate_actions(
                states, num_actions_per_state=per_temperature, temperature=float(t)
            )[0]
        for a in samples:
            arr = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
            out.append(np.round(np.clip(arr, 0, 1) * ACTION_SCALE).astype(np.uint8))
            names.append(f"policy_t{t:g}")
    return np.stack(out), names


__all__ = [
    "SELECTORS",
    "ClipPool",
    "PairSelector",
    "PolicyLike",
    "PolicySelector",
    "RandomSelector",
    "UncertainSelector",
    "make_selector",
    "parse_pair_id",
    "parse_selection",
    "policy_levels",
    "register_selector",
    "show_distance",
]
