"""The seeded recipe behind the shipped reward-model weights (``cqtml-reward train-default``).

One model per gold version (``--gold-version``; shipped: gold-v5, the default, and gold-v1).

Preferences on 320 synthetic clips (64 candidates and 128 oracle-labelled pairs per clip),
Bradley–Terry training, evaluation on fresh synthetic and record-like clips, the model card,
and a load round trip. Re-running it with the same seed gives the same weights.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from cqtml_env.contract import Contract
from cqtml_env.datasets.record_like import record_like_cqts
from cqtml_env.datasets.synthetic import SyntheticMusic
from cqtml_env.preferences.generate import generate_preferences
from cqtml_env.preferences.store import PreferenceDataset
from cqtml_env.reward.evaluation import evaluate_fresh
from cqtml_env.reward.model import DEFAULT_GOLD_VERSION, RewardModel
from cqtml_env.reward.model_card import model_card
from cqtml_env.reward.training import TrainConfig, train_reward_model

DEFAULT_CLIPS = 320
DEFAULT_DATA_SEED = 1000  # training clips: SyntheticMusic(seed=1000 + seed)
FRESH_DATA_SEED = 9000  # evaluation clips, never trained on
DEFAULT_EPOCHS = 30
DEFAULT_HIDDEN = 8


def train_default(
    *,
    out: str | Path,
    work: str | Path = "runs/reward-default",
    seed: int = 0,
    clips: int = DEFAULT_CLIPS,
    epochs: int = DEFAULT_EPOCHS,
    hidden: int = DEFAULT_HIDDEN,
    threads: int = 1,
    progress: bool = True,
    gold_version: str = DEFAULT_GOLD_VERSION,
) -> RewardModel:
    """Build a shipped reward model into ``out``: ``{gold_version}.safetensors/.json`` and
    ``MODEL_CARD-{gold_version}.md``.

    ``gold_version``: the gold scorer whose ordering the oracle labels follow, whose rules the
    model's features follow, and against which the figures are measured (``docs/GOLD.md``).
    """
    from cqtml_env.gold.scorer import GoldScorer

    scorer = GoldScorer(version=gold_version)  # raises naming the known versions, before any work
    torch.set_num_threads(threads)
    t0 = time.time()
    work = Path(work)
    prefs_dir = work / (f"prefs-seed{seed}" if gold_version == "gold-v1"
                        else f"prefs-{gold_version}-seed{seed}")
    prefs = PreferenceDataset(prefs_dir) if (prefs_dir / "manifest.json").exists() else None
    if prefs is not None and sum(s.get("clips", 0) for s in prefs.shards) != clips:
        prefs = None  # an interrupted or different run: make it again
    if prefs is None:
        if prefs_dir.exists():
            shutil.rmtree(prefs_dir)
        ds = SyntheticMusic(clips, seed=DEFAULT_DATA_SEED + seed)
        prefs = generate_preferences(
            ds,
            prefs_dir,
            candidates_per_clip=64,
            pairs_per_clip=128,
            labeller="oracle",
            scorer=scorer,
            seed=seed,
            progress=progress,
            description="cqtml-reward train-default",
        )
    gen_minutes = (time.time() - t0) / 60
    cfg = TrainConfig(
        epochs=epochs, seed=seed, threads=threads, hidden=hidden, patience=8
    )
    model, report = train_reward_model(
        prefs, work / "model", cfg, log_dir=work / "tb", progress=progress
    )
    fresh = evaluate_fresh(
        model, SyntheticMusic(32, seed=FRESH_DATA_SEED).get_many(range(32)), seed=seed + 1,
        scorer=scorer,
    )
    transfer = evaluate_fresh(model, record_like_cqts(16, seed=1), seed=seed + 2, scorer=scorer)
    ms256 = time_256(model)
    model.config.metrics = {
        "heldout_pairs": report["best_val"],
        "fresh_synthetic": fresh,
        "record_like_transfer": transfer,
        "train_pairs": report["num_pairs"],
        "train_clips": report["train_clips"],
        "epochs_run": report["epochs_run"],
        "train_minutes": report["train_minutes"],
        "total_minutes": (time.time() - t0) / 60,
        "generate_minutes": gen_minutes,
        "ms_per_256_one_clip_1_thread": ms256,
        "gold_version": gold_version,
        "command": f"cqtml-reward train-default --out {out} --seed {seed} "
                   f"--gold-version {gold_version}",
    }
    out = Path(out)
    model.save_pretrained(out, gold_version)
    card = model_card(model, report, fresh, transfer)
    (out / f"MODEL_CARD-{gold_version}.md").write_text(card)
    RewardModel.from_pretrained(out / f"{gold_version}.safetensors")  # round trip check
    return model


def time_256(model: RewardModel) -> float:
    """Median ms to score 256 actions of one clip (what a GRPO group of 256 costs)."""
    c = Contract(n_bins=model.config.n_bins, num_devices=model.config.num_devices)
    cqt = torch.rand(1, *c.obs_shape) * 0.8
    acts = torch.rand(256, *c.action_shape)
    times = []
    with torch.no_grad():
        for _ in range(7):
            t = time.perf_counter()
            model(cqt, acts)
            times.append(time.perf_counter() - t)
    return float(sorted(times)[3] * 1e3)


__all__ = ["DEFAULT_CLIPS", "DEFAULT_DATA_SEED", "FRESH_DATA_SEED", "time_256", "train_default"]
