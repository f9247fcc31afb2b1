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

from cqtml_env.prefs import ACTION_SCALE, PreferenceArrays, PreferenceDataset, split_clips
from cqtml_env.reward_model import RewardModel, RewardModelConfig, bt_loss, spearman


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
) -> tuple[RewardModel, dict[str, Any]]:
    """Train, early-stop, calibrate; write ``name.safetensors``/``.json`` and ``report.json``."""
    cfg = config or TrainConfig()
    ds = prefs if isinstance(prefs, PreferenceDataset) else PreferenceDataset(prefs)
    arr = ds.load()
    if len(arr.pairs) == 0:
        raise ValueError(f"{ds.root}: no usable pairs to train on")
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.threads)))  # restored at the end
    try:
        return _train(ds, arr, out_dir, cfg, log_dir, progress, name)
    finally:
        torch.set_num_threads(prev_threads)


def _train(ds, arr, out_dir, cfg: TrainConfig, log_dir, progress: bool, name: str):
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = _Data(arr)
    train_clips, val_clips = split_clips(len(arr.cqt), cfg.val_fraction, cfg.seed)
    model = RewardModel(
        RewardModelConfig(
            num_devices=arr.actions.shape[1], n_bins=arr.cqt.shape[2], hidden=cfg.hidden
        )
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = int(np.ceil(len(train_clips) / cfg.clips_per_batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * steps_per_epoch), pct_start=0.1
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


# -- evaluation on fresh clips ----------------------------------------------------------
def evaluate_fresh(
    model: RewardModel,
    cqts: np.ndarray,
    candidates: int = 64,
    seed: int = 0,
    scorer=None,
    near_fraction: float = 0.5,
    pairs_per_clip: int = 128,
) -> dict:
    """Spearman and pairwise agreement with gold on new candidates of new clips."""
    from cqtml_env.candidates import CandidateFactory
    from cqtml_env.gold import GoldScorer
    from cqtml_env.prefs import sample_pairs

    scorer = scorer or GoldScorer(num_devices=model.config.num_devices)
    rng = np.random.default_rng(seed)
    rhos, pooled_r, pooled_g = [], [], []
    agree, total, agree_all, total_all = 0, 0, 0, 0
    for cqt in cqts:
        acts, _ = CandidateFactory(cqt, scorer, model.config.num_devices).sample(candidates, rng)
        gold = scorer.score(cqt, acts)
        pred = model.score(cqt, acts)
        rhos.append(spearman(pred, gold))
        pooled_r.append(pred)
        pooled_g.append(gold)
        pairs = sample_pairs(gold, pairs_per_clip, rng, near_fraction)
        gd = gold[pairs[:, 0]] - gold[pairs[:, 1]]
        pd = pred[pairs[:, 0]] - pred[pairs[:, 1]]
        nz = gd != 0
        agree += int(((pd > 0) == (gd > 0))[nz].sum())
        total += int(nz.sum())
        iu = np.triu_indices(len(gold), 1)
        gd_all = gold[iu[0]] - gold[iu[1]]
        pd_all = pred[iu[0]] - pred[iu[1]]
        nz = gd_all != 0
        agree_all += int(((pd_all > 0) == (gd_all > 0))[nz].sum())
        total_all += int(nz.sum())
    r, g = np.concatenate(pooled_r), np.concatenate(pooled_g)
    return {
        "clips": int(len(cqts)),
        "spearman_per_clip": float(np.mean(rhos)),
        "spearman_pooled": spearman(r, g),
        "acc_gold_sampled_pairs": agree / max(total, 1),
        "acc_gold_all_pairs": agree_all / max(total_all, 1),
        "calibrated_mae": float(np.abs(r - g).mean()),
    }


def record_like_audio(seed: int, duration: float = 5.0, sr: int = 22050) -> np.ndarray:
    """Non-synthetic-style test audio, made differently from ``SyntheticMusic``.

    Karplus–Strong plucked strings and a physically-ish kick (pitch-swept, clicky), band-pass
    noise snares and shakers, human timing (swing, jitter), a room (convolution with decaying
    noise), a noise floor at about -60 dB, a soft-clipping master bus and stereo width:
    the texture of a recording rather than clean wavetables.
    """
    rng = np.random.default_rng([seed, 77])
    n = int(duration * sr)
    out = np.zeros((2, n), np.float64)
    bpm = rng.uniform(70, 170)
    beat = 60.0 / bpm
    swing = rng.uniform(0.0, 0.12) * beat

    def put(sig: np.ndarray, start: float, pan: float, gain: float) -> None:
        s = int(start * sr)
        if s >= n or s < 0:
            return
        e = min(n, s + len(sig))
        out[0, s:e] += gain * np.sqrt(1 - pan) * sig[: e - s]
        out[1, s:e] += gain * np.sqrt(pan) * sig[: e - s]

    def pluck(freq: float, dur: float, bright: float) -> np.ndarray:
        from scipy.signal import lfilter

        period = max(2, int(sr / freq))
        m = int(dur * sr)
        excite = np.zeros(m)
        excite[:period] = rng.uniform(-1, 1, min(period, m))
        den = np.zeros(period + 2)
        den[0], den[period], den[period + 1] = 1.0, -0.5 * bright, -0.5 * bright
        y = lfilter([1.0], den, excite)  # Karplus-Strong: a damped, averaging delay line
        return y * np.exp(-np.arange(m) / (sr * dur * 0.6))

    def noise_hit(lo: float, hi: float, dur: float, decay: float) -> np.ndarray:
        from scipy.signal import butter, sosfilt

        m = int(dur * sr)
        sos = butter(2, [lo, min(hi, sr / 2 - 100)], btype="band", fs=sr, output="sos")
        return sosfilt(sos, rng.standard_normal(m)) * np.exp(-np.arange(m) / (decay * sr))

    tt = np.arange(int(0.35 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(45 + 120 * np.exp(-tt * 35)) / sr) * np.exp(-tt * 9)
    kick[:40] += rng.standard_normal(40) * 0.3
    root = rng.uniform(40, 65)
    scale = (
        np.array([0, 2, 3, 5, 7, 8, 10]) if rng.random() < 0.5 else np.array([0, 2, 4, 5, 7, 9, 11])
    )
    t, k = rng.uniform(0, 0.3), 0
    drop = (rng.uniform(1.5, 3.5), rng.uniform(0.4, 1.0)) if rng.random() < 0.4 else (99, 0)
    dense = rng.random() < 0.6
    while t < duration:
        jit = rng.normal(0, 0.008)
        if not (drop[0] <= t < drop[0] + drop[1]):
            if dense or k % 2 == 0:
                put(kick, t + jit, 0.5, 0.45 * rng.uniform(0.8, 1.0))
            if k % 2 == 1:
                put(noise_hit(900, 5000, 0.25, 0.05), t + jit, 0.45, 0.25)
            for h in range(2 if dense else 1):
                put(
                    noise_hit(6000, 10000, 0.08, 0.015),
                    t + h * beat / 2 + (swing if h else 0),
                    0.7,
                    0.12,
                )
            deg = int(rng.integers(0, 7))
            f = root * 2 ** (scale[deg] / 12)
            put(pluck(f, beat * 0.9, 0.996), t + jit, 0.4, 0.35)
            if rng.random() < 0.6:
                f2 = root * 4 * 2 ** (scale[int(rng.integers(0, 7))] / 12)
                put(pluck(f2, beat * 1.5, 0.998), t + beat / 2 + jit, 0.65, 0.15)
        t += beat
        k += 1
    ir_len = int(rng.uniform(0.2, 0.8) * sr)
    ir = rng.standard_normal((2, ir_len)) * np.exp(-np.arange(ir_len) / (0.15 * ir_len))
    ir[:, 0] = 1.0
    from scipy.signal import fftconvolve

    wet = np.stack([fftconvolve(out[c], ir[c] * 0.03)[:n] for c in range(2)])
    mix = out + wet + 1e-3 * rng.standard_normal((2, n))
    level = rng.uniform(0.4, 0.9)
    mix = np.tanh(mix / (np.abs(mix).max() + 1e-9) * 1.5) * level  # master bus saturation
    return mix.astype(np.float32)


def record_like_cqts(num: int, seed: int = 0) -> np.ndarray:
    """CQTs of :func:`record_like_audio` clips: ``[num, 2, 84, 216]``."""
    from cqtml_env.cqt import CQTProcessor

    proc = CQTProcessor()
    return proc.batch([record_like_audio(seed * 1000 + i) for i in range(num)])


__all__ = [
    "TrainConfig",
    "evaluate_fresh",
    "evaluate_pairs",
    "fit_calibration",
    "record_like_audio",
    "record_like_cqts",
    "train_reward_model",
]
