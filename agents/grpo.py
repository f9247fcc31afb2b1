"""GRPO for music-driven device control (CleanRL style: one readable file).

Each iteration draws B clips, puts G sub-envs of the native vector env on each clip, samples
G actions per clip from one policy forward pass, scores them through the env (proxy reward
model or gold scorer), turns rewards into group-relative advantages and takes mu PPO-clip
steps. Every (device, frame) activation is a "token": ratios, clipping and KL are per element,
the advantage is per action. Run ``python agents/grpo.py --help`` for every flag.

Multi-process: ``torchrun --nproc_per_node=N agents/grpo.py ...`` shards the clips across
ranks and averages gradients with an all-reduce (gloo on CPU, nccl on CUDA); rank 0 logs,
evaluates and checkpoints.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist

from agents.checkpoint import (
    init_policy_from,
    latest_checkpoint,
    load_trainer_state,
    save_checkpoint,
    write_checksums,
)
from agents.common import (
    Evaluator,
    default_threads,
    keep_freed_memory,
    make_policy,
    normalized_score,
    policy_actions,
    seed_everything,
    split_data,
    win_rate,
)
from cqtml_env import GoldScorer
from cqtml_env.reward.model import shipped_version_for
from cqtml_env.versions import env_id_for
from cqtml_policy.categorical import resolve_device, sample_indices


@dataclass
class Args:
    exp_name: str = "grpo"
    """name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the run: clip draws, sampling and initial weights"""
    iterations: int = 1500
    """number of GRPO iterations (each: B clips x G generations, then mu updates)"""
    clips_per_iteration: int = 8
    """B: clips drawn per iteration (split across ranks under torchrun)"""
    num_generations: int = 32
    """G: actions sampled per clip; one group for the advantage baseline (cheap: one forward per clip)"""
    policy: Literal["vit", "vit-small", "vit-bands", "cnn", "cnn-bands", "cnn-pulse", "vit-pulse", "cnn-beat", "vit-beat", "cnn-gain", "vit-gain"] = "cnn"
    """policy architecture: the small conv policy (`cnn`, learns fast on a CPU) or timm ViT-tiny (`vit`)"""
    reward: Literal["model", "gold"] = "model"
    """training reward: the learned reward model (proxy) or the gold scorer itself"""
    gold_version: str = "gold-v1"
    """gold scorer version (docs/GOLD.md): the training reward with --reward gold, held-out gold,
    and which shipped reward model --reward model uses (gold-v1's or gold-v5's; the default
    gold-v5 model for the versions between)"""
    reward_model: str | None = None
    """path to a reward model directory (default: the weights shipped with cqtml-env)"""
    data: str = "synthetic"
    """training data: synthetic | synthetic:N | folder:PATH | fma:PATH | musicnet:PATH"""
    train_clips: int = 256
    """number of synthetic training clips (ignored for real data sets)"""
    eval_clips: int = 32
    """held-out clips for evaluation (never trained on)"""
    cache_dir: str | None = None
    """feature cache directory (CQTs computed once, reused by later runs)"""
    level_augment_db: float = 24.0
    """train on clips attenuated by a seeded 0..N dB each (real recordings vary in level); 0 = off"""
    max_duration: float = 5.0
    """clip length in seconds (5 s -> 216 CQT frames)"""
    num_devices: int = 4
    """number of output devices (lights) the policy drives"""
    distribution_size: int = 32
    """K: activation levels per device and frame (level i means i/(K-1))"""
    run_dir: str | None = None
    """where TensorBoard events and checkpoints go (default: runs/<run-name>)"""
    checkpoint_every: int = 50
    """write a resumable checkpoint every N iterations (0: only at the end)"""
    eval_every: int = 50
    """evaluate on held-out clips every N iterations (0: only at the end)"""
    image_every: int = 50
    """log an image of one held-out clip's CQT with the policy's activations every N iterations"""
    resume: bool = False
    """continue from <run-dir>/checkpoints/latest (same flags as the interrupted run)"""
    init_from: str | None = None
    """start from a saved policy's weights (a policy/checkpoint dir, e.g. agents/sft.py's output, or a run dir: its latest); with --beta > 0 it is also the KL reference. Ignored by --resume"""
    learning_rate: float = 3e-4
    """AdamW learning rate (peak, after warm-up)"""
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    """learning-rate decay after warm-up"""
    warmup_iterations: int = 10
    """linear learning-rate warm-up"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    update_epochs: int = 1
    """mu: policy updates per batch of generations (1 = on-policy, ratio is exactly 1)"""
    clip_eps_low: float = 0.2
    """PPO clip range below 1"""
    clip_eps_high: float = 0.28
    """PPO clip range above 1 (DAPO clip-higher; set equal to clip_eps_low for plain PPO)"""
    beta: float = 0.0
    """KL penalty to the frozen reference policy (k3 estimator); 0 = no reference model (TRL default)"""
    ref_sync_every: int = 0
    """sync the reference policy every N iterations (0: never)"""
    ref_sync_alpha: float = 1.0
    """reference sync mix: ref <- alpha * policy + (1 - alpha) * ref"""
    ent_coef: float = 0.0
    """entropy bonus coefficient (needs a policy with a full categorical `log_probs`)"""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """advantage scaling: std of the group (GRPO), of the batch, or none (Dr. GRPO)"""
    loss_type: Literal["sample", "element", "constant"] = "sample"
    """aggregation: mean per sample then over samples (GRPO), mean over all elements (DAPO), sum / constant (Dr. GRPO)"""
    max_grad_norm: float = 1.0
    """gradient clipping"""
    temperature: float = 1.0
    """sampling temperature for generations (and their log-probs)"""
    adv_eps: float = 1e-4
    """epsilon in (r - mean) / (std + eps)"""
    device: str = "auto"
    """torch device: auto | cpu | cuda"""
    malloc_top_pad_mb: int = 1024
    """keep up to this much freed heap in the process (glibc M_TOP_PAD) instead of faulting it in again every iteration; 0: glibc's default"""
    final_report: bool = True
    """at the end, write an evaluation report (agents/evaluate.py) into <run-dir>/eval"""
    progress: bool = True
    """show progress: a bar on a terminal; when stderr is not a TTY, a plain line every min(50, eval-every) iterations or 30 s"""
    stop_at: int | None = None
    """stop after this iteration as if interrupted (no final checkpoint; tests resume from here)"""


# ---------------------------------------------------------------------------------------
def setup_distributed(device: str) -> tuple[int, int, str]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, str(resolve_device(device))
    dev = str(resolve_device(device))
    backend = "nccl" if dev == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    if dev == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = f"cuda:{local}"
    return rank, world, dev


def allreduce_mean_(tensors: list[torch.Tensor], world: int) -> None:
    """Average tensors in place across ranks in one flat all-reduce."""
    if world == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def group_advantages(rewards: torch.Tensor, scale: str, eps: float) -> torch.Tensor:
    """rewards [B, G] -> advantages [B, G]: group baseline, then the chosen std scaling."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale == "group":
        return centred / (rewards.std(dim=1, keepdim=True) + eps)
    if scale == "batch":
        return centred / (rewards.std() + eps)
    return centred


def aggregate(per_elem: torch.Tensor, mask: torch.Tensor, loss_type: str) -> torch.Tensor:
    """per_elem, mask [B, G, D, T] -> scalar. The three coincide for equal-length clips."""
    if loss_type == "sample":
        per_sample = (per_elem * mask).flatten(2).sum(-1) / mask.flatten(2).sum(-1).clamp(min=1)
        return per_sample.mean()
    if loss_type == "element":
        return (per_elem * mask).sum() / mask.sum().clamp(min=1)
    # Dr. GRPO: a constant normaliser (the full action size), independent of the batch's lengths
    return (per_elem * mask).sum() / (per_elem.shape[0] * per_elem.shape[1] * per_elem[0, 0].numel())


def lr_lambda_factory(args: Args):
    def f(it: int) -> float:
        if it < args.warmup_iterations:
            return (it + 1) / max(1, args.warmup_iterations)
        if args.lr_schedule == "constant":
            return 1.0
        progress = (it - args.warmup_iterations) / max(1, args.iterations - args.warmup_iterations)
        progress = min(max(progress, 0.0), 1.0)
        if args.lr_schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def sampled_log_probs(full_logp: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``full_logp [b, D, T, K]`` at the sampled bins ``index [b, G, D, T]`` -> ``[b, G, D, T]``.

    The G samples sit on the bin axis of one gather, so its backward scatters into the
    ``[b, D, T, K]`` distribution instead of into G expanded copies of it.
    """
    return full_logp.gather(-1, index.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_optimizer(params: list[torch.nn.Parameter], args: Args, device: str) -> torch.optim.Optimizer:
    """AdamW; the fused kernel where torch has one (CPU, CUDA): ~3x faster steps on CPU."""
    fused = torch.device(device).type in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay, fused=fused or None)


PERF_PHASES = ("env_reset", "policy_sample", "env_step", "loss", "backward", "optimizer")
"""The phases of an iteration, logged as ``perf/<phase>_time`` (seconds)."""


def _lap(phase: dict[str, float], name: str, since: float) -> float:
    """Add the time since ``since`` to ``phase[name]``; returns now (the next phase's start)."""
    now = time.perf_counter()
    phase[name] = phase.get(name, 0.0) + now - since
    return now


def iteration_seed(seed: int, iteration: int, rank: int) -> int:
    """A per-(iteration, rank) seed, so resumed and multi-process runs draw exactly the same."""
    return int(np.random.SeedSequence([seed, iteration, rank]).generate_state(1)[0])


def stack_actions(actions: list[list[torch.Tensor]]) -> torch.Tensor:
    return torch.stack([torch.stack(group) for group in actions])


@torch.no_grad()
def sync_reference(ref: torch.nn.Module, policy: torch.nn.Module, alpha: float) -> None:
    for pr, pp in zip(ref.parameters(), policy.parameters()):
        pr.mul_(1 - alpha).add_(pp.detach(), alpha=alpha)


def run_eval(evaluator: Evaluator, policy, writer, step: int) -> dict[str, float]:
    policy.eval()
    greedy = evaluator.evaluate(policy, temperature=0.0)
    torch.manual_seed(12345)
    sampled = evaluator.evaluate(policy, temperature=1.0)
    policy.train()
    band = evaluator.baseline("band-follow")
    rnd = evaluator.baseline("random")
    metrics = {
        "eval/gold_greedy": float(greedy.gold.mean()),
        "eval/gold_sampled": float(sampled.gold.mean()),
        "eval/proxy_greedy": float(greedy.proxy.mean()),
        "eval/proxy_sampled": float(sampled.proxy.mean()),
        "eval/gold_band_follow": float(band.gold.mean()),
        "eval/gold_random": float(rnd.gold.mean()),
        "eval/proxy_band_follow": float(band.proxy.mean()),
        "eval/normalized_score": normalized_score(float(greedy.gold.mean()), float(rnd.gold.mean()), float(band.gold.mean())),
        "eval/win_rate_vs_band_follow": win_rate(greedy.gold, band.gold)["win_rate"],
        # independent metrics from the held-out clips' audio (agents/metrics.py)
        **{f"eval/{k}": v for k, v in greedy.metrics_summary().items() if np.isfinite(v)},
    }
    if writer is not None:
        for k, v in metrics.items():
            writer.add_scalar(k, v, step)
    return metrics


def log_image(evaluator: Evaluator, policy, writer, step: int, max_duration: float) -> None:
    from cqtml_env.env.render import render_activations

    cqt = evaluator.cqts[:1]
    act = policy_actions(policy, cqt, temperature=0.0)[0]
    img = render_activations(cqt[0], act)
    writer.add_image("images/policy_activations", img, step, dataformats="HWC")


# ---------------------------------------------------------------------------------------
class NonFiniteTrainingError(RuntimeError):
    """The loss, gradients or weights became NaN/inf: the run stops instead of saving garbage."""


@dataclass
class Run:
    """Everything :func:`setup` builds and the iteration steps share."""

    args: Args
    rank: int
    world: int
    device: str
    run_name: str
    run_dir: Path
    ckpt_root: Path
    local_b: int
    """clips per iteration on this rank"""
    split: Any
    envs: Any
    policy: Any
    reference: Any
    params: list
    optimizer: torch.optim.Optimizer
    scheduler: Any
    start_it: int = 0
    best_gold: float = -math.inf
    global_step: int = 0
    last_good: Path | None = None
    """the newest checkpoint written or resumed from (named when the run has to stop)"""
    resumed_metrics: dict = field(default_factory=dict)
    writer: Any = None
    evaluator: Any = None


@dataclass
class Rollout:
    """One iteration's groups: b clips x G generations, scored by the env."""

    states: torch.Tensor
    """the b clips' CQTs ``[b, 2, F, T]``"""
    actions: torch.Tensor
    """``[b, G, D, T]``"""
    generations: list | None
    """per-state action lists (for ``get_log_probabilities``), when needed"""
    full_logp: torch.Tensor | None
    """fused path: the sampling forward's full log-probs ``[b, D, T, K]`` (with its graph)"""
    first_logp: torch.Tensor | None
    """fused path: their values at the sampled bins ``[b, G, D, T]``"""
    rewards: torch.Tensor
    """``[b, G]``"""
    gold: np.ndarray
    proxy: np.ndarray


class Timer:
    """Seconds per phase of one iteration (the ``perf/<phase>_time`` scalars)."""

    def __init__(self) -> None:
        self.phase: dict[str, float] = {}
        self.mark = time.perf_counter()

    def lap(self, name: str) -> None:
        self.mark = _lap(self.phase, name, self.mark)


def env_id(args: Args) -> str:
    """The registered env version for ``--gold-version``: its ``--reward model`` is the reward
    model shipped for that version (CQTML-v1: gold-v5's, also for gold-v2..v4)."""
    return env_id_for(shipped_version_for(args.gold_version))


def make_envs(args: Args, split: Any, num_envs: int, progress: bool) -> Any:
    """The native vector env (``num_envs`` = b x G sub-envs), every training CQT prefetched."""
    reward_spec = args.reward_model if (args.reward == "model" and args.reward_model) else args.reward
    train_data = split.train
    if args.level_augment_db > 0:
        from cqtml_env import LevelAugmented

        train_data = LevelAugmented(split.train, args.level_augment_db, seed=args.seed)
    envs = gym.make_vec(
        env_id(args),
        num_envs=num_envs,
        dataset=train_data,
        reward=reward_spec,
        num_devices=args.num_devices,
        max_duration=args.max_duration,
        gold=GoldScorer(num_devices=args.num_devices, version=args.gold_version,
                        frame_rate=split.processor.frame_rate),
        cache_size=max(512, len(split.train_indices)),
        autoreset_mode="disabled",  # every iteration resets with its own clips: no autoreset draws
    )
    # every training clip's CQT is computed once, up front (and read from --cache-dir next time)
    envs.unwrapped.prefetch(split.train_indices, progress=progress)
    return envs


def make_policy_and_reference(args: Args, cqt_shape: tuple, device: str) -> tuple[Any, Any]:
    """A fresh policy (initial weights from the seed alone, or --init-from's) and, with
    --beta > 0, a frozen copy of it as the KL reference."""
    torch.manual_seed(args.seed)
    policy = make_policy(args.policy, cqt_shape, args.num_devices, args.distribution_size, device=device)
    if args.init_from and not args.resume:  # warm start; the reference below is a copy of it
        init_policy_from(policy, args.init_from, args.policy)
    policy.train()
    reference = copy.deepcopy(policy).eval() if args.beta > 0 else None
    if reference is not None:
        for p in reference.parameters():
            p.requires_grad_(False)
    return policy, reference


def restore(run: Run) -> None:
    """--resume: weights, optimizer, scheduler, RNG, counters (and the reference) from the
    newest intact checkpoint."""
    ckpt = latest_checkpoint(run.ckpt_root)
    if ckpt is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {run.ckpt_root}")
    loaded = type(run.policy).from_pretrained(ckpt)
    run.policy.load_state_dict(loaded.state_dict())
    trainer = load_trainer_state(ckpt, run.optimizer, run.scheduler)
    run.start_it = trainer["iteration"]
    run.best_gold = trainer["extra"].get("best_gold", -math.inf)
    run.global_step = trainer["extra"].get("global_step", 0)
    run.resumed_metrics = dict(trainer["extra"].get("metrics", {}))
    run.last_good = ckpt
    if run.reference is not None and (ckpt / "reference.safetensors").exists():
        from cqtml_env.safetensors_io import load_safetensors

        run.reference.load_state_dict(load_safetensors(
            ckpt / "reference.safetensors", expected="the KL reference policy's weights",
            backend="torch"))


def open_logging(run: Run) -> None:
    """Rank 0: args.json, the TensorBoard writer and the held-out evaluator."""
    from torch.utils.tensorboard import SummaryWriter

    args = run.args
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / "args.json").write_text(json.dumps(asdict(args), indent=2))
    # Scalars are logged against env steps. The checkpoint's own step was logged (and flushed)
    # before it was saved, so drop only what a crashed run wrote AFTER it.
    run.writer = SummaryWriter(str(run.run_dir),
                               purge_step=run.global_step + 1 if args.resume else None)
    run.writer.add_text(
        "hyperparameters",
        "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items()),
    )
    # held-out proxy: the reward model trained against (or the shipped one), as in training
    run.evaluator = Evaluator(run.split.eval, run.split.eval_indices, reward=args.reward_model or "model",
                              num_devices=args.num_devices, gold_version=args.gold_version)


def setup(args: Args) -> Run:
    """Processes, seeds, data, env, policy (+ reference), optimizer, resume, logging."""
    rank, world, device = setup_distributed(args.device)
    default_threads()
    keep_freed_memory(args.malloc_top_pad_mb)
    if world > 1:  # compile librosa's numba kernels in one process first (see cqtml_env.warmup)
        if rank == 0:
            from cqtml_env.warmup import warm_numba_caches

            warm_numba_caches()
        dist.barrier()
    run_name = f"{env_id(args)}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = Path(args.run_dir or f"runs/{run_name}")
    if args.clips_per_iteration % world:
        raise ValueError(f"--clips-per-iteration ({args.clips_per_iteration}) must divide by the number of processes ({world})")
    if args.num_generations < 2:
        raise ValueError("--num-generations must be >= 2: the group mean is the baseline")
    local_b = args.clips_per_iteration // world
    seed_everything(args.seed)
    split = split_data(args.data, args.max_duration, args.eval_clips, args.train_clips, args.seed, args.cache_dir)
    envs = make_envs(args, split, local_b * args.num_generations, progress_enabled(args) and rank == 0)
    policy, reference = make_policy_and_reference(args, tuple(envs.single_observation_space.shape), device)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, args, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda_factory(args))
    run = Run(args, rank, world, device, run_name, run_dir, run_dir / "checkpoints", local_b, split,
              envs, policy, reference, params, optimizer, scheduler)
    if args.resume:
        restore(run)
    if world > 1:  # ranks share the seed; broadcasting makes equal weights a guarantee
        for p in policy.state_dict().values():
            dist.broadcast(p, 0)
    if rank == 0:
        open_logging(run)
    return run


def collect_rollout(run: Run, it: int, timer: Timer) -> Rollout:
    """Draw this iteration's clips (the same global draw on every rank, then this rank's
    shard), sample G generations per clip from one policy forward and score them in the env.

    Fused (mu = 1 and a policy exposing its full distribution): that forward keeps its graph
    and is the update's forward too, so an iteration costs one forward+backward."""
    args, policy, G = run.args, run.policy, run.args.num_generations
    draw = np.random.default_rng([args.seed, it])
    replace = len(run.split.train_indices) < args.clips_per_iteration
    clips = draw.choice(run.split.train_indices, size=args.clips_per_iteration, replace=replace)
    clips = clips[run.rank * run.local_b : (run.rank + 1) * run.local_b]
    torch.manual_seed(iteration_seed(args.seed, it, run.rank))

    obs, _ = run.envs.reset(options={"clips": np.repeat(clips, G).tolist()})
    states = torch.as_tensor(obs[::G], device=run.device)
    timer.lap("env_reset")

    first_logp = full_logp = None
    if args.update_epochs == 1 and hasattr(policy, "log_probs"):
        full_logp = torch.stack(policy.log_probs(states, temperature=args.temperature))  # [b, D, T, K]
        with torch.no_grad():  # inverse-CDF sampling: ~2x cheaper than Categorical.sample
            index = sample_indices(full_logp.detach(), G).transpose(0, 1)
        actions = policy.indices_to_actions(index)  # [b, G, D, T]
        # per-state lists for get_log_probabilities: needed only by a reference policy or mu > 1
        generations = [list(a.unbind(0)) for a in actions] if run.reference is not None else None
        first_logp = sampled_log_probs(full_logp, index)  # [b, G, D, T]
    else:
        with torch.no_grad():
            generations = policy.generate_actions(states, num_actions_per_state=G, temperature=args.temperature)
        actions = stack_actions(generations)  # [b, G, D, T]
    timer.lap("policy_sample")
    _, rewards, _, _, infos = run.envs.step(actions.reshape(-1, *actions.shape[2:]).cpu().numpy())
    timer.lap("env_step")
    rewards_t = torch.as_tensor(np.asarray(rewards, dtype=np.float32), device=run.device).view(run.local_b, G)
    return Rollout(
        states, actions, generations, full_logp, first_logp, rewards_t,
        gold=np.asarray(infos["gold_score"], dtype=np.float64),  # autoreset DISABLED: the scored episodes
        proxy=np.asarray(infos["proxy_score"], dtype=np.float64),
    )


STAT_NAMES = ("policy_loss", "approx_kl", "kl_ref", "entropy", "clip_ratio", "clip_low", "clip_high", "grad_norm")


def update_policy(run: Run, ro: Rollout, advantages: torch.Tensor, it: int, timer: Timer) -> dict[str, list[float]]:
    """mu PPO-clip steps on per-element ratios (plus the k3 KL to the reference and the
    entropy bonus); returns each step's statistics. A non-finite loss or gradient stops the
    run before the optimizer can write it into the weights."""
    args, policy, reference = run.args, run.policy, run.reference
    adv = advantages[:, :, None, None]
    mask = torch.ones_like(ro.actions)
    old_logp = None
    stats: dict[str, list[float]] = {k: [] for k in STAT_NAMES}
    for epoch in range(args.update_epochs):
        if epoch == 0 and ro.first_logp is not None:
            logp = ro.first_logp
        else:
            logp = policy.get_log_probabilities(ro.states, ro.generations, temperature=args.temperature, reduction="none")
        if old_logp is None:
            old_logp = logp.detach()
        log_ratio = logp - old_logp
        ratio = log_ratio.exp()
        lo, hi = 1 - args.clip_eps_low, 1 + args.clip_eps_high
        per_elem = -torch.min(ratio * adv, ratio.clamp(lo, hi) * adv)
        kl_ref = torch.zeros((), device=run.device)
        if reference is not None:
            with torch.no_grad():
                ref_logp = reference.get_log_probabilities(ro.states, ro.generations, temperature=args.temperature, reduction="none")
            d = ref_logp - logp
            k3 = d.exp() - d - 1
            per_elem = per_elem + args.beta * k3
            kl_ref = (k3 * mask).sum() / mask.sum()
        loss = aggregate(per_elem, mask, args.loss_type)
        if epoch == 0 and ro.full_logp is not None:  # exact entropy of the sampling distribution
            with torch.set_grad_enabled(args.ent_coef > 0):
                ent = -(ro.full_logp.exp() * ro.full_logp).sum(-1).mean()
        elif args.ent_coef > 0 and hasattr(policy, "entropy"):
            ent = policy.entropy(ro.states, temperature=args.temperature).mean()
        else:
            ent = -(logp.detach() * mask).sum() / mask.sum()  # sample estimate of H
        if args.ent_coef > 0:
            loss = loss - args.ent_coef * ent
        entropy = ent.detach()
        run.optimizer.zero_grad()
        timer.lap("loss")
        loss.backward()
        allreduce_mean_([p.grad for p in run.params if p.grad is not None], run.world)
        timer.lap("backward")
        grad_norm = torch.nn.utils.clip_grad_norm_(run.params, args.max_grad_norm)
        if not (math.isfinite(loss.item()) and math.isfinite(float(grad_norm))):
            stop_non_finite(run, it, f"loss {loss.item()} / gradient norm {float(grad_norm)}")
        run.optimizer.step()
        timer.lap("optimizer")
        with torch.no_grad():
            stats["policy_loss"].append(loss.item())
            stats["approx_kl"].append(((ratio - 1) - log_ratio).mean().item())
            stats["kl_ref"].append(float(kl_ref))
            stats["entropy"].append(float(entropy))
            low = ((ratio < lo) & (adv < 0)).float().mean().item()
            high = ((ratio > hi) & (adv > 0)).float().mean().item()
            stats["clip_low"].append(low)
            stats["clip_high"].append(high)
            stats["clip_ratio"].append(low + high)
            stats["grad_norm"].append(float(grad_norm))
    run.scheduler.step()
    timer.lap("loss")  # with the statistics
    if reference is not None and args.ref_sync_every and (it + 1) % args.ref_sync_every == 0:
        sync_reference(reference, policy, args.ref_sync_alpha)
    if not all(bool(torch.isfinite(p).all()) for p in run.params):
        stop_non_finite(run, it, "the policy's weights")
    return stats


def stop_non_finite(run: Run, it: int, what: str) -> None:
    """Raise :class:`NonFiniteTrainingError` naming the iteration and the last good checkpoint."""
    last = run.last_good if run.last_good is not None else latest_checkpoint(run.ckpt_root)
    where = f"last good checkpoint: {last}" if last is not None else "no checkpoint was written yet"
    raise NonFiniteTrainingError(
        f"iteration {it + 1}: {what} became non-finite (NaN/inf); stopped without saving it. "
        f"{where} (resume from it with a lower --learning-rate, or check the data/reward)"
    )


def iteration_metrics(run: Run, ro: Rollout, stats: dict[str, list[float]], t_iter: float,
                      t_start: float, steps_at_start: int, timer: Timer) -> dict[str, float]:
    """Rewards and loss statistics averaged over ranks; rank 0 adds speed and timing."""
    std_g = ro.rewards.std(dim=1)
    local = torch.tensor([
        float(ro.proxy.mean()), float(ro.gold.mean()), float(ro.rewards.mean()), float(std_g.mean()),
        float((std_g < 1e-6).float().mean()),
        *[float(np.mean(v)) for v in stats.values()],
    ], dtype=torch.float64)
    allreduce_mean_([local], run.world)
    names = ["charts/reward_proxy", "charts/reward_gold", "charts/reward", "charts/reward_std",
             "charts/frac_reward_zero_std", *[f"losses/{k}" for k in stats]]
    metrics = dict(zip(names, local.tolist()))
    if run.rank == 0:
        metrics["charts/SPS"] = (run.global_step - steps_at_start) / max(time.time() - t_start, 1e-9)
        metrics["charts/learning_rate"] = run.optimizer.param_groups[0]["lr"]
        metrics["charts/iteration_time"] = time.time() - t_iter
        for k, v in timer.phase.items():
            metrics[f"perf/{k}_time"] = v
    return metrics


def evaluate_and_checkpoint(run: Run, done: int, metrics: dict[str, float], log: Any) -> None:
    """Rank 0 after iteration ``done``: the activation image, held-out evaluation and the
    checkpoint (with ``latest``, and ``best`` / ``final`` when they apply), as due."""
    args, writer = run.args, run.writer
    if args.image_every and done % args.image_every == 0:
        log_image(run.evaluator, run.policy, writer, run.global_step, args.max_duration)
    is_last = done == args.iterations
    links: list[str] = []
    if (args.eval_every and done % args.eval_every == 0) or is_last:
        ev = run_eval(run.evaluator, run.policy, writer, run.global_step)
        metrics.update(ev)
        log.write(
            f"[iter {done}] held-out gold greedy {ev['eval/gold_greedy']:.4f} "
            f"sampled {ev['eval/gold_sampled']:.4f} | band-follow {ev['eval/gold_band_follow']:.4f} "
            f"random {ev['eval/gold_random']:.4f} | normalised {ev['eval/normalized_score']:.3f}"
        )
        if ev["eval/gold_greedy"] > run.best_gold:
            run.best_gold = ev["eval/gold_greedy"]
            links.append("best")
    if (args.checkpoint_every and done % args.checkpoint_every == 0) or is_last or links:
        writer.flush()  # everything up to this step is on disk before the checkpoint says so
        extra = {"best_gold": run.best_gold, "global_step": run.global_step, "metrics": metrics}
        path = save_checkpoint(run.ckpt_root, done, run.policy, run.optimizer, run.scheduler, extra,
                               links=("latest", *links, *(("final",) if is_last else ())))
        if run.reference is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in run.reference.state_dict().items()},
                      str(path / "reference.safetensors"))
            write_checksums(path)  # the reference is part of the checkpoint
        run.last_good = path


def finish(run: Run, last_metrics: dict[str, float], ran: bool) -> None:
    """Check the ranks agree, write hparams and the final evaluation report, close."""
    args = run.args
    interrupted = args.stop_at is not None and args.stop_at < args.iterations
    if run.world > 1:  # every rank must end with the same weights, or the all-reduce is broken
        checksum = torch.stack([p.detach().double().sum() for p in run.policy.parameters()]).sum().reshape(1)
        gathered = [torch.zeros_like(checksum) for _ in range(run.world)]
        dist.all_gather(gathered, checksum)
        if not all(torch.equal(g, gathered[0]) for g in gathered):
            raise RuntimeError(f"ranks diverged: parameter checksums {[g.item() for g in gathered]}")
    if run.rank == 0:
        if not interrupted and ran:  # a resumed finished run has logged its hparams already
            run.writer.add_hparams(
                {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in asdict(args).items()},
                {f"hparam/{k.split('/')[-1]}": v for k, v in last_metrics.items() if k.startswith("eval/")},
                run_name=".",
            )
        run.writer.close()
        report_missing = not (run.run_dir / "eval" / "report.json").exists()
        if not interrupted and args.final_report and (run.ckpt_root / "best").exists() and (ran or report_missing):
            from agents.evaluate import write_report

            write_report(policy_spec=str(run.ckpt_root / "best"), evaluator=run.evaluator, out=run.run_dir / "eval")
    run.envs.close()
    if run.world > 1:
        dist.destroy_process_group()


def train(args: Args) -> dict[str, float]:
    """GRPO: set up, then per iteration collect a rollout, compute group advantages, update,
    log, evaluate and checkpoint; returns the last iteration's metrics."""
    run = setup(args)
    G = args.num_generations
    log = progress_log(run, args)
    last_metrics: dict[str, float] = dict(run.resumed_metrics)
    t_start, steps_at_start = time.time(), run.global_step
    ran = False
    for it in range(run.start_it, args.iterations):
        t_iter, timer = time.time(), Timer()
        rollout = collect_rollout(run, it, timer)
        advantages = group_advantages(rollout.rewards, args.scale_rewards, args.adv_eps)
        stats = update_policy(run, rollout, advantages, it, timer)
        run.global_step += args.clips_per_iteration * G
        last_metrics = iteration_metrics(run, rollout, stats, t_iter, t_start, steps_at_start, timer)
        ran = True
        if run.rank == 0:
            for k, v in last_metrics.items():
                run.writer.add_scalar(k, v, run.global_step)
            log.update(it + 1, last_metrics)
            evaluate_and_checkpoint(run, it + 1, last_metrics, log)
        if args.stop_at is not None and it + 1 >= args.stop_at:
            break
    log.close()
    finish(run, last_metrics, ran)
    return last_metrics


# -- progress: a bar on a terminal, periodic plain lines in a log file --------------------------
def progress_enabled(args: Args) -> bool:
    """--progress, and stderr is a terminal (a redirected log gets plain lines instead)."""
    return bool(args.progress) and sys.stderr.isatty()


class ProgressLog:
    """tqdm on a terminal; otherwise one plain line every ``every`` iterations or
    ``seconds`` s (and at the end), so ``make train > log`` stays small."""

    def __init__(self, total: int, initial: int, enabled: bool, bar: bool,
                 every: int = 50, seconds: float = 30.0) -> None:
        self.total, self.enabled, self.every, self.seconds = total, enabled, every, seconds
        self.bar = None
        self._last = time.time()
        if enabled and bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="GRPO", dynamic_ncols=True)

    def update(self, done: int, m: dict[str, float]) -> None:
        gold, proxy, sps = m["charts/reward_gold"], m["charts/reward_proxy"], m.get("charts/SPS", 0.0)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(gold=f"{gold:.3f}", proxy=f"{proxy:.3f}", sps=f"{sps:.0f}")
            return
        now = time.time()
        if self.enabled and (done % self.every == 0 or done == self.total or now - self._last >= self.seconds):
            self._last = now
            print(f"GRPO iter {done}/{self.total} gold {gold:.3f} proxy {proxy:.3f} sps {sps:.0f}",
                  file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_log(run: Run, args: Args) -> ProgressLog:
    every = max(1, min(args.eval_every or 50, 50))
    return ProgressLog(args.iterations, run.start_it, enabled=args.progress and run.rank == 0,
                       bar=progress_enabled(args), every=every)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python agents/grpo.py --help``. Exit 3 when training became
    non-finite (the message names the iteration and the last good checkpoint)."""
    import tyro

    args = tyro.cli(Args, args=argv)
    try:
        train(args)
    except NonFiniteTrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
