"""The env core: what the single env and the vector env share.

What both :class:`cqtml_env.env.single.CQTMLEnv` and
:class:`cqtml_env.env.vector.CQTMLVectorEnv` need (data set and CQT config resolution, the
contract, the in-memory per-clip LRU of CQTs, spaces, action validation and decoding, and
scoring through the one scoring path :class:`~cqtml_env.reward.scoring.ShowScorer`) lives in
:class:`CQTMLCore`, so the two cannot drift apart: the vector env is "N single envs" by
construction, only batched.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

from cqtml_env.contract import DEFAULT_LEVELS, DEFAULT_NUM_DEVICES, Contract, level_grid
from cqtml_env.features.cqt import CQTProcessor
from cqtml_env.reward.scoring import (
    DEFAULT_CACHE_SIZE,
    Scores,
    ShowScorer,
    check_reward_contract,
    load_reward,
)
from cqtml_env.versions import ENV_GOLD_VERSIONS


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores actions ``[N, D, T]`` for a CQT ``[2, F, T]`` (or ``[N, 2, F, T]``)."""

    def score(self, cqt: Any, actions: Any) -> Any: ...


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu()
        if x.is_floating_point():  # bf16/fp16 have no (or a lossy) numpy dtype: float32
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


# -- construction helpers ------------------------------------------------------------------
def resolve_processor(
    max_duration: float | None, cqt: CQTProcessor | Mapping[str, Any] | None
) -> CQTProcessor | None:
    """``cqt`` (a processor or CQTProcessor kwargs) + ``max_duration`` -> a processor (or None)."""
    if isinstance(cqt, CQTProcessor):
        if max_duration is not None and float(max_duration) != cqt.max_duration:
            raise ValueError(
                f"max_duration={max_duration} contradicts the given processor's "
                f"max_duration={cqt.max_duration}; pass only one"
            )
        return cqt
    if cqt is not None and not isinstance(cqt, Mapping):
        raise TypeError(f"cqt must be a CQTProcessor or a dict of its kwargs, got {type(cqt)}")
    kwargs = dict(cqt or {})
    if max_duration is not None:
        if "max_duration" in kwargs and float(kwargs["max_duration"]) != float(max_duration):
            raise ValueError("max_duration is given twice (argument and cqt dict) with different values")
        kwargs["max_duration"] = float(max_duration)
    return CQTProcessor(**kwargs) if kwargs else None


def resolve_dataset(
    dataset: Any = None,
    max_duration: float | None = None,
    cqt: CQTProcessor | Mapping[str, Any] | None = None,
    dataset_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """``None`` -> SyntheticMusic; strings -> ``make_dataset(spec, **dataset_kwargs)``;
    data set objects pass through (their CQT config must match the requested one)."""
    processor = resolve_processor(max_duration, cqt)
    kwargs = dict(dataset_kwargs or {})
    if processor is not None:
        kwargs["processor"] = processor
    if dataset is None:
        from cqtml_env.datasets.synthetic import SyntheticMusic

        return SyntheticMusic(**kwargs)
    if isinstance(dataset, (str, os.PathLike)):
        from cqtml_env.datasets.spec import make_dataset

        return make_dataset(str(dataset), **kwargs)
    if dataset_kwargs:
        raise ValueError("dataset_kwargs only applies when dataset is None or a spec string")
    for attr in ("__len__", "__getitem__", "clip_info", "processor"):
        if not hasattr(dataset, attr):
            raise TypeError(
                f"dataset must be None, a spec string ('synthetic:64', 'folder:PATH', ...) or a "
                f"clip data set with len(), [i], clip_info(i) and .processor; {type(dataset).__name__} "
                f"has no {attr!r}"
            )
    if processor is not None and dataset.processor.config != processor.config:
        raise ValueError(
            f"the data set's CQT config ({dataset.processor.config}) differs from the requested "
            f"one ({processor.config}); build the data set with that processor instead"
        )
    return dataset


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# -- the shared core -----------------------------------------------------------------------
class CQTMLCore:
    """Data, spaces, cache and scoring shared by :class:`CQTMLEnv` and the vector env."""

    def __init__(
        self,
        dataset: Any = None,
        num_devices: int = DEFAULT_NUM_DEVICES,
        max_duration: float | None = None,
        cqt: CQTProcessor | Mapping[str, Any] | None = None,
        reward: Any = "model",
        action_bins: int | None = None,
        gold: Any = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        dataset_kwargs: Mapping[str, Any] | None = None,
        gold_version: str = ENV_GOLD_VERSIONS["CQTML-v0"],
    ) -> None:
        from cqtml_env.gold.scorer import GOLD_VERSIONS

        if gold_version not in GOLD_VERSIONS:
            raise ValueError(f"unknown gold_version {gold_version!r}; known: {GOLD_VERSIONS}")
        self.gold_version = gold_version
        self.num_devices = _check_int("num_devices", num_devices, 1)
        self.action_bins = None if action_bins is None else _check_int("action_bins", action_bins, 2)
        self.cache_size = _check_int("cache_size", cache_size, 1)
        self.dataset = resolve_dataset(dataset, max_duration, cqt, dataset_kwargs)
        if len(self.dataset) == 0:
            raise ValueError(f"the data set {self.dataset!r} has no clips")
        self.processor: CQTProcessor = self.dataset.processor
        self.obs_shape: tuple[int, int, int] = tuple(int(s) for s in self.processor.shape)  # type: ignore[assignment]
        self.n_bins = self.obs_shape[1]
        self.num_frames = self.obs_shape[2]
        self.action_shape = (self.num_devices, self.num_frames)

        self.observation_space = spaces.Box(0.0, 1.0, self.obs_shape, dtype=np.float32)
        if self.action_bins is None:
            self.action_space: spaces.Space = spaces.Box(0.0, 1.0, self.action_shape, dtype=np.float32)
            self._levels = None
        else:
            size = self.num_devices * self.num_frames
            self.action_space = spaces.MultiDiscrete(np.full(size, self.action_bins, dtype=np.int64))
            self._levels = level_grid(self.action_bins)

        self.contract = Contract.from_processor(
            self.processor, num_devices=self.num_devices, levels=self.action_bins or DEFAULT_LEVELS
        )
        self.reward_kind, self.reward_model = load_reward(reward, gold_version)
        check_reward_contract(self.reward_model, self.contract)
        if gold is None:
            from cqtml_env.gold.scorer import GoldScorer

            # the gold scorer reasons in seconds: it gets the frame rate of this env's CQT
            gold = GoldScorer(num_devices=self.num_devices, frame_rate=self.contract.frame_rate,
                              version=gold_version)
        if not isinstance(gold, Scorer) or not hasattr(gold, "score_components"):
            raise TypeError("gold must have .score(cqt, actions) and .score_components(cqt, actions)")
        gold_rate = getattr(getattr(gold, "config", None), "frame_rate", None)
        if isinstance(gold_rate, float) and gold_rate != self.contract.frame_rate:
            raise ValueError(
                f"the gold scorer assumes {gold_rate:g} frames/s but this env's CQT has "
                f"{self.contract.frame_rate:g}; build it with frame_rate=processor.frame_rate"
            )
        self.gold = gold
        # the one scoring path (env, vector env, evaluation): per-clip states cached inside
        self.scoring = ShowScorer(self.reward_model, gold, cache_size=self.cache_size)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._ids: dict[int, Any] = {}

    # -- clips ---------------------------------------------------------------------------
    @property
    def num_clips(self) -> int:
        return len(self.dataset)

    def check_clip(self, clip: Any, what: str = "clip") -> int:
        """A valid clip index or a ValueError that says the valid range."""
        n = self.num_clips
        if isinstance(clip, bool) or not isinstance(clip, (int, np.integer)) or not 0 <= clip < n:
            raise ValueError(f"{what} must be an integer clip index in [0, {n}), got {clip!r}")
        return int(clip)

    def clip_id(self, clip: int) -> Any:
        if clip not in self._ids:
            self._ids[clip] = self.dataset.clip_info(clip).get("clip_id", clip)
        return self._ids[clip]

    def _remember(self, clip: int, arr: np.ndarray) -> np.ndarray:
        arr = np.array(arr, dtype=np.float32)  # our own copy: the data set may reuse its array
        if arr.shape != self.obs_shape:
            raise ValueError(f"data set clip {clip} has shape {arr.shape}, expected {self.obs_shape}")
        if not (np.all(np.isfinite(arr)) and arr.min() >= 0.0 and arr.max() <= 1.0):
            info = self.dataset.clip_info(clip)
            raise ValueError(
                f"data set clip {clip} ({info.get('clip_id', '?')}, source "
                f"{info.get('source', '?')}) has values outside the observation space "
                f"(finite, in [0, 1]): min {np.nanmin(arr):g}, max {np.nanmax(arr):g}, "
                f"{int(np.sum(~np.isfinite(arr)))} non-finite"
            )
        arr.flags.writeable = False  # cached: nobody may edit it in place
        self._cache[clip] = arr
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return arr

    def observation(self, clip: int) -> np.ndarray:
        """The clip's CQT from the LRU (read-only; copy before handing it out)."""
        arr = self._cache.get(clip)
        if arr is None:
            return self._remember(clip, self.dataset[clip])
        self._cache.move_to_end(clip)
        return arr

    def observations(self, clips: Sequence[int] | np.ndarray) -> np.ndarray:
        """A fresh ``[N, 2, F, T]`` stack; cache misses are loaded in one ``get_many`` call."""
        clips = [int(c) for c in clips]
        missing = sorted({c for c in clips if c not in self._cache})
        if len(missing) > 1 and hasattr(self.dataset, "get_many"):
            for c, arr in zip(missing, self.dataset.get_many(missing)):
                self._remember(c, arr)
        out = np.empty((len(clips), *self.obs_shape), dtype=np.float32)
        for k, c in enumerate(clips):
            out[k] = self.observation(c)
        return out

    def draw_observations(self, draw: Any, tries: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """``(clips, observations)`` for randomly drawn clips, redrawing when the data set
        finds a drawn clip bad (``BadClipError``: already skipped, counted and reported in
        the data set), so one bad file never stops a long run. ``draw()`` -> clip indices."""
        from cqtml_env.features.audio import AudioLoadError

        last: Exception | None = None
        for _ in range(tries):
            clips = np.asarray(draw(), dtype=np.int64)
            try:
                return clips, self.observations(clips)
            except AudioLoadError as exc:
                last = exc
        bad = getattr(self.dataset, "bad_clips", {})
        raise RuntimeError(
            f"{tries} draws in a row hit bad clips ({len(bad)} of {self.num_clips} known bad; "
            f"last: {last}); fix or remove the files listed in the data set's .skipped"
        ) from last

    def clear_cache(self) -> None:
        self._cache.clear()
        self.scoring.clear()


    # -- actions -------------------------------------------------------------------------
    def describe_action_space(self, batch: int | None = None) -> str:
        lead = "" if batch is None else f"{batch}, "
        d, t = self.action_shape
        if self.action_bins is None:
            return f"a float array of shape ({lead}{d}, {t}) with values in [0, 1]"
        k = self.action_bins
        return (
            f"an integer array of shape ({lead}{d * t},) (or ({lead}{d}, {t})) with level "
            f"indices in [0, {k - 1}] (level i = activation i/{k - 1})"
        )

    def decode(self, action: Any, batch: int | None = None) -> np.ndarray:
        """Validate and convert actions to activations ``float32 [N, D, T]`` (N = 1 unbatched).

        Raises ValueError naming the expected shape and range for anything the action space
        would not contain (shape, dtype, NaN/inf, out of range).
        """
        try:
            a = _to_numpy(action)
        except Exception as exc:  # ragged lists etc.
            raise ValueError(f"action must be {self.describe_action_space(batch)}; got {type(action)}") from exc
        lead = () if batch is None else (batch,)
        d, t = self.action_shape

        def bad(why: str) -> ValueError:
            return ValueError(f"action must be {self.describe_action_space(batch)}; {why}")

        if self.action_bins is None:
            if a.shape != (*lead, d, t):
                raise bad(f"got shape {a.shape}")
            if not np.issubdtype(a.dtype, np.floating):
                raise bad(f"got dtype {a.dtype}")
            if not np.all(np.isfinite(a)):
                raise bad("got NaN or inf values")
            lo, hi = float(a.min()), float(a.max())
            if lo < 0.0 or hi > 1.0:
                raise bad(f"got values in [{lo:g}, {hi:g}]")
            return a.astype(np.float32).reshape(-1, d, t)  # a copy: callers may reuse theirs

        if a.shape not in ((*lead, d * t), (*lead, d, t)):
            raise bad(f"got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise bad(f"got dtype {a.dtype}")
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > self.action_bins - 1:
            raise bad(f"got indices in [{lo}, {hi}]")
        assert self._levels is not None
        return self._levels[a.reshape(-1, d, t)]

    # -- scoring -------------------------------------------------------------------------
    def score(self, clips: np.ndarray, actions: np.ndarray) -> Scores:
        """Score activations ``[N, D, T]`` on ``clips [N]`` through the one scoring path
        (:class:`~cqtml_env.reward.scoring.ShowScorer`): one proxy and one gold pass for the
        whole batch, per-clip gold features and reward-model encodings cached."""
        return self.scoring.score(clips, actions, self.observation)

    def step_info(self, clip: int, scores: Scores, k: int) -> dict[str, Any]:
        """Single-env ``info`` of row ``k`` (the vector env builds the same keys batched)."""
        info: dict[str, Any] = {
            "clip_index": clip,
            "clip_id": self.clip_id(clip),
            "proxy_score": float(scores.proxy[k]),
            "gold_score": float(scores.gold[k]),
        }
        for name, value in scores.components.items():
            info[f"gold/{name}"] = float(value[k])
        return info

    def reset_info(self, clip: int) -> dict[str, Any]:
        return {"clip_index": clip, "clip_id": self.clip_id(clip)}

    def render(self, clip: int, activations: np.ndarray | None, scores: tuple[float, float] | None) -> np.ndarray:
        from cqtml_env.env.render import render_activations

        subtitle = "NO ACTION YET"
        if scores is not None:
            source = {"gold": "GOLD", "model": "REWARD MODEL", "custom": "CUSTOM"}[self.reward_kind]
            subtitle = f"REWARD {scores[0]:.3f} ({source})   GOLD {scores[1]:.3f}"
        return render_activations(
            self.observation(clip),
            activations,
            frame_rate=self.processor.frame_rate,
            title=f"CLIP {self.clip_id(clip)}  (#{clip})",
            subtitle=subtitle,
            num_devices=self.num_devices,
        )


__all__ = ["CQTMLCore", "Scores", "Scorer", "load_reward", "resolve_dataset", "resolve_processor"]
