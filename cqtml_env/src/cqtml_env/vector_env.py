"""Natively batched ``CQTML-v0``: N clips, one reward-model forward pass per step.

Returned by ``gym.make_vec("CQTML-v0", num_envs=N)`` (the registered ``vector_entry_point``).
It behaves like ``SyncVectorEnv`` over N :class:`~cqtml_env.env.CQTMLEnv` with
``AutoresetMode.SAME_STEP`` (same seeds -> same clips, rewards and infos), but

- scores all N actions in one proxy forward pass and one gold-scorer pass (per-clip gold
  features and reward-model clip encodings are cached by clip index);
- serves observations from one in-memory LRU of CQTs (plus the data set's disk cache);
- can put groups of sub-envs on the same clip, as GRPO needs (reset options below).

Every episode is one step, so SAME_STEP autoreset is the only mode that wastes nothing: each
``step`` returns the scored episode under ``info["final_info"]`` / ``info["final_obs"]`` and
already the observations of the next clips.

Reset options (all optional):
    ``clip``: one clip index for every sub-env.
    ``clips``: a sequence of N clip indices, e.g. ``[c0, c0, c0, c0, c1, c1, c1, c1]``.
    ``groups``: group size G (must divide N): draws N/G clips with the env's RNG and puts G
        consecutive sub-envs on each. Also used by the autoresets that follow this reset;
        without it they use the constructor's ``groups`` (default None: each sub-env draws
        its own clip from its own RNG, seeded ``seed + i`` as SyncVectorEnv seeds sub-envs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from cqtml_env.cqt import CQTProcessor
from cqtml_env.env import DEFAULT_CACHE_SIZE, DEFAULT_NUM_DEVICES, CQTMLCore, Scores

_RESET_OPTIONS = ("clip", "clips", "groups")


class CQTMLVectorEnv(VectorEnv):
    """N one-step CQTML episodes at a time; kwargs as :class:`~cqtml_env.env.CQTMLEnv` plus
    ``num_envs``, ``max_episode_steps`` (accepted for ``make_vec``; episodes always last one
    step) and ``groups`` (default autoreset group size, see the module doc).
    """

    metadata = {
        "render_modes": ["rgb_array"],
        "render_fps": 1,
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        *,
        groups: int | None = None,
        dataset: Any = None,
        num_devices: int = DEFAULT_NUM_DEVICES,
        max_duration: float | None = None,
        cqt: CQTProcessor | Mapping[str, Any] | None = None,
        reward: Any = "model",
        action_bins: int | None = None,
        render_mode: str | None = None,
        gold: Any = None,
        cache_size: int | None = None,
        dataset_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 (episodes last one step), got {max_episode_steps}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.num_envs = int(num_envs)
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.groups = self._check_groups(groups)
        self.core = CQTMLCore(
            dataset=dataset,
            num_devices=num_devices,
            max_duration=max_duration,
            cqt=cqt,
            reward=reward,
            action_bins=action_bins,
            gold=gold,
            cache_size=cache_size if cache_size is not None else max(DEFAULT_CACHE_SIZE, 2 * self.num_envs),
            dataset_kwargs=dataset_kwargs,
        )
        self.single_observation_space = self.core.observation_space
        self.single_action_space = self.core.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self._sub_rngs: list[np.random.Generator] | None = None
        self._clips: np.ndarray | None = None  # clip of each sub-env's current episode
        self._obs: np.ndarray | None = None
        self._autoreset_groups: int | None = self.groups
        self._last: tuple[np.ndarray, np.ndarray, Scores] | None = None  # last scored batch

    # -- helpers -------------------------------------------------------------------------
    @property
    def dataset(self) -> Any:
        return self.core.dataset

    @property
    def clips(self) -> np.ndarray | None:
        """Clip index of each sub-env's current episode (None before the first reset)."""
        return None if self._clips is None else self._clips.copy()

    def _check_groups(self, groups: Any) -> int | None:
        if groups is None:
            return None
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"groups (the group size) must be a positive integer, got {groups!r}")
        if self.num_envs % groups:
            raise ValueError(f"groups={groups} (the group size) must divide num_envs={self.num_envs}")
        return int(groups)

    def _seed_sub_rngs(self, seed: int | Sequence[int | None] | None) -> None:
        if seed is None:
            if self._sub_rngs is None:
                self._sub_rngs = [seeding.np_random()[0] for _ in range(self.num_envs)]
            return
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, (int, np.integer)) else list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"a list of seeds must have num_envs={self.num_envs} entries, got {len(seeds)}")
        self._sub_rngs = [seeding.np_random(None if s is None else int(s))[0] for s in seeds]

    def _draw(self, groups: int | None) -> np.ndarray:
        n = self.core.num_clips
        if groups is None:
            assert self._sub_rngs is not None
            return np.array([int(r.integers(n)) for r in self._sub_rngs], dtype=np.int64)
        drawn = self.np_random.integers(n, size=self.num_envs // groups)
        return np.repeat(drawn.astype(np.int64), groups)

    def _infos(self, clips: np.ndarray, scores: Scores | None = None) -> dict[str, Any]:
        """Batched infos in gymnasium's vector convention (array per key + ``_key`` mask)."""
        n = self.num_envs
        ids = np.empty(n, dtype=object)
        for i, c in enumerate(clips):
            ids[i] = self.core.clip_id(int(c))
        values: dict[str, np.ndarray] = {"clip_index": clips.astype(np.int64), "clip_id": ids}
        if scores is not None:
            values["proxy_score"] = scores.proxy
            values["gold_score"] = scores.gold
            for name, v in scores.components.items():
                values[f"gold/{name}"] = v
        info: dict[str, Any] = {}
        for key, v in values.items():
            info[key] = v
            info[f"_{key}"] = np.ones(n, dtype=np.bool_)
        return info

    # -- gymnasium API -------------------------------------------------------------------
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        main_seed = seed if seed is None or isinstance(seed, (int, np.integer)) else list(seed)[0]
        super().reset(seed=None if main_seed is None else int(main_seed))
        self._seed_sub_rngs(seed)
        options = dict(options or {})
        unknown = set(options) - set(_RESET_OPTIONS)
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; accepted: {list(_RESET_OPTIONS)}")
        groups = self._check_groups(options["groups"]) if "groups" in options else self.groups
        if options.get("clip") is not None and options.get("clips") is not None:
            raise ValueError("pass either options['clip'] or options['clips'], not both")
        if options.get("clip") is not None:
            clip = self.core.check_clip(options["clip"], "options['clip']")
            clips = np.full(self.num_envs, clip, dtype=np.int64)
        elif options.get("clips") is not None:
            given = list(options["clips"])
            if len(given) != self.num_envs:
                raise ValueError(f"options['clips'] must have num_envs={self.num_envs} entries, got {len(given)}")
            clips = np.array(
                [self.core.check_clip(c, f"options['clips'][{i}]") for i, c in enumerate(given)], dtype=np.int64
            )
        else:
            clips = self._draw(groups)
        self._autoreset_groups = groups
        self._clips = clips
        self._obs = self.core.observations(clips)
        self._last = None
        return self._obs, self._infos(clips)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._clips is None or self._obs is None:
            raise RuntimeError("call reset() before step()")
        acts = self.core.decode(actions, batch=self.num_envs)
        clips = self._clips
        scores = self.core.score(clips, acts)
        final_info = self._infos(clips, scores)
        final_obs = np.empty(self.num_envs, dtype=object)
        for i in range(self.num_envs):
            final_obs[i] = self._obs[i]
        self._last = (clips, acts, scores)

        # SAME_STEP autoreset: every episode has just ended
        self._clips = self._draw(self._autoreset_groups)
        self._obs = self.core.observations(self._clips)
        info = self._infos(self._clips)
        info["final_obs"] = final_obs
        info["_final_obs"] = np.ones(self.num_envs, dtype=np.bool_)
        info["final_info"] = final_info
        info["_final_info"] = np.ones(self.num_envs, dtype=np.bool_)
        rewards = scores.proxy.astype(np.float64)
        terminations = np.ones(self.num_envs, dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        return self._obs, rewards, terminations, truncations, info

    def prefetch(self, clips: Sequence[int] | np.ndarray, chunk: int = 32, progress: bool = False) -> None:
        """Load these clips' CQTs into the in-memory cache now (batched), not on the hot path.

        Raises ``ValueError`` if they would not all fit (``cache_size``).
        """
        clips = [self.core.check_clip(c, "prefetch clip") for c in clips]
        if len(set(clips)) > self.core.cache_size:
            raise ValueError(
                f"prefetching {len(set(clips))} clips needs cache_size >= that (it is {self.core.cache_size})"
            )
        from tqdm.auto import tqdm

        for s in tqdm(range(0, len(clips), chunk), desc="caching CQTs", disable=not progress, unit="chunk"):
            self.core.observations(clips[s : s + chunk])

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Each sub-env's last scored clip and action (or its current clip before any step)."""
        if self.render_mode is None:
            return None
        if self._clips is None:
            raise RuntimeError("call reset() before render()")
        if self._last is None:
            return tuple(self.core.render(int(c), None, None) for c in self._clips)
        clips, acts, scores = self._last
        return tuple(
            self.core.render(int(c), acts[i], (float(scores.proxy[i]), float(scores.gold[i])))
            for i, c in enumerate(clips)
        )

    def close_extras(self, **kwargs: Any) -> None:
        self.core.clear_cache()
        self._obs = None


__all__ = ["CQTMLVectorEnv"]
