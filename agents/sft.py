"""Supervised warm start (SFT): imitate a teacher's levels into a policy, before RL.

The RLHF recipe: first teach the policy to do what a decent show does, then let GRPO improve
on it with a KL to that start (``agents/grpo.py --init-from <this run> --beta 0.02``). The
teacher is the band-follower (``cqtml_policy.baselines.BandFollowPolicy``: each device follows
its band's energy, on the contract's level grid) or, with ``--teacher gold-target``, the gold
scorer's own target of each clip (``--gold-version``, default gold-v3), quantised to the
contract's level grid; the student is any trainable policy
(``cnn``, ``vit``). The loss is the cross-entropy of the student's categorical over the
``K`` levels against the teacher's level, per (device, frame).

    python agents/sft.py --policy vit --data folder:/tmp/realmusic --steps 300 --run-dir runs/sft-vit
    python agents/grpo.py --policy vit --init-from runs/sft-vit --beta 0.02 ...

``--level-sigma S`` trains against ordinal soft targets (a Gaussian of ``S`` grid steps around
the teacher's level) instead of the exact class; ``--eval-every N`` scores the student on the
held-out clips every N steps (``eval/*`` scalars and ``<run-dir>/eval.json``: loss, exact
levels, level error, the greedy show's std beside the teacher's, normalised gold).
``--rise-weight W`` weighs the teacher's rises (its punches and onsets, few frames) more in
the loss; ``--augment-copies N --pitch-shift-bins B`` trains on seeded, attenuated and
pitch-shifted copies of each clip; ``--teacher-max-flashes 3`` imitates the gold target with
its smallest swings flattened until it is flash-safe (``cqtml_env.show.reduce_flashes``).
``make train`` is this script with the gold-v5 target:

    python agents/sft.py --policy cnn-gain --teacher gold-target --gold-version gold-v5 \
        --level-sigma 1.5 --learning-rate 3e-3 --steps 2400 --rise-weight 3 \
        --teacher-max-flashes 3 --augment-copies 3 --pitch-shift-bins 2 \
        --data folder:runs/.music/tune

Writes TensorBoard scalars (``losses/sft_ce``, ``charts/teacher_agreement`` = fraction of
(device, frame) argmax levels equal to the teacher's, ``charts/teacher_level_mae``,
``charts/SPS``) and checkpoints in ``agents.checkpoint``'s format under
``<run-dir>/checkpoints/`` (``latest`` and ``final``), which ``--init-from`` reads.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from agents.checkpoint import save_checkpoint
from agents.common import (
    make_policy,
    normalized_score,
    policy_actions,
    seed_everything,
    split_data,
)


@dataclass
class Args:
    exp_name: str = "sft"
    """name of this experiment (part of the default run directory)"""
    seed: int = 1
    """seed of the run: initial weights, batch draws"""
    policy: Literal["vit", "vit-small", "vit-bands", "cnn", "cnn-bands", "cnn-pulse", "vit-pulse", "cnn-beat", "vit-beat", "cnn-gain", "vit-gain"] = "cnn"
    """student architecture, built from the registry exactly as agents/grpo.py builds it"""
    teacher: Literal["band-follow", "gold-target"] = "band-follow"
    """teacher whose levels are imitated: the band-follower (the bar RL must then beat), or
    `gold-target`: the gold scorer's own target levels of each clip (``--gold-version``)"""
    gold_version: str = "gold-v3"
    """gold scorer version whose target `--teacher gold-target` imitates (docs/GOLD.md)"""
    teacher_max_flashes: int = 0
    """N > 0: the gold target's smallest swings are flattened until no device has more than
    N flashes (pairs of swings of at least 10 %) in any second (``cqtml_env.show.
    reduce_flashes``, on the level grid), so the student imitates a flash-safe show; 0 = off"""
    data: str = "synthetic"
    """training data: synthetic | synthetic:N | folder:PATH | fma:PATH | musicnet:PATH"""
    train_clips: int = 256
    """number of synthetic training clips (ignored for real data sets)"""
    eval_clips: int = 32
    """clips held out (as agents/grpo.py holds them out, same seed -> same split); never trained on"""
    cache_dir: str | None = None
    """feature cache directory (CQTs computed once, reused by later runs)"""
    level_augment_db: float = 24.0
    """train on clips attenuated by a seeded 0..N dB each, as agents/grpo.py does; 0 = off"""
    augment_copies: int = 1
    """train on this many copies of every training clip: copy 0 as it is, copy k >= 1 with
    its own seeded attenuation (``--level-augment-db``) and, with ``--pitch-shift-bins``, a
    seeded shift along the CQT's bins; the teacher's levels are computed on each copy. More
    distinct clips for a student that otherwise over-fits the tune set (1 = off)"""
    pitch_shift_bins: int = 0
    """copies k >= 1 are shifted by a seeded, non-zero whole number of bins in
    ``[-N, N]`` (12 bins = an octave; the bins shifted in are silent): the same music a few
    semitones up or down; 0 = no shift"""
    max_duration: float = 5.0
    """clip length in seconds"""
    num_devices: int = 4
    """number of output devices the policy drives"""
    distribution_size: int = 32
    """K: levels per device and frame (the contract's level grid)"""
    steps: int = 300
    """optimizer steps"""
    batch_size: int = 16
    """clips per step"""
    learning_rate: float = 1e-3
    """AdamW learning rate (cosine decay to 10 % over the run)"""
    weight_decay: float = 0.01
    """AdamW weight decay (torch's default; larger values regularise a student that overfits)"""
    label_smoothing: float = 0.0
    """cross-entropy label smoothing (keeps some entropy for the RL that follows)"""
    rise_weight: float = 0.0
    """extra loss weight on the frames where the teacher's level rises by at least
    ``--rise-levels`` grid steps (its punches and onsets) and the frame after: the student
    otherwise smooths over a rise it is unsure about by a frame, and its show loses the onsets
    the gold scorer and the beat metric look for; 0 = every frame weighs the same"""
    rise_levels: int = 2
    """a rise of at least this many grid steps from one frame to the next counts for
    ``--rise-weight``"""
    level_sigma: float = 0.0
    """ordinal soft target: the teacher's level spread as a Gaussian of this many grid steps
    over its neighbours (0 = exact-class cross-entropy). A near miss then costs less than a far
    one, so the student's distribution is unimodal around the teacher's level and its argmax
    (what evaluation plays) lands near it"""
    eval_every: int = 0
    """every N steps (and at the end) score the student on the held-out clips: cross-entropy,
    exact levels, level error, the show's std over time vs the teacher's, and normalised gold
    (``--gold-version``; 0 = random, 1 = band-follower) of its greedy show; 0 = off"""
    max_minutes: float = 0.0
    """stop (and save) after this many minutes of training; 0 = no limit"""
    log_every: int = 10
    """log scalars every N steps"""
    run_dir: str | None = None
    """where TensorBoard events and checkpoints go (default: runs/<exp-name>__<seed>__<time>)"""
    device: str = "cpu"
    """torch device: auto | cpu | cuda"""
    threads: int = 0
    """torch intra-op threads (0: torch's default)"""


def shift_bins(cqt: np.ndarray, shift: int) -> np.ndarray:
    """A CQT ``[..., F, T]`` moved ``shift`` bins up (> 0) or down (< 0) along ``F``; the bins
    shifted in are silent (0 on the absolute dB scale).

    >>> shift_bins(np.arange(4.0).reshape(4, 1), 1)[:, 0].tolist()
    [0.0, 0.0, 1.0, 2.0]
    """
    out = np.zeros_like(cqt)
    f = cqt.shape[-2]
    if abs(shift) >= f:
        return out
    if shift >= 0:
        out[..., shift:, :] = cqt[..., : f - shift, :]
    else:
        out[..., : f + shift, :] = cqt[..., -shift:, :]
    return out


def augmented_copies(dataset, indices, *, copies: int, level_db: float, pitch_bins: int,
                     seed: int) -> np.ndarray:
    """The training CQTs ``[copies * len(indices), 2, F, T]``: copy 0 with ``dataset``'s own
    seeded attenuation (``LevelAugmented(seed)``, none with ``level_db`` 0), copy ``k`` with
    ``LevelAugmented(seed + k)`` and a seeded bin shift in ``[-pitch_bins, pitch_bins]``
    (never 0 when ``pitch_bins`` > 0). Deterministic in ``seed``."""
    if copies < 1 or pitch_bins < 0:
        raise ValueError(f"need augment_copies >= 1 and pitch_shift_bins >= 0, got {copies}, {pitch_bins}")
    from cqtml_env import LevelAugmented

    out = []
    rng = np.random.default_rng([seed, 0x5F7])
    for k in range(copies):
        data = LevelAugmented(dataset, level_db, seed=seed + k) if level_db > 0 else dataset
        for i in indices:
            x = np.asarray(data[int(i)], dtype=np.float32)
            if k > 0 and pitch_bins > 0:
                shift = int(rng.integers(1, pitch_bins + 1)) * (1 if rng.random() < 0.5 else -1)
                x = shift_bins(x, shift)
            out.append(x)
    return np.stack(out).astype(np.float32)


def teacher_targets(teacher: torch.nn.Module, cqt: torch.Tensor) -> torch.Tensor:
    """The teacher's greedy level index per (device, frame): ``[B, D, T]`` (int64)."""
    with torch.no_grad():
        return teacher(cqt).argmax(dim=-1)


def gold_target_levels(cqts, *, num_devices: int, levels: int, frame_rate: float,
                       version: str = "gold-v3", max_flashes: int = 0) -> torch.Tensor:
    """The gold scorer's target of every clip ``[B, 2, F, T]`` as level indices ``[B, D, T]``
    (int64) on the contract's ``levels``-level grid: what ``--teacher gold-target`` imitates.
    ``max_flashes`` > 0: the quantised target through ``reduce_flashes`` (keeping half a
    threshold, so the levels it cuts to, snapped back to the grid, stay within the threshold).

    >>> from cqtml_env.contract import DEFAULT_FRAME_RATE
    >>> gold_target_levels(torch.rand(1, 2, 84, 50), num_devices=4, levels=32,
    ...                    frame_rate=DEFAULT_FRAME_RATE).shape
    torch.Size([1, 4, 50])
    """
    from cqtml_env import GoldScorer
    from cqtml_env.contract import level_grid, quantise
    from cqtml_env.show import reduce_flashes

    gold = GoldScorer(num_devices=num_devices, version=version, frame_rate=frame_rate,
                      cache_size=1)
    grid = level_grid(levels)
    out = []
    for c in np.asarray(cqts, dtype=np.float32):
        q = quantise(gold.features(c).target, levels)  # [D, T] on the grid
        if max_flashes > 0:
            q = reduce_flashes(q, frame_rate=frame_rate, max_flashes=max_flashes, keep=0.5)
        out.append(np.abs(q[..., None] - grid).argmin(axis=-1))
    return torch.as_tensor(np.stack(out), dtype=torch.int64)


def student_kwargs(policy: str, *, teacher: str, gold_version: str) -> dict:
    """Keyword arguments for a fresh student ``policy``: one with gain features (``cnn-gain``,
    ``vit-gain``) calls dark what its gold-target teacher calls dark, the band's
    ``floor_percentile`` (gold-v7: 0.5 %), so its level curves are that teacher's bed
    (``cqtml_policy.inputs.GainFeatures``). Empty where nothing differs from the policy's
    defaults (gold-v4..v6, other teachers, a checkpoint), so those configs stay as they were."""
    from cqtml_env import GoldScorer
    from cqtml_policy import registry
    from cqtml_policy.inputs import GAIN_FLOOR

    if teacher != "gold-target":
        return {}
    try:
        entry = registry.policy_entry(policy)
    except ValueError:  # a checkpoint folder: its saved config decides
        return {}
    if not entry.defaults.get("gain_features"):
        return {}
    floor = GoldScorer(version=gold_version).config.floor_percentile / 100.0
    return {"gain_floor": floor} if 0 < floor != GAIN_FLOOR else {}


def soft_level_targets(targets: torch.Tensor, levels: int, sigma: float) -> torch.Tensor:
    """Level indices ``[...]`` -> distributions ``[..., levels]``: a Gaussian of ``sigma`` grid
    steps around each index, truncated to the grid and renormalised (ordinal soft labels).

    >>> soft_level_targets(torch.tensor([0]), 4, 1.0)[0].argmax().item()
    0
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 grid steps, got {sigma}")
    grid = torch.arange(levels, device=targets.device, dtype=torch.float32)
    w = torch.exp(-0.5 * ((grid - targets.unsqueeze(-1).float()) / sigma) ** 2)
    return w / w.sum(dim=-1, keepdim=True)


def rise_weights(targets: torch.Tensor, weight: float, min_levels: int = 2) -> torch.Tensor:
    """Per-(device, frame) loss weights ``[B, D, T]`` for level indices ``[B, D, T]``: ``1 +
    weight`` on every frame where the level rises by at least ``min_levels`` steps from the
    frame before, and on the frame after it; 1 elsewhere. Normalised to mean 1 per batch, so
    the loss keeps its scale.

    >>> rise_weights(torch.tensor([[[0, 0, 5, 5, 5, 5]]]), 3.0)[0, 0].tolist()
    [0.5, 0.5, 2.0, 2.0, 0.5, 0.5]
    """
    if weight < 0 or min_levels < 1:
        raise ValueError(f"need weight >= 0 and min_levels >= 1, got {weight}, {min_levels}")
    rise = torch.zeros(targets.shape, dtype=torch.bool, device=targets.device)
    rise[..., 1:] = (targets[..., 1:] - targets[..., :-1]) >= min_levels
    rise[..., 1:] |= rise[..., :-1].clone()  # the frame after the rise: where it lands
    w = 1.0 + weight * rise.float()
    return w / w.mean()


def sft_loss(
    log_probs: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0,
    level_sigma: float = 0.0, weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of ``log_probs [B, D, T, K]`` against level indices ``[B, D, T]``, and
    the agreement statistics (argmax == teacher, mean level error as a fraction of full scale).

    ``level_sigma > 0``: against :func:`soft_level_targets` instead of the exact class.
    ``weights [B, D, T]`` (e.g. :func:`rise_weights`) weigh each (device, frame)'s term."""
    k = log_probs.shape[-1]
    if level_sigma > 0:
        soft = soft_level_targets(targets, k, level_sigma)
        if label_smoothing > 0:
            soft = (1 - label_smoothing) * soft + label_smoothing / k
        per = -(soft * log_probs).sum(dim=-1)
    else:
        # log_softmax of normalised log-probabilities is the identity, so torch's cross-entropy
        # (with its label smoothing) applies to them as they are
        per = torch.nn.functional.cross_entropy(
            log_probs.reshape(-1, k), targets.reshape(-1), label_smoothing=label_smoothing,
            reduction="none",
        ).reshape(targets.shape)
    loss = (per * weights).mean() if weights is not None else per.mean()
    with torch.no_grad():
        pred = log_probs.argmax(dim=-1)
        stats = {
            "teacher_agreement": float((pred == targets).float().mean()),
            "teacher_level_mae": float((pred - targets).abs().float().mean() / max(k - 1, 1)),
        }
    return loss, stats


class HeldOut:
    """The held-out clips (never trained on, not level-augmented), the teacher's levels on
    them, and the baselines' gold scores, computed once: :meth:`__call__` scores a student."""

    def __init__(self, cqts: np.ndarray, targets: torch.Tensor, *, num_devices: int,
                 frame_rate: float, gold_version: str) -> None:
        from cqtml_env import GoldScorer

        self.cqts = np.asarray(cqts, dtype=np.float32)
        self.targets = targets
        self.gold = GoldScorer(num_devices=num_devices, version=gold_version,
                               frame_rate=frame_rate)
        self.feats = [self.gold.features(c) for c in self.cqts]
        base = {}
        for name in ("band-follow", "random"):  # drawn as agents/evaluate.py draws them
            torch.manual_seed(0)
            pol = make_policy(name, self.cqts.shape[1:], num_devices, frame_rate=frame_rate)
            base[name] = self._gold(policy_actions(pol, self.cqts, temperature=1.0))
        self.band, self.random = base["band-follow"], base["random"]

    def _gold(self, actions: np.ndarray) -> float:
        return float(np.mean([self.gold.score(c, a, features=f)
                              for c, a, f in zip(self.cqts, actions, self.feats)]))

    def __call__(self, policy: torch.nn.Module, level_sigma: float = 0.0) -> dict[str, float]:
        was_training = policy.training
        policy.eval()
        dev = next(policy.parameters()).device
        with torch.no_grad():
            lps = [policy(torch.as_tensor(self.cqts[s : s + 16]).to(dev)).cpu()
                   for s in range(0, len(self.cqts), 16)]
            log_probs = torch.cat(lps)
            loss, stats = sft_loss(log_probs, self.targets, level_sigma=level_sigma)
            k = log_probs.shape[-1]
            show = log_probs.argmax(-1).float() / max(k - 1, 1)  # the greedy show [N, D, T]
        policy.train(was_training)
        teacher = self.targets.float() / max(k - 1, 1)
        return {
            "eval/sft_loss": float(loss),
            "eval/teacher_agreement": stats["teacher_agreement"],
            "eval/teacher_level_mae": stats["teacher_level_mae"],
            "eval/show_std": float(show.std(dim=-1).mean()),
            "eval/teacher_std": float(teacher.std(dim=-1).mean()),
            "eval/normalized_gold": normalized_score(self._gold(show.numpy()), self.random,
                                                     self.band),
            "eval/teacher_normalized_gold": normalized_score(self._gold(teacher.numpy()),
                                                             self.random, self.band),
        }


def train(args: Args) -> Path:
    """Run SFT; returns the run directory (its ``checkpoints/latest`` is the trained policy)."""
    if args.teacher_max_flashes < 0 or (args.teacher_max_flashes and args.teacher != "gold-target"):
        raise ValueError(f"--teacher-max-flashes must be 0 (off) or a positive count with "
                         f"--teacher gold-target; got {args.teacher_max_flashes} with "
                         f"--teacher {args.teacher}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    run_dir = Path(args.run_dir or f"runs/{args.exp_name}__{args.seed}__{int(time.time())}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(asdict(args), indent=2))

    split = split_data(args.data, args.max_duration, args.eval_clips, args.train_clips, args.seed,
                       args.cache_dir)
    cqts = torch.as_tensor(augmented_copies(
        split.train, split.train_indices, copies=args.augment_copies,
        level_db=args.level_augment_db, pitch_bins=args.pitch_shift_bins, seed=args.seed))
    cqt_shape = tuple(cqts.shape[1:])

    from cqtml_policy import registry

    def teach(x: torch.Tensor) -> torch.Tensor:
        if args.teacher == "gold-target":
            return gold_target_levels(x.numpy(), num_devices=args.num_devices,
                                      levels=args.distribution_size,
                                      frame_rate=split.processor.frame_rate,
                                      version=args.gold_version,
                                      max_flashes=args.teacher_max_flashes)
        teacher = registry.create_policy(
            args.teacher, num_devices=args.num_devices, distribution_size=args.distribution_size,
            frame_rate=split.processor.frame_rate,
        ).eval()
        return torch.cat([teacher_targets(teacher, x[s : s + 32]) for s in range(0, len(x), 32)])

    targets = teach(cqts)
    held_out = None
    if args.eval_every > 0 and len(split.eval_indices):
        held = torch.as_tensor(np.stack([split.eval[int(i)] for i in split.eval_indices])
                               .astype(np.float32))
        held_out = HeldOut(held.numpy(), teach(held), num_devices=args.num_devices,
                           frame_rate=split.processor.frame_rate, gold_version=args.gold_version)

    torch.manual_seed(args.seed)  # initial weights depend on the seed alone (as in grpo.py)
    policy = make_policy(args.policy, cqt_shape, args.num_devices, args.distribution_size,
                         device=args.device, **student_kwargs(args.policy, teacher=args.teacher,
                                                              gold_version=args.gold_version))
    policy.train()
    dev = next(policy.parameters()).device
    optimizer = torch.optim.AdamW(
        policy.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / max(args.steps, 1), 1)))
    )
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir))
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(
        f"|{k}|{v}|" for k, v in asdict(args).items()))
    gen = torch.Generator().manual_seed(args.seed)
    start = time.time()
    history: list[dict[str, float]] = []
    evals: list[dict[str, float]] = []
    step = 0
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(cqts), (min(args.batch_size, len(cqts)),), generator=gen)
        log_probs = policy(cqts[idx].to(dev))
        batch_targets = targets[idx].to(dev)
        weights = (rise_weights(batch_targets, args.rise_weight, args.rise_levels)
                   if args.rise_weight > 0 else None)
        loss, stats = sft_loss(log_probs, batch_targets, args.label_smoothing,
                               args.level_sigma, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        row = {"step": step, "sft_ce": float(loss.detach()), **stats}
        history.append(row)
        if step % args.log_every == 0 or step == 1 or step == args.steps:
            writer.add_scalar("losses/sft_ce", row["sft_ce"], step)
            writer.add_scalar("charts/teacher_agreement", stats["teacher_agreement"], step)
            writer.add_scalar("charts/teacher_level_mae", stats["teacher_level_mae"], step)
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], step)
            writer.add_scalar("charts/SPS", step * len(idx) / max(time.time() - start, 1e-9), step)
            print(f"step {step}: sft_ce {row['sft_ce']:.4f} agreement "
                  f"{stats['teacher_agreement']:.3f} level_mae {stats['teacher_level_mae']:.3f}",
                  flush=True)
        out_of_time = args.max_minutes > 0 and time.time() - start > args.max_minutes * 60
        if held_out is not None and (step % args.eval_every == 0 or step == args.steps
                                     or out_of_time):
            ev = held_out(policy, args.level_sigma)
            evals.append({"step": step, "minutes": (time.time() - start) / 60, **ev})
            for k, v in ev.items():
                writer.add_scalar(k, v, step)
            print(f"[step {step}] held-out " + " ".join(
                f"{k.split('/')[-1]} {v:.3f}" for k, v in ev.items()), flush=True)
        if out_of_time:
            print(f"stopping after {step} steps: --max-minutes {args.max_minutes}", flush=True)
            break
    writer.close()
    if evals:
        (run_dir / "eval.json").write_text(json.dumps(evals, indent=2))
    policy.eval()
    save_checkpoint(run_dir / "checkpoints", step, policy, optimizer, scheduler,
                    extra={"sft": True, "teacher": args.teacher,
                           **({"gold_version": args.gold_version}
                              if args.teacher == "gold-target" else {}),
                           **({"teacher_max_flashes": args.teacher_max_flashes}
                              if args.teacher_max_flashes else {}),
                           "history": history[-5:],
                           **({"eval": evals[-1]} if evals else {})},
                    links=("latest", "final"))
    return run_dir


if __name__ == "__main__":
    import tyro

    train(tyro.cli(Args))
