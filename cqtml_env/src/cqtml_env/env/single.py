"""``CQTML-v0``: one music clip per episode, one action (all device activations) per clip."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from cqtml_env.env.core import DEFAULT_CACHE_SIZE, DEFAULT_NUM_DEVICES, CQTMLCore
from cqtml_env.features.cqt import CQTProcessor
from cqtml_env.versions import ENV_GOLD_VERSIONS


class CQTMLEnv(gym.Env[np.ndarray, np.ndarray]):
    """One clip per episode: observe its CQT, act once with all activations, get the reward.

    Keyword options: ``dataset`` (None = SyntheticMusic; a spec string like "synthetic:64" or
    "folder:PATH"; or a data set object), ``num_devices`` (4), ``max_duration`` (seconds),
    ``cqt`` (CQTProcessor or its kwargs), ``reward`` ("model", "gold", a reward model path or
    a scorer object), ``action_bins`` (None = Box actions; K = flat MultiDiscrete with level
    i meaning i/(K-1)), ``render_mode`` (None or "rgb_array"), ``gold`` (the monitoring
    scorer; default GoldScorer(version=gold_version)), ``cache_size`` (CQTs kept in memory),
    ``dataset_kwargs`` (for a None/spec ``dataset``: constructor kwargs such as ``num_clips``,
    ``cache``), ``gold_version`` (what ``reward="model"`` and the default ``gold`` follow;
    set by the registered id).

    Spaces: observations ``Box(0, 1, [2, n_bins, T])`` (the clip's CQT); actions
    ``Box(0, 1, [num_devices, T])``, or ``MultiDiscrete`` with ``action_bins``.

    Rewards: the reward model's calibrated score of the whole show (``reward="gold"``: the gold
    score); ``info["gold_score"]`` and ``info["gold/<component>"]`` always carry gold's.

    Episode end: one step per episode (``terminated=True``).

    Version history:

    - ``CQTML-v1``: gold-v5 (``docs/GOLD.md``) and the reward model trained on it.
    - ``CQTML-v0``: gold-v1 and its reward model (the class's default, kept unchanged).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 1}

    def __init__(
        self,
        dataset: Any = None,
        num_devices: int = DEFAULT_NUM_DEVICES,
        max_duration: float | None = None,
        cqt: CQTProcessor | Mapping[str, Any] | None = None,
        reward: Any = "model",
        action_bins: int | None = None,
        render_mode: str | None = None,
        gold: Any = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        dataset_kwargs: Mapping[str, Any] | None = None,
        gold_version: str = ENV_GOLD_VERSIONS["CQTML-v0"],
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.core = CQTMLCore(
            dataset=dataset,
            num_devices=num_devices,
            max_duration=max_duration,
            cqt=cqt,
            reward=reward,
            action_bins=action_bins,
            gold=gold,
            cache_size=cache_size,
            dataset_kwargs=dataset_kwargs,
            gold_version=gold_version,
        )
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        self._clip: int | None = None
        self._last_activations: np.ndarray | None = None
        self._last_scores: tuple[float, float] | None = None
        self._closed = False

    @property
    def dataset(self) -> Any:
        return self.core.dataset

    @property
    def clip(self) -> int | None:
        """Index of the current episode's clip (None before the first reset)."""
        return self._clip

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"clip"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; CQTML-v0 accepts 'clip'")
        if options.get("clip") is not None:
            clip = self.core.check_clip(options["clip"], "options['clip']")
            obs = self.core.observation(clip)
        else:  # a drawn clip that turns out bad is skipped (the data set counts it)
            clips, stack = self.core.draw_observations(
                lambda: [int(self.np_random.integers(self.core.num_clips))]
            )
            clip, obs = int(clips[0]), stack[0]
        self._clip = clip
        self._last_activations = None
        self._last_scores = None
        return obs.copy(), self.core.reset_info(clip)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._clip is None:
            raise RuntimeError("call reset() before step()")
        acts = self.core.decode(action)
        scores = self.core.score(np.array([self._clip]), acts)
        self._last_activations = acts[0]
        self._last_scores = (float(scores.proxy[0]), float(scores.gold[0]))
        info = self.core.step_info(self._clip, scores, 0)
        return self.core.observation(self._clip).copy(), float(scores.proxy[0]), True, False, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode is None:
            gym.logger.warn(
                "render() called without a render_mode; make the env with render_mode='rgb_array'"
            )
            return None
        if self._clip is None:
            raise RuntimeError("call reset() before render()")
        return self.core.render(self._clip, self._last_activations, self._last_scores)

    def close(self) -> None:
        if not self._closed:
            self.core.clear_cache()
            self._closed = True


__all__ = ["CQTMLEnv"]
