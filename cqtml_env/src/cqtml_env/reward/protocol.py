"""The reward protocol the env scores through: prepare a clip once, score many actions.

A GRPO batch scores G actions of each of C clips; a clip's features (the gold scorer's
onsets and targets, the reward model's clip encoding) are worth computing once and reusing
for every action and every later step on that clip. So a reward function has two halves:

* ``prepare(cqt) -> state``: everything that depends on the clip alone (``cqt`` is
  ``float32 [2, F, T]``); the caller caches states per clip.
* ``score_prepared(states, actions) -> [B]``: scores of actions ``[B, D, T]`` where
  ``len(states) = C`` divides ``B`` and the rows come in C consecutive groups of ``B / C``,
  group ``c`` on clip ``states[c]`` (C = 1: all rows on one clip; C = B: one clip per row).
* ``state_version()``: a value that changes when states prepared earlier go stale (a
  trainable model's parameters moved); ``None`` for a fixed scorer.

:class:`~cqtml_env.reward.model.RewardModel` and :class:`~cqtml_env.gold.GoldScorer`
implement it (the gold scorer also yields its named components); any object with a plain
``score(cqt, actions)`` is wrapped by :func:`as_reward_function`.

Example:
    >>> import numpy as np
    >>> from cqtml_env import GoldScorer
    >>> gold = as_reward_function(GoldScorer())
    >>> cqt = np.zeros((2, 84, 216), np.float32)
    >>> gold.score_prepared([gold.prepare(cqt)], np.zeros((3, 4, 216), np.float32)).shape
    (3,)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class RewardFunction(Protocol):
    """Prepare a clip once (``prepare``), then score any number of its actions."""

    def prepare(self, cqt: np.ndarray) -> Any: ...

    def score_prepared(self, states: Sequence[Any], actions: np.ndarray) -> np.ndarray: ...

    def state_version(self) -> Hashable: ...


@runtime_checkable
class ComponentScorer(RewardFunction, Protocol):
    """A reward function that also explains itself: scores ``[B]`` and named components
    ``[B, D]`` (one value per device) from one pass."""

    def explain_prepared(
        self, states: Sequence[Any], actions: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...


def group_size(states: Sequence[Any], actions: Any) -> int:
    """Rows per clip group (``B / C``), or a ValueError naming both counts."""
    c, b = len(states), len(actions)
    if c < 1 or b % c:
        raise ValueError(
            f"{b} actions do not split into groups over {c} prepared clips "
            "(pass 1 clip, one clip per action, or B/C consecutive actions per clip)"
        )
    return b // c


def rows_of(states: Sequence[Any], actions: Any) -> list[Any]:
    """The state of every row (groups expanded; the same object for rows of one clip)."""
    g = group_size(states, actions)
    return [s for s in states for _ in range(g)]


class ScoreFunctionReward:
    """Any object with ``score(cqt, actions) -> [N]`` behind the protocol (its state is the CQT).

    One clip: ``score(cqt [2, F, T], actions [B, D, T])``; several: ``score(cqts [B, 2, F, T],
    actions)`` with each row's clip.
    """

    def __init__(self, scorer: Any) -> None:
        if not callable(getattr(scorer, "score", None)):
            raise TypeError(f"{type(scorer).__name__} has no score(cqt, actions) method")
        self.scorer = scorer

    def prepare(self, cqt: np.ndarray) -> np.ndarray:
        return cqt

    def score_prepared(self, states: Sequence[np.ndarray], actions: np.ndarray) -> np.ndarray:
        if len(states) == 1:
            # one clip: its CQT is passed once and broadcast over the actions (a writable
            # copy: a torch-based scorer must not alias a read-only cache entry)
            out = self.scorer.score(np.array(states[0]), actions)
        else:
            out = self.scorer.score(np.stack(rows_of(states, actions)), actions)
        return _as_float64(out)

    def state_version(self) -> None:
        return None


class PerClipComponents:
    """A gold-like scorer with only ``score_components(cqt, actions)`` (and optionally
    ``combine``/``score``) behind :class:`ComponentScorer`: scored once per distinct clip."""

    def __init__(self, scorer: Any) -> None:
        if not callable(getattr(scorer, "score_components", None)):
            raise TypeError("gold must have .score(cqt, actions) and .score_components(cqt, actions)")
        self.scorer = scorer

    def prepare(self, cqt: np.ndarray) -> np.ndarray:
        return cqt

    def state_version(self) -> None:
        return None

    def explain_prepared(
        self, states: Sequence[np.ndarray], actions: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rows = rows_of(states, actions)
        n = len(rows)
        comps: dict[str, np.ndarray] = {}
        totals = np.empty(n, dtype=np.float64)
        for key in dict.fromkeys(id(r) for r in rows):  # each distinct clip once, in row order
            idx = np.array([i for i, s in enumerate(rows) if id(s) == key])
            cqt, acts = rows[idx[0]], actions[idx]
            part = self.scorer.score_components(cqt, acts)
            for name, value in part.items():
                v = _as_float64(value).reshape(len(idx), -1)
                comps.setdefault(name, np.empty((n, v.shape[1]), dtype=np.float64))[idx] = v
            combine = getattr(self.scorer, "combine", None)
            totals[idx] = _as_float64(combine(part) if combine else self.scorer.score(cqt, acts)).reshape(-1)
        return totals, comps

    def score_prepared(self, states: Sequence[np.ndarray], actions: np.ndarray) -> np.ndarray:
        return self.explain_prepared(states, actions)[0]


def as_reward_function(obj: Any) -> RewardFunction:
    """``obj`` itself when it implements the protocol, else wrapped (it needs ``score``)."""
    if isinstance(obj, RewardFunction):
        return obj
    return ScoreFunctionReward(obj)


def as_component_scorer(obj: Any) -> ComponentScorer:
    """``obj`` itself when it implements :class:`ComponentScorer`, else :class:`PerClipComponents`."""
    if isinstance(obj, ComponentScorer):
        return obj
    return PerClipComponents(obj)


def _as_float64(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


__all__ = [
    "ComponentScorer",
    "PerClipComponents",
    "RewardFunction",
    "ScoreFunctionReward",
    "as_component_scorer",
    "as_reward_function",
    "group_size",
    "rows_of",
]
