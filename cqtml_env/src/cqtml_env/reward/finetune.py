"""Fine-tune a reward model on one person's labels (``cqtml-reward train --init default``).

The person's pairs (``labeller="human"``, optionally only one labeller name) are split *by
clip id* into train and held-out test clips; the train clips are split again into fit and
early-stopping clips, so the held-out figure is never used to choose the checkpoint.
Gold-labelled pairs (from the same stores or other ``--prefs``) can be mixed into the fit
set (``mix_gold`` = their share of the fit pairs); gold pairs on held-out clip ids are
dropped (no leakage). The report puts the fine-tuned model's held-out agreement with the
person next to the starting model's on the very same pairs.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.preferences.store import PreferenceArrays, PreferenceDataset
from cqtml_env.reward.model import RewardModel
from cqtml_env.reward.training import TrainConfig, _Data, _write_json, evaluate_pairs


def combine_arrays(parts: list[PreferenceArrays]) -> PreferenceArrays:
    """Concatenate several stores' arrays (candidate and clip rows offset)."""
    if len(parts) == 1:
        return parts[0]
    offs_c = np.cumsum([0] + [len(p.actions) for p in parts])
    offs_k = np.cumsum([0] + [len(p.cqt) for p in parts])
    cat = np.concatenate
    return PreferenceArrays(
        cqt=cat([p.cqt for p in parts]),
        cand_clip=cat([p.cand_clip + k for p, k in zip(parts, offs_k)]),
        actions=cat([p.actions for p in parts]),
        gold=cat([p.gold for p in parts]),
        source=cat([p.source for p in parts]),
        pairs=cat([p.pairs + c for p, c in zip(parts, offs_c)]),
        label=cat([p.label for p in parts]),
        labeller=cat([p.labeller for p in parts]),
        clip_ids=sum((list(p.clip_ids) for p in parts), []),
    )


def _subset(arr: PreferenceArrays, rows: np.ndarray) -> PreferenceArrays:
    return replace(arr, pairs=arr.pairs[rows], label=arr.label[rows], labeller=arr.labeller[rows])


def _person_rows(ds: PreferenceDataset, arr: PreferenceArrays, base: int, person: str | None):
    """Global pair rows of human labels (of ``person`` if given) in one store's arrays."""
    human = ds.manifest["labellers"].index("human") if "human" in ds.manifest["labellers"] else -1
    rows = np.flatnonzero(arr.labeller == human)
    if person is None:
        return rows + base
    # sidecar rows follow the shard order, as the human pair rows do in ``load``
    names = [m["labeller"] for m in ds.label_meta()]
    if len(names) != len(rows):
        raise ValueError(f"{ds.root}: label metadata does not match the human rows")
    return rows[np.array([n == person for n in names], bool)] + base


def finetune_reward_model(
    prefs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    init: RewardModel | str = "default",
    person: str | None = None,
    mix_gold: float = 0.0,
    test_fraction: float = 0.2,
    config: TrainConfig | None = None,
    seed: int = 0,
    progress: bool = True,
    log_dir: str | os.PathLike | None = None,
) -> tuple[RewardModel, dict[str, Any]]:
    """Fine-tune ``init`` on the person's labels; see the module docs. Writes ``report.json``."""
    from cqtml_env.reward.training import train_reward_model

    if not 0.0 <= mix_gold < 1.0:
        raise ValueError(f"mix_gold must be in [0, 1), got {mix_gold}")
    if isinstance(init, str):
        init = RewardModel.load_default() if init == "default" else RewardModel.from_pretrained(init)
    stores = [PreferenceDataset(p) for p in prefs]
    arrs = [s.load() for s in stores]
    arr = combine_arrays(arrs)
    human_rows, base = [], 0
    for s, a in zip(stores, arrs):
        human_rows.append(_person_rows(s, a, base, person))
        base += len(a.pairs)
    human = np.concatenate(human_rows)
    if len(human) == 0:
        who = f"labeller {person!r}" if person else "human labels"
        raise ValueError(f"no {who} in {', '.join(map(str, prefs))}")
    gold_rows = np.setdiff1d(np.arange(len(arr.pairs)), human)
    pair_id = np.array(arr.clip_ids, dtype=object)[arr.pair_clip]
    ids = np.unique(pair_id[human].astype(str))
    if len(ids) < 3:
        raise ValueError(f"need human labels on at least 3 clips to hold some out, got {len(ids)}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(ids)
    n_test = max(1, int(round(len(ids) * test_fraction)))
    test_ids = set(perm[:n_test])
    rest = perm[n_test:]
    n_stop = max(1, int(round(len(rest) * 0.15))) if len(rest) > 1 else 0
    stop_ids, fit_ids = set(rest[:n_stop]), set(rest[n_stop:])
    def in_ids(names: np.ndarray, pool: set) -> np.ndarray:
        return np.array([n in pool for n in names], dtype=bool)

    h_id = pair_id[human].astype(str)
    fit_h = human[in_ids(h_id, fit_ids)]
    stop_h = human[in_ids(h_id, stop_ids)]
    test_h = human[in_ids(h_id, test_ids)]
    g = gold_rows[~in_ids(pair_id[gold_rows].astype(str), test_ids | stop_ids)]
    n_gold = int(round(len(fit_h) * mix_gold / (1.0 - mix_gold))) if mix_gold > 0 else 0
    g = rng.choice(g, size=min(n_gold, len(g)), replace=False) if n_gold else g[:0]
    # clip rows of the three sets (human and gold clip rows are distinct rows)
    clips_of = lambda rows: np.unique(arr.pair_clip[rows])  # noqa: E731
    fit_clips = clips_of(np.concatenate([fit_h, g]))
    stop_clips = clips_of(stop_h) if len(stop_h) else clips_of(fit_h)[:1]
    test_clips = clips_of(test_h)
    train_view = _subset(arr, np.sort(np.concatenate([fit_h, g, stop_h])))
    cfg = config or TrainConfig(lr=1e-3, epochs=30, patience=5, seed=seed)
    model, report = train_reward_model(
        stores[0], out_dir, cfg, log_dir=log_dir, progress=progress, init=init,
        split=(fit_clips, stop_clips), arrays=train_view,
    )
    test_view = _Data(_subset(arr, test_h))
    before = evaluate_pairs(init, test_view, test_clips)
    after = evaluate_pairs(model, test_view, test_clips)
    decided = int((arr.label[test_h] != 0.5).sum())
    report["person"] = {
        "labeller": person or "all human labellers",
        "human_pairs": int(len(human)),
        "fit_pairs": int(len(fit_h)),
        "gold_pairs_mixed": int(len(g)),
        "early_stop_pairs": int(len(stop_h)),
        "test_pairs": int(len(test_h)),
        "test_decided_pairs": decided,
        "test_clips": int(len(test_ids)),
        "agreement_init": before["acc_labels"],
        "agreement_finetuned": after["acc_labels"],
        "logloss_init": before["logloss"],
        "logloss_finetuned": after["logloss"],
    }
    _write_json(Path(out_dir) / "report.json", report)
    return model, report


__all__ = ["combine_arrays", "finetune_reward_model"]
