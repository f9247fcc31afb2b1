"""What the GRPO, SB3 and evaluation scripts share: data splits, policy construction, and
the held-out evaluation (gold + proxy score of a policy beside the baselines)."""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cqtml_env import Contract, CQTProcessor, GoldScorer, SyntheticMusic, make_dataset

# Synthetic music: training clips come from one generator seed, held-out clips from another,
# so "held-out" really means music the agent never heard.
SYNTH_TRAIN_SEED = 0
SYNTH_EVAL_SEED = 1_000_003


@dataclass
class DataSplit:
    train: Any
    eval: Any
    train_indices: np.ndarray
    eval_indices: np.ndarray
    processor: CQTProcessor


def split_data(
    spec: str,
    max_duration: float = 5.0,
    eval_clips: int = 32,
    train_clips: int = 512,
    seed: int = 0,
    cache_dir: str | None = None,
) -> DataSplit:
    """Train / held-out clips for a data spec (``synthetic``, ``folder:PATH``, ``fma:PATH``...).

    Synthetic: separate generator seeds. Real data: a seeded permutation of clips grouped
    by source file, so no file contributes to both sides.
    """
    processor = CQTProcessor(max_duration=max_duration)
    kw: dict[str, Any] = {"processor": processor}
    if cache_dir:
        kw["cache"] = cache_dir
    if spec == "synthetic" or spec.startswith("synthetic:"):
        n = int(spec.split(":", 1)[1]) if ":" in spec else train_clips
        train = SyntheticMusic(num_clips=n, seed=SYNTH_TRAIN_SEED, **kw)
        held = SyntheticMusic(num_clips=eval_clips, seed=SYNTH_EVAL_SEED, **kw)
        return DataSplit(train, held, np.arange(len(train)), np.arange(len(held)), processor)
    ds = make_dataset(spec, **kw)
    sources = [str(ds.clip_info(i).get("source", i)) for i in range(len(ds))]
    files = sorted(set(sources))
    rng = np.random.default_rng(seed)
    rng.shuffle(files)
    held_files: set[str] = set()
    count = 0
    for f in files:  # hold out whole files until we have enough clips
        if count >= min(eval_clips, len(ds) // 4 or 1):
            break
        held_files.add(f)
        count += sources.count(f)
    eval_idx = np.array([i for i, s in enumerate(sources) if s in held_files], dtype=int)
    train_idx = np.array([i for i, s in enumerate(sources) if s not in held_files], dtype=int)
    if len(train_idx) == 0:
        raise ValueError(f"data {spec!r} has too few files to hold some out for evaluation")
    return DataSplit(ds, ds, train_idx, eval_idx, processor)


def make_policy(
    kind: str,
    cqt_shape: tuple[int, int, int],
    num_devices: int,
    distribution_size: int = 32,
    device: str = "auto",
    frame_rate: float | None = None,
    **kwargs: Any,
):
    """A policy by name from :mod:`cqtml_policy.registry` (``vit`` | ``cnn`` -> fresh and
    trainable; ``band-follow`` | ``random`` -> baselines; the registry's aliases such as
    ``cqt_cnn`` too); anything else is taken as a saved policy / checkpoint directory. ``frame_rate``: the CQT's (the
    band-follower's attack, decay and flash limit are in seconds; default: the contract's)."""
    import cqtml_policy as P
    from cqtml_policy import registry

    try:
        name = registry.canonical_name(kind)
    except ValueError:
        name = None
    if name is not None:
        if name == "band-follow" and frame_rate is not None:
            kwargs["frame_rate"] = frame_rate
        return registry.create_policy(
            name, cqt_shape, num_devices=num_devices, distribution_size=distribution_size,
            device=device, **kwargs,
        )
    if not Path(kind).exists():
        raise ValueError(
            f"policy {kind!r} is neither one of {registry.list_policies()} nor a checkpoint dir"
        )
    return P.load_policy(kind, device=device)


def policy_actions(policy: Any, cqts: np.ndarray, temperature: float = 0.0, batch_size: int = 16) -> np.ndarray:
    """Actions ``[N, D, T]`` (float32) for CQTs ``[N, 2, F, T]``; temperature 0 = greedy."""
    out = []
    with torch.no_grad():
        for s in range(0, len(cqts), batch_size):
            chunk = torch.as_tensor(cqts[s : s + batch_size])
            acts = policy.generate_actions(chunk, num_actions_per_state=1, temperature=temperature)
            out.extend(a[0].detach().float().cpu().numpy() for a in acts)
    return np.stack(out).astype(np.float32)


@dataclass
class EvalResult:
    gold: np.ndarray
    proxy: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    """independent per-clip metrics from the audio (agents/metrics.py); empty without audio"""

    def metrics_summary(self) -> dict[str, float]:
        from agents.metrics import summarise

        return summarise(self.metrics) if self.metrics else {}

    def summary(self) -> dict[str, float]:
        n = len(self.gold)
        half = 1.96 * float(self.gold.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
        return {"gold_mean": float(self.gold.mean()), "gold_ci95": half, "proxy_mean": float(self.proxy.mean())}


class Evaluator:
    """Scores policies on a fixed set of held-out clips with the gold scorer and the proxy.

    Scoring goes through the env's own path (``cqtml_env.reward.scoring.ShowScorer``), with a
    gold scorer for ``num_devices`` at the data set's frame rate and the proxy ``reward``
    resolved like the env's (``"model"`` = the shipped reward model, a saved model's path,
    ``"gold"``, or an object). CQTs of the clips are computed once; baselines are scored once
    and cached. With ``audio_metrics`` (default) each clip's audio is read once too and reduced
    to the few curves the independent metrics need (``metrics.AudioFeatures``: a few KB per
    clip, the waveform is not kept); every result then carries those metrics as well.
    """

    def __init__(self, dataset: Any, indices: np.ndarray, reward: Any = "model",
                 num_devices: int = 4, *, reward_model: Any = None,
                 audio_metrics: bool = True, gold_version: str = "gold-v1") -> None:
        from cqtml_env.reward.model import shipped_version_for
        from cqtml_env.reward.scoring import ShowScorer, check_reward_contract, load_reward

        self.indices, cqts, audio, self.skipped = _usable_clips(
            dataset, indices, audio_metrics and hasattr(dataset, "get_audio"))
        self.cqts = np.stack(cqts).astype(np.float32)
        self.audio_features: list | None = None
        if audio is not None:
            from agents.metrics import audio_features

            self.audio_features = [
                audio_features(a, processor=dataset.processor, num_devices=num_devices)
                for a in audio
            ]
        self.clip_ids = [str(dataset.clip_info(int(i)).get("clip_id", i)) for i in self.indices]
        self.num_devices = num_devices
        self.contract = Contract.from_processor(dataset.processor, num_devices=num_devices)
        self.gold = GoldScorer(num_devices=num_devices, frame_rate=self.contract.frame_rate,
                               version=gold_version)
        # reward="model": the shipped model that goes with this gold version
        _, self.reward_model = load_reward(reward_model if reward_model is not None else reward,
                                           shipped_version_for(gold_version))
        check_reward_contract(self.reward_model, self.contract)
        self.scoring = ShowScorer(self.reward_model, self.gold, cache_size=max(1, len(self.indices)))
        self._baselines: dict[str, EvalResult] = {}

    def score_actions(self, actions: np.ndarray) -> EvalResult:
        """Gold, proxy and gold components (mean over devices, as the env's info has them)
        of one action per held-out clip, through the env's scoring path."""
        s = self.scoring.score(np.arange(len(self.cqts)), actions, self.cqts.__getitem__)
        metrics: dict[str, np.ndarray] = {}
        if self.audio_features is not None:
            from agents.metrics import metrics_batch

            metrics = metrics_batch(actions, self.audio_features)
        return EvalResult(s.gold, s.proxy, s.components, metrics)

    def evaluate(self, policy: Any, temperature: float = 0.0) -> EvalResult:
        return self.score_actions(policy_actions(policy, self.cqts, temperature=temperature))

    def baseline(self, name: str) -> EvalResult:
        if name not in self._baselines:
            torch.manual_seed(0)
            policy = make_policy(
                name, self.cqts.shape[1:], self.num_devices, frame_rate=self.contract.frame_rate
            )
            self._baselines[name] = self.evaluate(policy, temperature=1.0)
        return self._baselines[name]


def _usable_clips(dataset: Any, indices: Any, want_audio: bool):
    """The clips that decode: ``(indices, cqts, audio or None, skipped)``. A clip whose file
    turns out bad (``BadClipError``) is never scored as silence: it is left out and listed in
    ``skipped`` (``{"clip", "path", "reason", "detail"}``)."""
    from cqtml_env.features import BadClipError

    kept, cqts, audio, skipped = [], [], [], []
    for i in np.asarray(indices).reshape(-1):
        try:
            cqt = dataset[int(i)]
            wav = dataset.get_audio(int(i)) if want_audio else None
        except BadClipError as exc:
            skipped.append({"clip": int(i), "path": str(getattr(exc, "path", "")),
                            "reason": exc.reason, "detail": str(exc)})
            continue
        kept.append(int(i))
        cqts.append(cqt)
        audio.append(wav)
    if not kept:
        reasons = sorted({s["reason"] for s in skipped})
        raise ValueError(f"no usable clip to evaluate: all {len(skipped)} were bad ({', '.join(reasons)})")
    return np.asarray(kept, dtype=int), cqts, (audio if want_audio else None), skipped


def win_rate(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> dict[str, float]:
    """Per-clip comparison of gold scores: wins/(wins+losses), ties reported separately."""
    wins = int(np.sum(a > b + tol))
    losses = int(np.sum(a < b - tol))
    ties = int(len(a) - wins - losses)
    rate = wins / (wins + losses) if wins + losses else 0.5
    return {"wins": wins, "losses": losses, "ties": ties, "win_rate": rate}


def normalized_score(x: float, random_score: float, band_score: float) -> float:
    """0 = random policy, 1 = band-follower (held-out gold)."""
    denom = band_score - random_score
    return float((x - random_score) / denom) if abs(denom) > 1e-9 else float("nan")


def default_threads() -> None:
    """Torch on a small CPU: one intra-op thread per core, no oversubscription across ranks;
    ``OMP_NUM_THREADS``, when set, caps it (a machine shared by several runs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    n = max(1, (os.cpu_count() or 1) // world)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    torch.set_num_threads(min(n, int(cap)) if cap.isdigit() and int(cap) > 0 else n)


def keep_freed_memory(pad_mb: int) -> bool:
    """Let glibc's malloc keep up to ``pad_mb`` MiB of freed heap instead of returning it to
    the OS (``mallopt(M_TOP_PAD)``). A training iteration frees and re-allocates the same
    tens of MB of activations, observations and scores; by default the heap top is trimmed
    after each and the next iteration faults the pages in again. Measured here
    (bench_grpo.py, B=8, G=32): the env's reset + step 33 -> 24 ms; GRPO iterations +4 % (ViT)
    and +18 % (CNN) clips/s.
    Costs up to ``pad_mb`` of resident memory. Returns False where it does not apply (not
    glibc, ``pad_mb`` 0)."""
    import ctypes
    import platform

    if pad_mb <= 0 or platform.libc_ver()[0] != "glibc":
        return False
    m_top_pad = -2  # <malloc.h>
    try:
        return bool(ctypes.CDLL(None).mallopt(m_top_pad, int(pad_mb) << 20))
    except (OSError, AttributeError):
        return False


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch RNGs, deterministic cuDNN (GRPO and SFT seed the same way)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True


__all__ = [
    "DataSplit", "split_data", "make_policy", "policy_actions", "Evaluator", "EvalResult",
    "win_rate", "normalized_score", "default_threads", "keep_freed_memory",
    "seed_everything",
]
