"""Build a preference directory from any clip data set: candidates, pairs, labels, shards."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.gold.scorer import GoldScorer
from cqtml_env.preferences.candidates import CandidateFactory, candidates_from_actions
from cqtml_env.preferences.labellers import LABELLERS, LabellerSpec, label_pairs
from cqtml_env.preferences.sampling import sample_pairs
from cqtml_env.preferences.store import (
    ACTION_SCALE,
    FORMAT,
    VERSION,
    PreferenceDataset,
    _save_shard,
    _write_manifest,
)

PolicyHook = Callable[[np.ndarray, dict], np.ndarray]


def generate_preferences(
    dataset: Any,
    out_dir: str | os.PathLike,
    num_clips: int | None = None,
    candidates_per_clip: int = 64,
    pairs_per_clip: int = 128,
    labeller: str | LabellerSpec = "oracle",
    temperature: float = 0.02,
    epsilon: float = 0.1,
    seed: int = 0,
    clips_per_shard: int = 64,
    near_fraction: float = 0.5,
    policy_actions: PolicyHook | None = None,
    scorer: GoldScorer | None = None,
    progress: bool = True,
    description: str = "",
) -> PreferenceDataset:
    """Build a preference directory from any clip data set (``len``, ``[i]``, ``clip_info``).

    ``policy_actions(cqt, clip_info) -> [N, D, T]`` adds external candidates (policy samples)
    to every clip, through :func:`candidates_from_actions`. Returns the opened data set.
    """
    spec = (
        labeller
        if isinstance(labeller, LabellerSpec)
        else LabellerSpec(labeller, temperature, epsilon)
    )
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    if (root / "manifest.json").exists():
        raise FileExistsError(f"{root} already holds a preference data set (manifest.json)")
    total = len(dataset) if num_clips is None else min(int(num_clips), len(dataset))
    if total < 1:
        raise ValueError("the data set has no clips")
    if candidates_per_clip < 2 or pairs_per_clip < 1:
        raise ValueError("need candidates_per_clip >= 2 and pairs_per_clip >= 1")
    scorer = scorer or GoldScorer()
    sources: list[str] = []
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "description": description,
        "num_devices": scorer.config.num_devices,
        "action_scale": ACTION_SCALE,
        "gold": scorer.config.to_dict(),
        "sources": sources,
        "labellers": list(LABELLERS),
        "generation": {
            "dataset": repr(dataset),
            "num_clips": total,
            "candidates_per_clip": candidates_per_clip,
            "pairs_per_clip": pairs_per_clip,
            "labeller": spec.__dict__,
            "seed": seed,
            "near_fraction": near_fraction,
        },
        "shards": [],
    }
    rng = np.random.default_rng(seed)
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="prefs", unit="clip", disable=not progress)
    except ImportError:  # pragma: no cover
        bar = None
    lab_id = LABELLERS.index(spec.mode)
    for start in range(0, total, clips_per_shard):
        idx = list(range(start, min(total, start + clips_per_shard)))
        cqts = _get_cqts(dataset, idx)
        cols: dict[str, list] = {k: [] for k in ("cand_clip", "actions", "gold", "source")}
        pair_cols: dict[str, list] = {"pairs": [], "label": [], "labeller": []}
        clip_ids, offset = [], 0
        for row, (i, cqt) in enumerate(zip(idx, cqts)):
            info = _clip_info(dataset, i)
            clip_ids.append(str(info.get("clip_id", f"clip-{i}")))
            factory = CandidateFactory(cqt, scorer, scorer.config.num_devices)
            acts, names = factory.sample(candidates_per_clip, rng)
            if policy_actions is not None:
                extra = candidates_from_actions(policy_actions(cqt, info), factory.num_devices)
                acts = np.concatenate([acts, extra])
                names = names + ["policy"] * len(extra)
            q = np.round(acts * ACTION_SCALE).astype(np.uint8)
            gold = scorer.score(cqt, q.astype(np.float32) / ACTION_SCALE)  # what is stored
            for n in names:
                if n not in sources:
                    sources.append(n)
            pairs = sample_pairs(gold, pairs_per_clip, rng, near_fraction)
            labels = label_pairs(
                gold[pairs[:, 0]], gold[pairs[:, 1]], spec.mode, rng, spec.temperature, spec.epsilon
            )
            cols["cand_clip"].append(np.full(len(q), row, np.int32))
            cols["actions"].append(q)
            cols["gold"].append(gold.astype(np.float32))
            cols["source"].append(np.array([sources.index(n) for n in names], np.int16))
            pair_cols["pairs"].append(pairs + offset)
            pair_cols["label"].append(labels)
            pair_cols["labeller"].append(np.full(len(pairs), lab_id, np.uint8))
            offset += len(q)
            if bar is not None:
                bar.update(1)
        name = f"shard-{len(manifest['shards']):05d}.safetensors"
        arrays = {k: np.concatenate(v) for k, v in {**cols, **pair_cols}.items()}
        arrays["cqt"] = np.asarray(cqts, dtype=np.float16)
        _save_shard(root / name, arrays)
        manifest["shards"].append(
            {
                "file": name,
                "clips": len(idx),
                "clip_ids": clip_ids,
                "candidates": int(offset),
                "pairs": int(len(arrays["pairs"])),
            }
        )
        _write_manifest(root, manifest)  # usable after every shard
    if bar is not None:
        bar.close()
    return PreferenceDataset(root)


def _get_cqts(dataset: Any, idx: list[int]) -> np.ndarray:
    if hasattr(dataset, "get_many") and getattr(dataset, "output_format", "cqt") == "cqt":
        return np.asarray(dataset.get_many(idx), dtype=np.float32)
    get = getattr(dataset, "get_cqt", None) or dataset.__getitem__
    return np.stack([np.asarray(get(i), dtype=np.float32) for i in idx])


def _clip_info(dataset: Any, i: int) -> dict:
    info = getattr(dataset, "clip_info", None)
    return dict(info(i)) if info is not None else {"clip_id": f"clip-{i}"}


__all__ = ["PolicyHook", "generate_preferences"]
