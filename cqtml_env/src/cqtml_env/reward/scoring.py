"""The one scoring path: proxy reward + gold score + gold components for (clip, action) rows.

The env, the vector env, policy evaluation (``agents/``) and the reward model's evaluation
against gold all score through :class:`ShowScorer`, so they cannot drift apart. It keeps a
per-clip LRU of prepared states for the proxy and for gold (reward protocol,
:mod:`cqtml_env.reward.protocol`), batches every row of a call into one proxy pass and one
gold pass, and shares one clip state over each run of consecutive rows on the same clip
(GRPO's groups).

Example:
    >>> import numpy as np
    >>> from cqtml_env import GoldScorer, RewardModel
    >>> cqts = np.random.default_rng(0).random((2, 2, 84, 216), dtype=np.float32)
    >>> scoring = ShowScorer(proxy=RewardModel.load_default(), gold=GoldScorer(version="gold-v5"))
    >>> s = scoring.score(np.array([0, 0, 1]), np.full((3, 4, 216), 0.5, np.float32), cqts.__getitem__)
    >>> s.proxy.shape, s.gold.shape, sorted(s.components)[:2]
    ((3,), (3,), ['beat', 'corr'])
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.reward.protocol import (
    ComponentScorer,
    RewardFunction,
    as_component_scorer,
    as_reward_function,
)

DEFAULT_CACHE_SIZE = 512  # clips; ~210 KB each at the default CQT shape (CQT, gold, encoding)


@dataclass
class Scores:
    """Scores of a batch of actions: ``proxy`` is the reward; gold is for monitoring."""

    proxy: np.ndarray  # [N] float64
    gold: np.ndarray  # [N] float64
    components: dict[str, np.ndarray]  # name -> [N] float64 (mean over devices)


def group_clips(clips: np.ndarray) -> np.ndarray:
    """The clip of each group when ``clips`` is C equal runs of consecutive equal entries
    (e.g. ``[c0, c0, c1, c1]`` -> ``[c0, c1]``); otherwise ``clips`` itself (runs of one)."""
    n = len(clips)
    change = np.flatnonzero(clips[1:] != clips[:-1]) + 1
    g = int(change[0]) if len(change) else n
    if n % g == 0 and (g == 1 or (clips.reshape(-1, g) == clips[::g, None]).all()):
        return clips[::g]
    return clips


class _StateCache:
    """Per-clip LRU of one reward function's prepared states, dropped when they go stale."""

    def __init__(self, fn: RewardFunction, size: int) -> None:
        self.fn, self.size = fn, size
        self._states: OrderedDict[Hashable, Any] = OrderedDict()
        self._version: Hashable = None

    def get(self, clips: np.ndarray, cqt: Callable[[Any], np.ndarray]) -> list[Any]:
        version = self.fn.state_version()
        if version != self._version:
            self._states.clear()
            self._version = version
        out = []
        for c in clips.tolist():
            state = self._states.get(c)
            if state is None:
                state = self._states[c] = self.fn.prepare(cqt(c))
                while len(self._states) > self.size:
                    self._states.popitem(last=False)
            else:
                self._states.move_to_end(c)
            out.append(state)
        return out

    def __len__(self) -> int:
        return len(self._states)

    def clear(self) -> None:
        self._states.clear()


class ShowScorer:
    """Proxy + gold (+ components) for rows of (clip key, action), clip states cached.

    ``proxy``: a :class:`~cqtml_env.reward.protocol.RewardFunction` (the reward model, a
    custom scorer with ``score(cqt, actions)``) or ``None`` to use gold as the reward.
    ``gold``: the monitoring judge (a :class:`~cqtml_env.gold.GoldScorer`, or anything with
    ``score_components``). Clip keys are any integers the caller's ``cqt(key)`` understands.
    """

    def __init__(self, proxy: Any, gold: Any, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.proxy: RewardFunction | None = None if proxy is None else as_reward_function(proxy)
        self.gold: ComponentScorer = as_component_scorer(gold)
        self._gold_states = _StateCache(self.gold, cache_size)
        self._proxy_states = None if self.proxy is None else _StateCache(self.proxy, cache_size)

    def score(self, clips: Any, actions: np.ndarray, cqt: Callable[[Any], np.ndarray]) -> Scores:
        """Score activations ``[N, D, T]`` on ``clips [N]`` (``cqt(clip)`` gives a clip's CQT
        ``[2, F, T]`` on a cache miss): one gold pass and one proxy pass over all N rows."""
        clips = np.asarray(clips, dtype=np.int64).reshape(-1)
        n = len(clips)
        if actions.shape[0] != n:
            raise ValueError(f"{actions.shape[0]} actions for {n} clips")
        groups = group_clips(clips)
        gold, comps = self.gold.explain_prepared(self._gold_states.get(groups, cqt), actions)
        gold = np.asarray(gold, dtype=np.float64).reshape(-1)
        components = {
            name: np.asarray(v, dtype=np.float64).reshape(n, -1).mean(axis=1) for name, v in comps.items()
        }
        if self.proxy is None:
            proxy = gold.copy()
        else:
            proxy = np.asarray(
                self.proxy.score_prepared(self._proxy_states.get(groups, cqt), actions), dtype=np.float64
            ).reshape(-1)
        if proxy.shape != (n,):
            raise ValueError(f"reward model returned shape {proxy.shape} for {n} actions")
        return Scores(proxy=proxy, gold=gold, components=components)

    def cache_info(self) -> dict[str, int]:
        """How many clips have a cached gold / proxy state."""
        proxy = 0 if self._proxy_states is None else len(self._proxy_states)
        return {"gold": len(self._gold_states), "proxy": proxy}

    def clear(self) -> None:
        self._gold_states.clear()
        if self._proxy_states is not None:
            self._proxy_states.clear()


# -- which reward ---------------------------------------------------------------------------
_REWARD_MODELS: dict[str, Any] = {}  # loaded once per process: SyncVectorEnv makes many envs


def load_reward(reward: Any, gold_version: str | None = None) -> tuple[str, Any]:
    """``reward`` spec -> (kind, reward function): ``"gold"`` (None: gold is the reward),
    ``"model"`` (the reward model shipped for ``gold_version``, None: the default one, or one
    saved at a path) or ``"custom"`` (an object implementing the reward protocol, or with
    ``score(cqt, actions)``)."""
    if isinstance(reward, str) and reward == "gold":
        return "gold", None
    if isinstance(reward, str) and reward == "model":
        from cqtml_env.reward.model import DEFAULT_GOLD_VERSION, RewardModel

        version = gold_version or DEFAULT_GOLD_VERSION
        key = f"shipped:{version}"
        if key not in _REWARD_MODELS:
            _REWARD_MODELS[key] = RewardModel.load_default(version).eval()
        return "model", _REWARD_MODELS[key]
    if isinstance(reward, (str, os.PathLike)):
        path = Path(reward).expanduser()
        if not path.exists():
            raise ValueError(
                f"unknown reward {str(reward)!r}: expected 'model' (the default reward model), "
                "'gold' (the gold scorer), a path to a saved reward model, or an object with "
                ".score(cqt, actions)"
            )
        key = str(path.resolve())
        if key not in _REWARD_MODELS:
            from cqtml_env.reward.model import RewardModel

            _REWARD_MODELS[key] = RewardModel.from_pretrained(path).eval()
        return "model", _REWARD_MODELS[key]
    from cqtml_env.reward.model import RewardModel

    if isinstance(reward, RewardModel):
        return "model", reward
    if isinstance(reward, RewardFunction) or callable(getattr(reward, "score", None)):
        return "custom", reward
    raise ValueError(
        f"unknown reward {reward!r}: expected 'model', 'gold', a path to a saved reward model, "
        "or an object with .score(cqt, actions)"
    )


def check_reward_contract(reward: Any, contract: Any) -> None:
    """A reward model built for other shapes or another frame rate is an error, not a
    silently wrong reward (``reward.config`` fields vs the env's contract)."""
    cfg = getattr(reward, "config", None)
    for name in ("num_devices", "n_bins", "frame_rate"):
        have, want = getattr(cfg, name, None), getattr(contract, name)
        if isinstance(have, (int, float)) and not isinstance(have, bool) and have != want:
            raise ValueError(
                f"the reward model was built for {name}={have:g}, the env has {name}={want:g}; "
                "use a matching reward model (reward=PATH) or reward='gold'"
            )


__all__ = [
    "DEFAULT_CACHE_SIZE",
    "Scores",
    "ShowScorer",
    "check_reward_contract",
    "group_clips",
    "load_reward",
]
