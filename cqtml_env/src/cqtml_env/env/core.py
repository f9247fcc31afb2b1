"""The env core: what the single env and the vector env share.

The logic both :class:`cqtml_env.env.single.CQTMLEnv` and :class:`cqtml_env.env.vector.CQTMLVectorEnv` need (data
set and CQT config resolution, the in-memory per-clip LRUs of CQTs, gold features and
reward-model clip encodings, spaces, action validation and decoding, proxy + gold scoring)
lives in :class:`CQTMLCore`, so the two cannot drift apart: the vector env is "N single envs"
by construction, only batched.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

from cqtml_env.features.cqt import CQTProcessor

DEFAULT_NUM_DEVICES = 4
DEFAULT_CACHE_SIZE = 512  # clips; ~210 KB each at the default CQT shape (CQT, gold, encoding)


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores actions ``[N, D, T]`` for a CQT ``[2, F, T]`` (or ``[N, 2, F, T]``)."""

    def score(self, cqt: Any, actions: Any) -> Any: ...


@dataclass
class Scores:
    """Scores of a batch of actions: ``proxy`` is the reward; gold is for monitoring."""

    proxy: np.ndarray  # [N] float64
    gold: np.ndarray  # [N] float64
    components: dict[str, np.ndarray]  # name -> [N] float64 (mean over devices)


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


_REWARD_MODELS: dict[str, Any] = {}  # loaded once per process: SyncVectorEnv makes many envs


def load_reward(reward: Any) -> tuple[str, Any]:
    """``reward`` kwarg -> (kind, scorer): "gold" (scorer None), "model" or "custom"."""
    if isinstance(reward, str) and reward == "gold":
        return "gold", None
    if isinstance(reward, str) and reward == "model":
        if "default" not in _REWARD_MODELS:
            from cqtml_env.reward.model import RewardModel

            model = RewardModel.load_default()
            if hasattr(model, "eval"):
                model.eval()
            _REWARD_MODELS["default"] = model
        return "model", _REWARD_MODELS["default"]
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

            model = RewardModel.from_pretrained(path)
            if hasattr(model, "eval"):
                model.eval()
            _REWARD_MODELS[key] = model
        return "model", _REWARD_MODELS[key]
    if isinstance(reward, Scorer):
        return "custom", reward
    raise ValueError(
        f"unknown reward {reward!r}: expected 'model', 'gold', a path to a saved reward model, "
        "or an object with .score(cqt, actions)"
    )


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# -- the shared core -----------------------------------------------------------------------
def _group_clips(clips: np.ndarray) -> np.ndarray:
    """The clip of each group when ``clips`` is C equal runs of consecutive equal entries
    (e.g. ``[c0, c0, c1, c1]`` -> ``[c0, c1]``); otherwise ``clips`` itself (runs of one)."""
    n = len(clips)
    change = np.flatnonzero(clips[1:] != clips[:-1]) + 1
    g = int(change[0]) if len(change) else n
    if n % g == 0 and (g == 1 or (clips.reshape(-1, g) == clips[::g, None]).all()):
        return clips[::g]
    return clips


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
    ) -> None:
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
            self._levels = (np.arange(self.action_bins) / (self.action_bins - 1)).astype(np.float32)

        self.reward_kind, self.reward_model = load_reward(reward)
        # RewardModel's split API lets a batch over several clips encode each clip only once
        self._rm_split = all(
            hasattr(self.reward_model, m) for m in ("encode_clip", "score_encoded", "calibrate", "parameters")
        )
        cfg = getattr(self.reward_model, "config", None)
        for name, want in (("num_devices", self.num_devices), ("n_bins", self.n_bins)):
            have = getattr(cfg, name, None)
            if isinstance(have, int) and have != want:
                raise ValueError(
                    f"the reward model was built for {name}={have}, the env has {name}={want}; "
                    "use a matching reward model (reward=PATH) or reward='gold'"
                )
        if gold is None:
            from cqtml_env.gold.scorer import GoldScorer

            gold = GoldScorer(num_devices=self.num_devices)
        if not isinstance(gold, Scorer) or not hasattr(gold, "score_components"):
            raise TypeError("gold must have .score(cqt, actions) and .score_components(cqt, actions)")
        self.gold = gold
        # GoldScorer's batch API: every row of a step in one pass, per-clip features cached here
        self._gold_batch = all(
            callable(getattr(gold, m, None)) for m in ("score_components_batch", "features", "combine")
        )
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._gold_features: OrderedDict[int, Any] = OrderedDict()  # clip -> gold ClipFeatures
        self._encodings: OrderedDict[int, Any] = OrderedDict()  # clip -> reward-model encoding
        self._encodings_key: Any = None  # the reward model's parameters the encodings are for
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
        self._gold_features.clear()
        self._encodings.clear()

    def _lru(self, cache: OrderedDict, clip: int, make: Any) -> Any:
        hit = cache.get(clip)
        if hit is not None:
            cache.move_to_end(clip)
            return hit
        value = cache[clip] = make()
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
        return value

    def gold_features(self, clip: int) -> Any:
        """The gold scorer's per-clip features, cached by clip index (same LRU size as CQTs)."""
        return self._lru(self._gold_features, clip, lambda: self.gold.features(self.observation(clip)))

    def clip_encodings(self, clips: Sequence[int] | np.ndarray) -> list[Any]:
        """The reward model's per-clip encodings (``encode_clip`` of each clip alone, as
        ``RewardModel.score`` does for one clip), cached by clip index while the model's
        parameters are unchanged (their in-place version counters are part of the key)."""
        import torch

        rm = self.reward_model
        params = list(rm.parameters())
        key = tuple((p.data_ptr(), p._version, str(p.device)) for p in params)
        if key != self._encodings_key:
            self._encodings.clear()
            self._encodings_key = key
        dev = params[0].device

        def encode(c: int) -> Any:
            return rm.encode_clip(torch.from_numpy(self.observation(c).copy())[None].to(dev))

        return [self._lru(self._encodings, int(c), lambda c=int(c): encode(c)) for c in clips]

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
    def _proxy(self, clips: np.ndarray, uniq: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Reward-model scores ``[N]`` in one pass over all actions."""
        import torch

        rm = self.reward_model
        assert rm is not None
        with torch.inference_mode():
            if self._rm_split:
                # RewardModel: each clip's encoding (cached per clip), then one pass over all
                # actions; runs of consecutive rows on one clip (GRPO's groups) share one
                # encoding, broadcast by score_encoded instead of copied per row
                dev = next(rm.parameters()).device
                group_clips = _group_clips(clips)
                encs = self.clip_encodings(group_clips)
                enc = encs[0]
                if len(encs) > 1:
                    enc = type(enc)(*(torch.cat([getattr(e, f) for e in encs]) for f in enc.FIELDS))
                out = rm.calibrate(rm.score_encoded(enc, torch.from_numpy(actions).to(dev)))
            elif len(uniq) == 1:
                # one clip: its CQT is passed once and broadcast over the actions (a writable
                # copy: torch must not alias the read-only cache entry)
                out = rm.score(self.observation(int(uniq[0])).copy(), actions)
            else:
                out = rm.score(self.observations(clips), actions)
        return _to_numpy(out).astype(np.float64).reshape(-1)

    def score(self, clips: np.ndarray, actions: np.ndarray) -> Scores:
        """Score activations ``[N, D, T]`` on ``clips [N]``: one proxy forward pass for the whole
        batch, and one gold pass over all N rows (per-clip gold features and reward-model
        encodings come from per-clip caches). A gold scorer without the batch API
        (``score_components_batch``, ``features``, ``combine``) runs once per distinct clip."""
        clips = np.asarray(clips, dtype=np.int64).reshape(-1)
        n = len(clips)
        if actions.shape[0] != n:
            raise ValueError(f"{actions.shape[0]} actions for {n} clips")
        uniq, inverse = np.unique(clips, return_inverse=True)
        inverse = inverse.reshape(-1)
        if self._gold_batch:
            feats = [self.gold_features(int(u)) for u in uniq]
            comps = self.gold.score_components_batch(None, actions, features=[feats[i] for i in inverse])
            components = {
                name: _to_numpy(v).astype(np.float64).reshape(n, -1).mean(axis=1) for name, v in comps.items()
            }
            gold = _to_numpy(self.gold.combine(comps)).astype(np.float64).reshape(-1)
        else:
            gold, components = self._gold_per_clip(clips, uniq, actions)
        proxy = gold.copy() if self.reward_kind == "gold" else self._proxy(clips, uniq, actions)
        if proxy.shape != (n,):
            raise ValueError(f"reward model returned shape {proxy.shape} for {n} actions")
        return Scores(proxy=proxy, gold=gold, components=components)

    def _gold_per_clip(
        self, clips: np.ndarray, uniq: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Gold scorers with only ``score``/``score_components``: once per distinct clip."""
        n = len(clips)
        gold = np.empty(n, dtype=np.float64)
        components: dict[str, np.ndarray] = {}
        for u in uniq:
            rows = np.flatnonzero(clips == u)
            cqt = self.observation(int(u))
            acts = actions[rows]
            comps = self.gold.score_components(cqt, acts)
            for name, value in comps.items():
                v = _to_numpy(value).astype(np.float64).reshape(len(rows), -1)
                if name not in components:
                    components[name] = np.empty(n, dtype=np.float64)
                components[name][rows] = v.mean(axis=1)  # per-device values -> per action
            # GoldScorer.combine turns the components into the score without recomputing them
            total = self.gold.combine(comps) if hasattr(self.gold, "combine") else self.gold.score(cqt, acts)
            gold[rows] = _to_numpy(total).reshape(-1)
        return gold, components

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
