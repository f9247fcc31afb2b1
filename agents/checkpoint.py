"""Crash-safe training checkpoints: safetensors + JSON only, never pickle.

Layout under ``<run-dir>/checkpoints/``::

    iter-000100/          one complete checkpoint (written to a temp dir, then renamed)
        model.safetensors + config.json   (the policy's own save_pretrained)
        optimizer.safetensors              (optimizer tensors, flattened)
        trainer.json                       (iteration, scheduler, RNG states, param groups, extra)
        checksums.json                     (SHA-256 of each file, verified on load)
    latest -> iter-000100 best -> iter-000075 final -> iter-000300   (symlinks)

Every publish is a ``rename``/``os.replace``, which POSIX makes atomic, so a ``kill -9`` at
any moment leaves each name pointing at a complete checkpoint (or not existing yet).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from cqtml_env.safetensors_io import load_safetensors

CKPT_PREFIX = "iter-"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a small text file so readers see the old or the new content, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def point_link(link: Path, target_name: str) -> None:
    """Atomically (re)point the symlink ``link`` at the sibling ``target_name``."""
    tmp = link.parent / f".{link.name}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target_name, tmp)
    os.replace(tmp, link)
    _fsync_dir(link.parent)


# -- optimizer state <-> safetensors + JSON ------------------------------------------------
def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, kv in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(kv)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# -- RNG states as JSON -----------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    py = random.getstate()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available()
        else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = dict(state["numpy"])
    np_state["state"] = {k: np.asarray(v, dtype=np.uint32) if isinstance(v, list) else v
                         for k, v in np_state["state"].items()}
    np.random.set_state(np_state)
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


# -- whole checkpoints --------------------------------------------------------------------
def save_checkpoint(
    ckpt_root: str | os.PathLike,
    iteration: int,
    policy: Any,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    extra: dict[str, Any] | None = None,
    links: tuple[str, ...] = ("latest",),
    keep_last: int = 3,
) -> Path:
    """Write ``iter-<iteration>`` completely, then publish it under ``links`` atomically."""
    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"{CKPT_PREFIX}{iteration:06d}"
    final = root / name
    if not final.exists():
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
        policy.save_pretrained(tmp)
        trainer: dict[str, Any] = {"iteration": int(iteration), "rng": rng_state(), "extra": extra or {}}
        if optimizer is not None:
            tensors, meta = optimizer_to_tensors(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            trainer["optimizer"] = meta
        if scheduler is not None:
            trainer["scheduler"] = {
                k: v for k, v in scheduler.state_dict().items() if not callable(v) and k != "lr_lambdas"
            }
        (tmp / "trainer.json").write_text(json.dumps(trainer, default=_json_default))
        write_checksums(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(root)
    for link in links:
        point_link(root / link, name)
    _prune(root, keep_last)
    return final


def _prune(root: Path, keep_last: int) -> None:
    """Drop old checkpoints no link points at, and temp dirs left by a crash."""
    pinned = {os.readlink(p) for p in root.iterdir() if p.is_symlink()}
    ckpts = sorted(p for p in root.iterdir() if p.name.startswith(CKPT_PREFIX) and p.is_dir())
    for p in ckpts[:-keep_last] if keep_last > 0 else []:
        if p.name not in pinned:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.iterdir():
        # temp dirs of a write killed midway were never published: safe to drop (one writer)
        if p.name.startswith(f".{CKPT_PREFIX}") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def load_trainer_state(
    ckpt_dir: str | os.PathLike,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore optimizer/scheduler/RNG from a checkpoint dir; returns trainer.json's content."""
    ckpt_dir = Path(ckpt_dir)
    trainer = json.loads((ckpt_dir / "trainer.json").read_text())
    if optimizer is not None and "optimizer" in trainer:
        tensors = load_safetensors(
            ckpt_dir / "optimizer.safetensors", expected="optimizer state", backend="torch"
        )
        optimizer_from_tensors(optimizer, tensors, trainer["optimizer"])
    if scheduler is not None and "scheduler" in trainer:
        scheduler.load_state_dict({**scheduler.state_dict(), **trainer["scheduler"]})
    if restore_rng:
        set_rng_state(trainer["rng"])
    return trainer


def latest_checkpoint(ckpt_root: str | os.PathLike, verify: bool = True) -> Path | None:
    """The checkpoint to resume from: ``latest``'s target if it is intact, else (with a
    warning naming the bad one) the newest intact ``iter-*``; ``None`` when there is none.
    A dangling ``latest`` link never hides older intact checkpoints."""
    root = Path(ckpt_root)
    link = root / "latest"
    candidates: list[Path] = []
    if link.is_symlink() or link.exists():
        if link.exists():
            candidates.append(link.resolve())
        else:
            warnings.warn(f"{link} points at {os.readlink(link)!r}, which does not exist; "
                          "looking for an older intact checkpoint", stacklevel=2)
    if root.is_dir():
        older = sorted((p for p in root.iterdir() if p.name.startswith(CKPT_PREFIX) and p.is_dir()),
                       reverse=True)
        candidates += [p.resolve() for p in older if p.resolve() not in candidates]
    for cand in candidates:
        if not verify:
            return cand
        try:
            verify_checkpoint(cand)
        except CorruptCheckpointError as exc:
            warnings.warn(f"skipping corrupt checkpoint: {exc}", stacklevel=2)
            continue
        return cand
    return None


# -- integrity: a checksum per file at save, verified (with finite tensors) on load ----------
CHECKSUMS_NAME = "checksums.json"


class CorruptCheckpointError(ValueError):
    """A checkpoint whose files do not match their checksums, or hold NaN/inf tensors."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(ckpt_dir: str | os.PathLike) -> Path:
    """Write ``checksums.json`` (SHA-256 of every other file) into a checkpoint directory."""
    d = Path(ckpt_dir)
    sums = {f.name: _sha256(f) for f in sorted(d.iterdir())
            if f.is_file() and f.name != CHECKSUMS_NAME and not f.name.startswith(".")}
    atomic_write_text(d / CHECKSUMS_NAME, json.dumps(sums, indent=1, sort_keys=True))
    return d / CHECKSUMS_NAME


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or inf."""
    return [k for k, v in tensors.items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def verify_checkpoint(ckpt_dir: str | os.PathLike) -> None:
    """Raise :class:`CorruptCheckpointError` naming the file unless every file matches
    ``checksums.json`` (when the checkpoint has one) and every saved tensor is finite."""
    d = Path(ckpt_dir)
    sums_path = d / CHECKSUMS_NAME
    if sums_path.is_file():
        try:
            sums = json.loads(sums_path.read_text())
        except (OSError, ValueError) as exc:
            raise CorruptCheckpointError(f"{sums_path}: unreadable ({exc})") from None
        for name, want in sums.items():
            f = d / name
            if not f.is_file():
                raise CorruptCheckpointError(f"{f}: missing (listed in {CHECKSUMS_NAME})")
            if _sha256(f) != want:
                raise CorruptCheckpointError(f"{f}: checksum mismatch (file changed after it was saved)")
    for name in ("model.safetensors", "optimizer.safetensors", "reference.safetensors"):
        f = d / name
        if not f.is_file():
            if name == "model.safetensors":
                raise CorruptCheckpointError(f"{f}: missing")
            continue
        try:
            tensors = load_file(str(f))
        except Exception as exc:  # safetensors raises its own error types
            raise CorruptCheckpointError(f"{f}: unreadable ({type(exc).__name__}: {exc})") from None
        bad = non_finite_tensors(tensors)
        if bad:
            raise CorruptCheckpointError(f"{f}: non-finite values (NaN/inf) in {bad[:5]}")
    try:
        json.loads((d / "trainer.json").read_text())
    except FileNotFoundError:
        pass  # a plain saved policy (no trainer state) is still a valid policy checkpoint
    except (OSError, ValueError) as exc:
        raise CorruptCheckpointError(f"{d / 'trainer.json'}: unreadable ({exc})") from None


# -- warm starts: a saved policy's weights into a fresh policy ---------------------------------
def resolve_policy_dir(path: str | os.PathLike) -> Path:
    """The saved-policy directory ``path`` names: a policy directory itself (``config.json`` +
    ``model.safetensors``, e.g. ``iter-000100``, ``best`` or an ``agents/sft.py`` output), or a
    checkpoints root / run directory, whose ``latest`` checkpoint is taken."""
    p = Path(path)
    for cand in (p, p / "latest", p / "checkpoints" / "latest"):
        if (cand / "config.json").is_file():
            return cand.resolve()
    raise FileNotFoundError(
        f"{p}: not a saved policy (expected a directory with config.json and model.safetensors, "
        "or a checkpoints root / run directory with a 'latest' checkpoint)"
    )


def load_policy_weights(path: str | os.PathLike) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """``(policy_name, config, state_dict)`` of a saved policy, without building it.

    This is the format ``policy.save_pretrained`` and :func:`save_checkpoint` write (and
    ``agents/sft.py``'s warm starts): ``config.json`` = ``{"model_type", "config"}`` plus
    ``model.safetensors``. ``policy_name`` is the registry's canonical name (``cnn``, ``vit``;
    0.1 names such as ``cqt_cnn`` are mapped). Raises ``ValueError`` naming the file when it
    holds no weights.

        >>> name, config, state = load_policy_weights("runs/sft/checkpoints/best")  # doctest: +SKIP
    """
    from cqtml_policy import io, registry

    d = resolve_policy_dir(path)
    model_type, config = io.read_config(d)
    try:
        name = registry.canonical_name(model_type)
    except ValueError:
        name = model_type
    state = io.read_weights(d)
    if not state:
        raise ValueError(f"{d / io.WEIGHTS_NAME}: missing; the {name!r} policy in {d} has no weights")
    return name, config, state


def init_policy_from(policy: Any, path: str | os.PathLike, expected_name: str) -> Path:
    """Load the weights saved at ``path`` into ``policy`` (an ``expected_name`` policy, already
    built for this run's shapes). A different kind of policy, missing/unexpected tensors or a
    shape mismatch is a ``ValueError`` naming the file and what this run expected. Returns the
    resolved directory."""
    from cqtml_policy import registry

    d = resolve_policy_dir(path)
    name, config, state = load_policy_weights(d)
    want = registry.canonical_name(expected_name)
    # registry names that share a class (vit, vit-small) differ only in size: the shape check
    # below names any mismatch
    if name != want and registry.policy_class(name) is not registry.policy_class(want):
        raise ValueError(
            f"--init-from {d}: holds a {name!r} policy but this run trains a {want!r} policy "
            f"(pass --policy {name}, or a {want!r} checkpoint)"
        )
    bad = non_finite_tensors(state)
    if bad:
        raise ValueError(f"--init-from {d / 'model.safetensors'}: non-finite weights (NaN/inf) in {bad[:5]}")
    own = policy.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)}, expected {tuple(own[k].shape)}"
        for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        ours = policy.get_config() if hasattr(policy, "get_config") else {}
        differs = {k: (config.get(k), v) for k, v in ours.items() if config.get(k) != v}
        parts = []
        if shapes:
            parts.append("shape mismatch: " + "; ".join(shapes[:5]))
        if missing:
            parts.append(f"missing tensors: {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected tensors: {unexpected[:5]}")
        if differs:
            parts.append("config (file, this run): " + ", ".join(f"{k}={a!r}/{b!r}" for k, (a, b) in differs.items()))
        raise ValueError(
            f"--init-from {d / 'model.safetensors'}: does not fit this run's {want!r} policy; "
            + " | ".join(parts)
        )
    policy.load_state_dict(state)  # names and shapes checked above; copies cast dtype/device
    return d
