"""Natively batched ``CQTML-v0``: N clips, one reward-model forward pass per step.

Returned by ``gym.make_vec("CQTML-v0", num_envs=N)`` (the registered ``vector_entry_point``).
It behaves like ``SyncVectorEnv`` over N :class:`~cqtml_env.env.single.CQTMLEnv` with
``AutoresetMode.SAME_STEP`` (same seeds -> same clips, rewards and infos), but

- scores all N actions in one proxy forward pass and one gold-scorer pass (per-clip gold
  features and reward-model clip encodings are cached by clip index);
- serves observations from one in-memory LRU of CQTs (plus the data set's disk cache);
- can put groups of sub-envs on the same clip, as GRPO needs (reset options below).

Every episode is one step. ``autoreset_mode`` (constructor; default SAME_STEP):
    ``SAME_STEP``: each ``step`` returns the scored episode under ``info["final_info"]`` /
        ``info["final_obs"]`` and already the observations of the next clips.
    ``DISABLED``: ``step`` returns the scored episode itself (its observations, rewards and
        infos with the scores) and draws nothing; call ``reset()`` (all sub-envs, or
        ``options={"reset_mask": mask}``) before the next ``step``. For loops that reset
        explicitly every iteration, as GRPO does: no next-clip observations are built only
        to be thrown away. (NEXT_STEP would waste every other step on one-step episodes.)

Reset options (all optional):
    ``clip``: one clip index for every sub-env.
    ``clips``: a sequence of N clip indices, e.g. ``[c0, c0, c0, c0, c1, c1, c1, c1]``.
    ``group_size``: G (must divide N; GRPO's ``num_generations``): draws N/G clips with the
        env's RNG and puts G consecutive sub-envs on each. Also used by the autoresets that
        follow this reset; without it they use the constructor's ``group_size`` (default None:
        each sub-env draws its own clip from its own RNG, seeded ``seed + i`` as SyncVectorEnv
        seeds sub-envs). ``groups`` is its deprecated 0.1 name (it was always a size).
    ``reset_mask``: bool array ``[N]`` (gymnasium's convention): reset only these sub-envs;
        the others keep their clip and observation. ``clips`` entries of unmasked sub-envs
        are ignored; with a group size, the mask must cover whole groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from cqtml_env.env.core import DEFAULT_CACHE_SIZE, DEFAULT_NUM_DEVICES, CQTMLCore, Scores
from cqtml_env.features.cqt import CQTProcessor
from cqtml_env.versions import ENV_GOLD_VERSIONS

_RESET_OPTIONS = ("clip", "clips", "group_size", "groups", "reset_mask")


def _group_size_arg(group_size: Any, groups: Any, where: str) -> Any:
    """``group_size``, or the deprecated ``groups`` (the same number) with a warning."""
    if groups is None:
        return group_size
    import warnings

    warnings.warn(
        f"{where} 'groups' is deprecated: it is a group size, now called 'group_size' "
        "(the old name goes away in cqtml-env 0.3)",
        DeprecationWarning,
        stacklevel=3,
    )
    if group_size is not None and group_size != groups:
        raise ValueError(f"{where} got group_size={group_size!r} and groups={groups!r}; pass only group_size")
    return groups
_AUTORESET_MODES = (AutoresetMode.SAME_STEP, AutoresetMode.DISABLED)


def _autoreset_mode(mode: Any) -> AutoresetMode:
    """An ``AutoresetMode``, its value (``"SameStep"``) or name (``"same_step"``, any case)."""
    if not isinstance(mode, AutoresetMode):
        text = str(mode)
        by_name = {m.name.lower(): m for m in AutoresetMode}
        mode = next((m for m in AutoresetMode if m.value == text), None) or by_name.get(text.lower())
        if mode is None:
            raise ValueError(
                f"autoreset_mode must be one of {[m.name for m in _AUTORESET_MODES]}, got {text!r}"
            )
    if mode not in _AUTORESET_MODES:
        raise ValueError(
            f"autoreset_mode {mode.name} is not supported: episodes last one step, so NEXT_STEP "
            f"would waste every other step; use {' or '.join(m.name for m in _AUTORESET_MODES)}"
        )
    return mode


class CQTMLVectorEnv(VectorEnv):
    """N one-step CQTML episodes at a time; kwargs as :class:`~cqtml_env.env.single.CQTMLEnv` plus
    ``num_envs``, ``max_episode_steps`` (accepted for ``make_vec``; episodes always last one
    step) and ``group_size`` (default autoreset group size, see the module doc; ``groups`` is
    its deprecated 0.1 name).
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
        group_size: int | None = None,
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
        autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
        gold_version: str = ENV_GOLD_VERSIONS["CQTML-v0"],
    ) -> None:
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 (episodes last one step), got {max_episode_steps}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.num_envs = int(num_envs)
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.group_size = self._check_groups(_group_size_arg(group_size, groups, "CQTMLVectorEnv:"))
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
            gold_version=gold_version,
        )
        self.single_observation_space = self.core.observation_space
        self.single_action_space = self.core.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self._sub_rngs: list[np.random.Generator] | None = None
        self._clips: np.ndarray | None = None  # clip of each sub-env's current episode
        self._obs: np.ndarray | None = None
        self._autoreset_groups: int | None = self.group_size
        self._ended = np.zeros(self.num_envs, dtype=np.bool_)  # DISABLED: awaiting a reset
        self._last: tuple[np.ndarray, np.ndarray, Scores] | None = None  # last scored batch

    @property
    def groups(self) -> int | None:
        """Deprecated 0.1 name of :attr:`group_size`."""
        return _group_size_arg(None, self.group_size, "CQTMLVectorEnv.groups:")

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
            raise ValueError(f"group_size must be a positive integer, got {groups!r}")
        if self.num_envs % groups:
            raise ValueError(f"group_size={groups} must divide num_envs={self.num_envs}")
        return int(groups)

    def _seed_sub_rngs(self, seed: int | Sequence[int | None] | None, mask: np.ndarray) -> None:
        """(Re)seed the sub-envs' RNGs where ``mask`` is set, as SyncVectorEnv seeds its envs."""
        if self._sub_rngs is None:
            self._sub_rngs = [seeding.np_random()[0] for _ in range(self.num_envs)]
        if seed is None:
            return
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, (int, np.integer)) else list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"a list of seeds must have num_envs={self.num_envs} entries, got {len(seeds)}")
        for i in np.flatnonzero(mask):
            self._sub_rngs[i] = seeding.np_random(None if seeds[i] is None else int(seeds[i]))[0]

    def _check_reset_mask(self, mask: Any) -> np.ndarray:
        if not isinstance(mask, np.ndarray) or mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
            raise ValueError(
                f"options['reset_mask'] must be a numpy bool array of shape ({self.num_envs},), got "
                f"{type(mask).__name__}{'' if not isinstance(mask, np.ndarray) else f' {mask.dtype} {mask.shape}'}"
            )
        if not mask.any():
            raise ValueError("options['reset_mask'] must select at least one sub-env")
        return mask

    def _draw(self, groups: int | None, mask: np.ndarray | None = None) -> np.ndarray:
        """Clips for the sub-envs in ``mask`` (default all): ``[mask.sum()]``."""
        n = self.core.num_clips
        if groups is None:
            assert self._sub_rngs is not None
            rngs = self._sub_rngs if mask is None else [self._sub_rngs[i] for i in np.flatnonzero(mask)]
            return np.array([int(r.integers(n)) for r in rngs], dtype=np.int64)
        num_groups = self.num_envs // groups if mask is None else int(mask.sum()) // groups
        drawn = self.np_random.integers(n, size=num_groups)
        return np.repeat(drawn.astype(np.int64), groups)

    def _infos(
        self, clips: np.ndarray, scores: Scores | None = None, present: np.ndarray | None = None
    ) -> dict[str, Any]:
        """Batched infos in gymnasium's vector convention (array per key + ``_key`` mask,
        ``present``: the sub-envs the info is about, default all)."""
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
            info[f"_{key}"] = np.ones(n, dtype=np.bool_) if present is None else present.copy()
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
        options = dict(options or {})
        unknown = set(options) - set(_RESET_OPTIONS)
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; accepted: {list(_RESET_OPTIONS)}")
        partial = options.get("reset_mask") is not None
        if partial and self._clips is None:
            raise RuntimeError("the first reset() must reset every sub-env (no options['reset_mask'])")
        mask = self._check_reset_mask(options["reset_mask"]) if partial else np.ones(self.num_envs, np.bool_)
        self._seed_sub_rngs(seed, mask)
        if "group_size" in options or "groups" in options:
            groups = self._check_groups(
                _group_size_arg(options.get("group_size"), options.get("groups"), "reset option")
            )
        else:
            groups = self.group_size
        if options.get("clip") is not None and options.get("clips") is not None:
            raise ValueError("pass either options['clip'] or options['clips'], not both")
        if options.get("clip") is not None:
            clip = self.core.check_clip(options["clip"], "options['clip']")
            new = np.full(int(mask.sum()), clip, dtype=np.int64)
        elif options.get("clips") is not None:
            given = list(options["clips"])
            if len(given) != self.num_envs:
                raise ValueError(f"options['clips'] must have num_envs={self.num_envs} entries, got {len(given)}")
            new = np.array(
                [self.core.check_clip(given[i], f"options['clips'][{i}]") for i in np.flatnonzero(mask)],
                dtype=np.int64,
            )
        else:
            if partial and groups is not None and not (mask.reshape(-1, groups) == mask[::groups, None]).all():
                raise ValueError(
                    f"with group_size={groups}, options['reset_mask'] must cover whole groups of {groups} "
                    "consecutive sub-envs"
                )
            new = None  # drawn below, skipping clips the data set finds bad
        self._autoreset_groups = groups
        self._last = None
        if new is None:
            new, new_obs = self.core.draw_observations(
                lambda: self._draw(groups, mask if partial else None)
            )
        else:
            new_obs = self.core.observations(new)
        if partial:
            assert self._clips is not None and self._obs is not None
            clips, obs = self._clips.copy(), self._obs.copy()
            clips[mask] = new
            obs[mask] = new_obs
            self._ended &= ~mask
        else:
            clips, obs = new, new_obs
            self._ended[:] = False
        self._clips, self._obs = clips, obs
        return obs, self._infos(clips, present=mask if partial else None)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._clips is None or self._obs is None:
            raise RuntimeError("call reset() before step()")
        if self._ended.any():
            raise RuntimeError(
                f"sub-envs {np.flatnonzero(self._ended).tolist()} ended their episode at the last step and "
                "autoreset_mode is DISABLED: call reset() (or reset(options={'reset_mask': ...})) first"
            )
        acts = self.core.decode(actions, batch=self.num_envs)
        clips = self._clips
        scores = self.core.score(clips, acts)
        self._last = (clips, acts, scores)
        rewards = scores.proxy.astype(np.float64)
        terminations = np.ones(self.num_envs, dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        if self.autoreset_mode is AutoresetMode.DISABLED:
            # the scored episode itself; its observation is the one reset() returned
            self._ended[:] = True
            return self._obs, rewards, terminations, truncations, self._infos(clips, scores)

        final_info = self._infos(clips, scores)
        final_obs = np.empty(self.num_envs, dtype=object)
        for i in range(self.num_envs):
            final_obs[i] = self._obs[i]
        # SAME_STEP autoreset: every episode has just ended
        self._clips, self._obs = self.core.draw_observations(
            lambda: self._draw(self._autoreset_groups)
        )
        info = self._infos(self._clips)
        info["final_obs"] = final_obs
        info["_final_obs"] = np.ones(self.num_envs, dtype=np.bool_)
        info["final_info"] = final_info
        info["_final_info"] = np.ones(self.num_envs, dtype=np.bool_)
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
