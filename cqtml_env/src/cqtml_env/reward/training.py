"""Bradley–Terry training of :class:`RewardModel` on a ``cqtml-prefs`` directory.

Batches are groups of clips: each clip's CQT is encoded once and all its candidates are
scored, then the BT loss runs over that clip's labelled pairs. The split is by clip, so
held-out pairs are on clips never trained on. Early stopping on held-out log-loss;
checkpoints are written atomically; TensorBoard scalars go to ``log_dir``. After training an
affine map raw -> gold is fitted on the training candidates and stored in the config.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cqtml_env.preferences.store import (
    ACTION_SCALE,
    PreferenceArrays,
    PreferenceDataset,
    split_clips,
)
from cqtml_env.reward.model import RewardModel, RewardModelConfig, bt_loss, spearman


@dataclass
class TrainConfig:
    """Settings of one training run (saved in the report)."""

    epochs: int = 40
    lr: float = 3e-3
    weight_decay: float = 1e-4
    clips_per_batch: int = 8
    val_fraction: float = 0.15
    patience: int = 6
    seed: int = 0
    threads: int = 1
    hidden: int = 8
    max_minutes: float | None = None
    freeze: tuple[str, ...] = ()
    """parameter-name prefixes kept fixed (e.g. ``("band_logits", "gate")``: the clip encoder)"""
    gold_version: str | None = None
    """the gold rules a new model's features follow (``RewardModelConfig.gold_version``);
    None: the version the preference data were made with (its manifest). Fine-tunes keep
    their start's."""


class _Data:
    """Torch views of the preference arrays with per-clip candidate and pair indices."""

    def __init__(self, arr: PreferenceArrays) -> None:
        self.arr = arr
        self.cqt = torch.from_numpy(arr.cqt.astype(np.float32))
        self.actions = torch.from_numpy(arr.actions.astype(np.float32) / ACTION_SCALE)
        self.gold = arr.gold.astype(np.float64)
        order = np.argsort(arr.cand_clip, kind="stable")
        bounds = np.searchsorted(arr.cand_clip[order], np.arange(len(arr.cqt) + 1))
        self.cands = [order[bounds[c] : bounds[c + 1]] for c in range(len(arr.cqt))]
        pc = arr.pair_clip
        porder = np.argsort(pc, kind="stable")
        pb = np.searchsorted(pc[porder], np.arange(len(arr.cqt) + 1))
        self.pairs_of = [porder[pb[c] : pb[c + 1]] for c in range(len(arr.cqt))]

    def batch(self, clips: np.ndarray):
        """(cqt [C], actions [M], clip index [M], pair positions [P, 2], labels [P], rows)."""
        cand = np.concatenate([self.cands[c] for c in clips])
        clip_idx = np.concatenate([np.full(len(self.cands[c]), i) for i, c in enumerate(clips)])
        pos = np.full(len(self.arr.cand_clip), -1, dtype=np.int64)
        pos[cand] = np.arange(len(cand))
        rows = np.concatenate([self.pairs_of[c] for c in clips])
        pairs = pos[self.arr.pairs[rows]]
        return (
            self.cqt[clips],
            self.actions[cand],
            torch.from_numpy(clip_idx),
            torch.from_numpy(pairs),
            torch.from_numpy(self.arr.label[rows].astype(np.float32)),
            rows,
            cand,
        )


def _scores(model: RewardModel, cqt, actions, clip_idx) -> torch.Tensor:
    enc = model.encode_clip(cqt).index(clip_idx)
    return model.score_encoded(enc, actions)


@torch.no_grad()
def evaluate_pairs(model: RewardModel, data: _Data, clips: np.ndarray, chunk: int = 16) -> dict:
    """Held-out metrics on the stored pairs and candidates of ``clips``."""
    model.eval()
    all_raw = np.zeros(len(data.arr.cand_clip))
    losses, n_pairs = 0.0, 0
    acc_l, n_l, acc_g, n_g = 0, 0, 0, 0
    rhos = []
    for s in range(0, len(clips), chunk):
        cl = clips[s : s + chunk]
        cqt, acts, cidx, pairs, labels, rows, cand = data.batch(cl)
        raw = _scores(model, cqt, acts, cidx)
        all_raw[cand] = raw.numpy()
        if len(pairs):
            diff = raw[pairs[:, 0]] - raw[pairs[:, 1]]
            losses += float(bt_loss(raw[pairs[:, 0]], raw[pairs[:, 1]], labels)) * len(pairs)
            n_pairs += len(pairs)
            decided = labels != 0.5
            acc_l += int(((diff > 0) == (labels > 0.5))[decided].sum())
            n_l += int(decided.sum())
            g = data.gold[cand]
            gdiff = torch.from_numpy(g[pairs[:, 0].numpy()] - g[pairs[:, 1].numpy()])
            nz = gdiff != 0
            acc_g += int(((diff > 0) == (gdiff > 0))[nz].sum())
            n_g += int(nz.sum())
        for c in cl:
            rows = data.cands[c]
            rhos.append(spearman(all_raw[rows], data.gold[rows]))
    return {
        "pairs": n_pairs,
        "logloss": losses / max(n_pairs, 1),
        "acc_labels": acc_l / max(n_l, 1),
        "acc_gold": acc_g / max(n_g, 1),
        "spearman_per_clip": float(np.mean(rhos)) if rhos else 0.0,
    }


@torch.no_grad()
def fit_calibration(model: RewardModel, data: _Data, clips: np.ndarray) -> tuple[float, float]:
    """Least-squares ``gold ~ scale * raw + bias`` over the candidates of ``clips``."""
    model.eval()
    raws, golds = [], []
    for s in range(0, len(clips), 16):
        cl = clips[s : s + 16]
        cqt, acts, cidx, _, _, _, cand = data.batch(cl)
        raws.append(_scores(model, cqt, acts, cidx).numpy())
        golds.append(data.gold[cand])
    r, g = np.concatenate(raws), np.concatenate(golds)
    if np.ptp(r) == 0:
        return 0.0, float(g.mean())
    scale, bias = np.polyfit(r, g, 1)
    return float(scale), float(bias)


def prefs_gold_version(ds: PreferenceDataset) -> str:
    """The gold version a preference data set was made with (gold-v1 when it does not say)."""
    gold = ds.manifest.get("gold")
    return gold.get("version", "gold-v1") if isinstance(gold, dict) else "gold-v1"


def _writer(log_dir: str | os.PathLike | None):
    if log_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is an optional extra
        return None
    return SummaryWriter(str(log_dir))


def train_reward_model(
    prefs: PreferenceDataset | str | os.PathLike,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    log_dir: str | os.PathLike | None = None,
    progress: bool = True,
    name: str = "model",
    init: RewardModel | None = None,
    split: tuple[np.ndarray, np.ndarray] | None = None,
    arrays: PreferenceArrays | None = None,
) -> tuple[RewardModel, dict[str, Any]]:
    """Train, early-stop, calibrate; write ``name.safetensors``/``.json`` and ``report.json``.

    ``init``: start from these weights (fine-tuning, e.g. ``RewardModel.load_default()``;
    a copy is trained). ``split``: (train, held-out) clip rows instead of a random split.
    ``arrays``: train on these (e.g. a filtered or combined view) instead of ``prefs.load()``.
    """
    cfg = config or TrainConfig()
    ds = prefs if isinstance(prefs, PreferenceDataset) else PreferenceDataset(prefs)
    arr = arrays if arrays is not None else ds.load()
    if len(arr.pairs) == 0:
        raise ValueError(f"{ds.root}: no usable pairs to train on")
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.threads)))  # restored at the end
    try:
        return _train(ds, arr, out_dir, cfg, log_dir, progress, name, init, split)
    finally:
        torch.set_num_threads(prev_threads)


def _train(ds, arr, out_dir, cfg: TrainConfig, log_dir, progress: bool, name: str,
           init=None, split=None):
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = _Data(arr)
    if split is not None:
        train_clips, val_clips = (np.asarray(s, dtype=np.int64) for s in split)
    else:
        train_clips, val_clips = split_clips(len(arr.cqt), cfg.val_fraction, cfg.seed)
    if init is not None:
        import copy

        model = copy.deepcopy(init)
        model.config.metrics = {}
    else:
        model = RewardModel(
            RewardModelConfig(
                num_devices=arr.actions.shape[1], n_bins=arr.cqt.shape[2], hidden=cfg.hidden,
                gold_version=cfg.gold_version or prefs_gold_version(ds),
            )
        )
    for pname, p in model.named_parameters():
        p.requires_grad_(not any(pname.startswith(f) for f in cfg.freeze))
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"freeze={cfg.freeze!r} leaves no parameter to train")
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = int(np.ceil(len(train_clips) / cfg.clips_per_batch))
    # OneCycleLR divides by its warm-up length: a short run (a few labels, few epochs) needs
    # at least one warm-up step and one step after it
    total_steps = max(3, cfg.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=max(0.1, 2.0 / total_steps)
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = _writer(log_dir)
    if writer is not None:
        writer.add_text("config", json.dumps(asdict(cfg), indent=1))
    t0 = time.time()
    history: list[dict] = []
    initial = evaluate_pairs(model, data, val_clips)
    best = {"logloss": float("inf")}
    best_state = None
    bad_epochs, step = 0, 0
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, desc="reward", unit="epoch", disable=not progress)
    except ImportError:  # pragma: no cover
        bar = None
    for epoch in range(cfg.epochs):
        model.train()
        perm = rng.permutation(train_clips)
        ep_loss = 0.0
        for s in range(0, len(perm), cfg.clips_per_batch):
            cl = perm[s : s + cfg.clips_per_batch]
            cqt, acts, cidx, pairs, labels, _, _ = data.batch(cl)
            if len(pairs) == 0:
                continue
            raw = _scores(model, cqt, acts, cidx)
            loss = bt_loss(raw[pairs[:, 0]], raw[pairs[:, 1]], labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if step < sched.total_steps - 1:
                sched.step()
            step += 1
            ep_loss += float(loss.detach()) * len(cl)
            if writer is not None:
                writer.add_scalar("train/bt_loss", float(loss.detach()), step)
        val = evaluate_pairs(model, data, val_clips)
        val["train_loss"] = ep_loss / len(perm)
        val["epoch"] = epoch + 1
        val["minutes"] = (time.time() - t0) / 60
        history.append(val)
        if writer is not None:
            for k in ("logloss", "acc_labels", "acc_gold", "spearman_per_clip"):
                writer.add_scalar(f"val/{k}", val[k], epoch + 1)
            writer.add_scalar("train/lr", sched.get_last_lr()[0], epoch + 1)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                loss=f"{val['logloss']:.3f}",
                acc=f"{val['acc_labels']:.3f}",
                gold=f"{val['acc_gold']:.3f}",
            )
        if val["logloss"] < best["logloss"] - 1e-4:
            best, bad_epochs = dict(val), 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.save_pretrained(out, name)  # atomic checkpoint of the best so far
        else:
            bad_epochs += 1
        if bad_epochs >= cfg.patience:
            break
        if cfg.max_minutes is not None and (time.time() - t0) / 60 > cfg.max_minutes:
            break
    if bar is not None:
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    scale, bias = fit_calibration(model, data, train_clips)
    model.config.calib_scale, model.config.calib_bias = scale, bias
    report = {
        "train_config": asdict(cfg),
        "prefs": str(ds.root),
        "num_pairs": int(len(arr.pairs)),
        "num_clips": int(len(arr.cqt)),
        "train_clips": int(len(train_clips)),
        "val_clips": int(len(val_clips)),
        "initial_val": initial,
        "best_val": best,
        "epochs_run": len(history),
        "history": history,
        "train_minutes": (time.time() - t0) / 60,
        "calibration": {"scale": scale, "bias": bias},
        "num_parameters": model.num_parameters(),
    }
    model.config.metrics = {k: v for k, v in best.items() if isinstance(v, (int, float))}
    model.save_pretrained(out, name)
    _write_json(out / "report.json", report)
    if writer is not None:
        writer.close()
    model.eval()
    return model, report


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


__all__ = [
    "TrainConfig",
    "evaluate_pairs",
    "fit_calibration",
    "prefs_gold_version",
    "train_reward_model",
]
