"""Fine-tune a reward model on one person's labels (``cqtml-reward train --init default``).

The person's pairs (``labeller="human"``, optionally only one labeller name) are split *by
clip id* into train and held-out test clips; the train clips are split again into fit and
early-stopping clips, so the held-out figure is never used to choose the checkpoint.
Gold-labelled pairs (from the same stores or other ``--prefs``) can be mixed into the fit
set (``mix_gold`` = their share of the fit pairs); gold pairs on held-out clip ids are
dropped (no leakage). The report puts the fine-tuned model's held-out agreement with the
person next to the starting model's on the very same pairs.

``init="default"`` is the shipped model a person's taste starts from, gold-v1's
(``TASTE_GOLD_VERSION``: it learns a taste at least as well as gold-v5's; README).

The recipe (:class:`FinetuneRecipe`, the default of ``cqtml-reward train --init default``):
the clip encoder is frozen and only the heads learn, with per-device terms added at zero
(:meth:`RewardModel.with_device_terms`: a person may want the bass lamp to pump and the treble
lamp to stay calm, which heads shared over devices can only express through band features;
lr 1e-2, up to 150 epochs, early stopping with patience 20 restores the best early-stopping
epoch), ``ensemble`` times over different
fit / early-stopping splits of the train clips (bagging by clip); the members share the clip
encoder, so their heads are stacked into one :class:`RewardModel` whose score is exactly the
members' mean (:func:`cqtml_env.reward.ensemble.stack_members`).
Before anything the labels are put in a canonical order (clips by id, shows by content, pairs
by clip and shows): how the server happened to batch its merges cannot change the result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.preferences.store import PreferenceArrays, PreferenceDataset
from cqtml_env.reward.model import TASTE_GOLD_VERSION, RewardModel
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


@dataclass
class FinetuneRecipe:
    """How ``cqtml-reward train --init default`` fine-tunes (chosen on the labels' own
    early-stopping/validation splits, never on held-out clips; see bench/bench_taste.py)."""

    lr: float = 1e-2
    """peak learning rate (one-cycle)"""
    epochs: int = 150
    """most epochs per member"""
    patience: int = 20
    """early-stopping patience (epochs without a better early-stopping log-loss)"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    ensemble: int = 4
    """fine-tunes on different fit / early-stopping clip splits, averaged (1 = a single one)"""
    freeze: tuple[str, ...] = ("band_logits", "gate")
    """parameters kept at the starting model's values (the clip encoder: members must share it)"""
    stop_fraction: float = 0.15
    """share of the train clips each member early-stops on"""
    device_terms: bool = True
    """learn per-device corrections of the shared heads (zero at the start: the starting
    model's scores; :meth:`RewardModel.with_device_terms`)"""

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(lr=self.lr, epochs=self.epochs, patience=self.patience,
                           weight_decay=self.weight_decay, seed=seed, freeze=self.freeze)


def canonical_order(arr: PreferenceArrays) -> tuple[PreferenceArrays, np.ndarray]:
    """The same labels in an order that does not depend on how they were merged into shards.

    One clip row per clip id (sorted), one candidate per (clip, show) (sorted by the show's
    bytes; shows no pair uses are dropped), pairs sorted by (clip id, shows, label,
    labeller). Returns the arrays and, for each new pair row, the old row it came from.
    """
    used = np.unique(arr.pairs)
    ids = [str(c) for c in arr.clip_ids]
    uniq = sorted({ids[c] for c in arr.cand_clip[used]})
    at = {c: i for i, c in enumerate(uniq)}
    first: dict[str, int] = {}
    for row in np.unique(arr.cand_clip[used]):
        first.setdefault(ids[row], int(row))
    clip_of = {int(row): at[ids[row]] for row in np.unique(arr.cand_clip[used])}
    keys = {int(k): (clip_of[int(arr.cand_clip[k])], arr.actions[k].tobytes()) for k in used}
    uniq_c = sorted(set(keys.values()))
    cpos = {k: i for i, k in enumerate(uniq_c)}
    new_cand = np.full(len(arr.actions), -1, dtype=np.int64)
    rep = np.zeros(len(uniq_c), dtype=np.int64)  # one old candidate row per new candidate
    for k, key in keys.items():
        new_cand[k] = cpos[key]
        rep[cpos[key]] = k
    pairs = new_cand[arr.pairs]
    order = np.array(sorted(range(len(pairs)), key=lambda r: (
        int(pairs[r, 0]), int(pairs[r, 1]), float(arr.label[r]), int(arr.labeller[r]), r)),
        dtype=np.int64)
    out = replace(
        arr,
        cqt=arr.cqt[[first[c] for c in uniq]],
        cand_clip=np.asarray([k[0] for k in uniq_c], dtype=arr.cand_clip.dtype),
        actions=arr.actions[rep], gold=arr.gold[rep], source=arr.source[rep],
        pairs=pairs[order].astype(arr.pairs.dtype), label=arr.label[order],
        labeller=arr.labeller[order], clip_ids=uniq,
    )
    return out, order


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
    recipe: FinetuneRecipe | None = None,
    ensemble: int | None = None,
    seed: int = 0,
    progress: bool = True,
    log_dir: str | os.PathLike | None = None,
) -> tuple[RewardModel, dict[str, Any]]:
    """Fine-tune ``init`` on the person's labels; see the module docs. Writes ``report.json``.

    ``recipe`` (default :class:`FinetuneRecipe`) sets the training; ``config`` replaces its
    :class:`TrainConfig` (member ``k`` gets seed ``seed * 1000 + k``; with ``config`` alone one
    member) and ``ensemble`` its member count.
    """
    from cqtml_env.reward.ensemble import stack_members
    from cqtml_env.reward.training import fit_calibration, train_reward_model

    recipe = recipe or FinetuneRecipe()
    if ensemble is None:  # a given TrainConfig alone means one run with exactly it
        ensemble = 1 if config is not None else recipe.ensemble
    k_members = int(ensemble)
    if k_members < 1:
        raise ValueError(f"ensemble must be >= 1, got {k_members}")
    if not 0.0 <= mix_gold < 1.0:
        raise ValueError(f"mix_gold must be in [0, 1), got {mix_gold}")
    if isinstance(init, str):
        init = (RewardModel.load_default(TASTE_GOLD_VERSION) if init == "default"
                else RewardModel.from_pretrained(init))
    if recipe.device_terms and not init.config.device_terms:
        init = init.with_device_terms()
    stores = [PreferenceDataset(p) for p in prefs]
    arrs = [s.load() for s in stores]
    arr = combine_arrays(arrs)
    human_rows, gold_mask, base = [], [], 0
    for s, a in zip(stores, arrs):
        human_rows.append(_person_rows(s, a, base, person))
        labs = s.manifest["labellers"]
        gold_mask.append(a.labeller != (labs.index("human") if "human" in labs else -1))
        base += len(a.pairs)
    is_human = np.zeros(len(arr.pairs), bool)
    is_human[np.concatenate(human_rows)] = True
    # only the person's and the non-human pairs matter (other people's labels are dropped)
    arr = _subset(arr, np.flatnonzero(is_human | np.concatenate(gold_mask)))
    is_human = is_human[is_human | np.concatenate(gold_mask)]
    arr, order = canonical_order(arr)
    human = np.flatnonzero(is_human[order])
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
    rest = np.sort(perm[n_test:])

    def in_ids(names: np.ndarray, pool: set) -> np.ndarray:
        return np.array([n in pool for n in names], dtype=bool)

    h_id = pair_id[human].astype(str)
    test_h = human[in_ids(h_id, test_ids)]
    train_h = human[in_ids(h_id, set(rest))]
    g_all = gold_rows[~in_ids(pair_id[gold_rows].astype(str), test_ids)]
    clips_of = lambda rows: np.unique(arr.pair_clip[rows])  # noqa: E731
    members, reports, fit_all = [], [], []
    n_stop = max(1, int(round(len(rest) * recipe.stop_fraction))) if len(rest) > 1 else 0
    for k in range(k_members):
        mseed = seed * 1000 + k
        mrng = np.random.default_rng([seed, k])
        mperm = mrng.permutation(rest)  # bagging by clip: each member early-stops elsewhere
        stop_ids, fit_ids = set(mperm[:n_stop]), set(mperm[n_stop:])
        fit_h = human[in_ids(h_id, fit_ids)]
        stop_h = human[in_ids(h_id, stop_ids)]
        g = g_all[~in_ids(pair_id[g_all].astype(str), stop_ids)]
        n_gold = int(round(len(fit_h) * mix_gold / (1.0 - mix_gold))) if mix_gold > 0 else 0
        g = mrng.choice(g, size=min(n_gold, len(g)), replace=False) if n_gold else g[:0]
        fit_clips = clips_of(np.concatenate([fit_h, g]))
        stop_clips = clips_of(stop_h) if len(stop_h) else clips_of(fit_h)[:1]
        train_view = _subset(arr, np.sort(np.concatenate([fit_h, g, stop_h])))
        cfg = replace(config, seed=mseed) if config is not None else recipe.train_config(mseed)
        if k_members > 1 and not set(("band_logits", "gate")) <= set(cfg.freeze):
            raise ValueError("an ensemble needs freeze=('band_logits', 'gate') (shared encoder)")
        model, rep = train_reward_model(
            stores[0], Path(out_dir) / f"member{k}" if k_members > 1 else out_dir, cfg,
            log_dir=log_dir, progress=progress, init=init, split=(fit_clips, stop_clips),
            arrays=train_view,
        )
        rep["pairs"] = {"fit": int(len(fit_h)), "early_stop": int(len(stop_h)),
                        "gold": int(len(g))}
        members.append(model)
        reports.append(rep)
        fit_all.append(fit_clips)
    report = dict(reports[0])
    if k_members > 1:
        model = stack_members(members)
        fit_clips = np.unique(np.concatenate(fit_all))
        cal = _Data(_subset(arr, np.sort(np.concatenate([train_h, g_all]))))
        model.config.calib_scale, model.config.calib_bias = fit_calibration(model, cal, fit_clips)
        model.config.metrics = {"members": k_members}
        model.save_pretrained(out_dir)
        report["members"] = [{"epochs_run": r["epochs_run"], "best_val": r["best_val"]}
                             for r in reports]
        report["calibration"] = {"scale": model.config.calib_scale,
                                 "bias": model.config.calib_bias}
    report["finetune"] = {"ensemble": k_members, "device_terms": model.config.device_terms, **{
        f: getattr(cfg, f) for f in ("lr", "epochs", "patience", "weight_decay", "freeze")}}
    test_view = _Data(_subset(arr, test_h))
    test_clips = clips_of(test_h)
    before = evaluate_pairs(init, test_view, test_clips)
    after = evaluate_pairs(model, test_view, test_clips)
    decided = int((arr.label[test_h] != 0.5).sum())
    report["person"] = {
        "labeller": person or "all human labellers",
        "human_pairs": int(len(human)),
        "train_pairs": int(len(train_h)),
        "fit_pairs": reports[0]["pairs"]["fit"],  # of the first member (each has its own)
        "early_stop_pairs": reports[0]["pairs"]["early_stop"],
        "gold_pairs_mixed": reports[0]["pairs"]["gold"],
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


__all__ = ["FinetuneRecipe", "canonical_order", "combine_arrays", "finetune_reward_model"]
