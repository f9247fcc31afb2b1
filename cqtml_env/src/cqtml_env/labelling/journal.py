"""Per-labeller append-only journals and their merge into a ``cqtml-prefs`` store.

Every answer a person gives is one JSON line in ``STORE/journal/<labeller>.jsonl``, written,
flushed and ``fsync``-ed *before* the page is told it was saved. The journal is
self-contained: a line holds both shows (uint8 levels, base64), the clip's index and id, the
answer, the time, the seconds spent and whether the clip was played through.

:func:`merge_journals` turns journal answers not yet in the store into a new *data shard*
(the clips' CQTs, the two shows of every answer, their gold scores, and the pairs labelled
``labeller="human"``) plus a JSON *sidecar* with the per-row metadata (labeller name, time,
seconds, both played), referenced from the manifest entry as ``"meta"``. Shard, sidecar and
manifest are each written atomically and the manifest goes last, so a crash at any point
leaves either the old store or the new one; answers whose id is not in a sidecar listed by
the manifest are merged again on the next start. An ``undo`` line cancels the answer it
names (only a labeller's latest, not yet merged, answer can be undone).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.preferences.labellers import LABELLERS
from cqtml_env.preferences.store import (
    ACTION_SCALE,
    FORMAT,
    VERSION,
    _atomic_write_bytes,
    _save_shard,
    _write_manifest,
)

META_FORMAT = "cqtml-prefs-human"
META_VERSION = 1
CHOICES = {"a": 1.0, "b": 0.0, "tie": 0.5, "skip": None}


def encode_levels(actions: np.ndarray) -> str:
    """``[D, T]`` uint8 levels -> base64 text (what journal lines hold)."""
    a = np.ascontiguousarray(actions, dtype=np.uint8)
    return base64.b64encode(a.tobytes()).decode("ascii")


def decode_levels(text: str, shape: Iterable[int]) -> np.ndarray:
    shape = tuple(int(s) for s in shape)
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != int(np.prod(shape)):
        raise ValueError(f"levels hold {len(raw)} bytes, expected {shape}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()


class Journal:
    """One append-only JSON-lines file per labeller; :meth:`append` returns once on disk."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, labeller: str) -> Path:
        return self.dir / f"{labeller}.jsonl"

    def _lock(self, labeller: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(labeller, threading.Lock())

    def append(self, labeller: str, record: dict[str, Any]) -> None:
        """Append one line, flush and fsync it (the caller acknowledges only afterwards)."""
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        path = self.path(labeller)
        with self._lock(labeller):
            new = not path.exists()
            with open(path, "ab") as f:
                if not new and f.tell() > 0:
                    with open(path, "rb") as r:  # a torn last line (crash mid-write) ends here
                        r.seek(-1, os.SEEK_END)
                        if r.read(1) != b"\n":
                            f.write(b"\n")
                f.write(line.encode())
                f.flush()
                os.fsync(f.fileno())
            if new:
                _fsync_dir(self.dir)

    def read(self, labeller: str | None = None) -> tuple[list[dict], int]:
        """All good lines (of one labeller or all), and how many lines were unreadable."""
        files = [self.path(labeller)] if labeller else sorted(self.dir.glob("*.jsonl"))
        out, bad = [], 0
        for p in files:
            if not p.is_file():
                continue
            for raw in p.read_bytes().split(b"\n"):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    bad += 1  # a torn line from a crash: never acknowledged
                    continue
                if isinstance(rec, dict) and rec.get("kind") in ("answer", "undo"):
                    out.append(rec)
                else:
                    bad += 1
        return out, bad


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def effective_answers(records: list[dict]) -> list[dict]:
    """Answers not undone, the last one per (labeller, pair), in journal order."""
    undone = {r["id"] for r in records if r.get("kind") == "undo"}
    last: dict[tuple[str, str], dict] = {}
    for r in records:
        if r.get("kind") == "answer" and r["id"] not in undone:
            last[(r["labeller"], r["pair"])] = r
    return sorted(last.values(), key=lambda r: (r["time"], r["id"]))


class StoreLock:
    """An exclusive lock on a store directory (one labelling server per store)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._f = open(root / ".label.lock", "w")  # noqa: SIM115 - held for the server's life
        try:
            fcntl.flock(self._f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.close()
            raise RuntimeError(
                f"{root} is in use by another cqtml-label server (lock {root / '.label.lock'})"
            ) from None

    def release(self) -> None:
        if not self._f.closed:
            fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()


@dataclass
class MergeResult:
    merged: int = 0
    shard: str | None = None
    bad_lines: int = 0
    skipped: list[str] = field(default_factory=list)


def _new_manifest(num_devices: int, gold: dict, description: str) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "description": description,
        "num_devices": int(num_devices),
        "action_scale": ACTION_SCALE,
        "gold": gold,
        "sources": [],
        "labellers": list(LABELLERS),
        "generation": {"labelling": "cqtml-label serve"},
        "shards": [],
    }


def read_manifest(root: Path) -> dict | None:
    path = root / "manifest.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def merged_ids(root: Path, manifest: dict | None = None) -> set[str]:
    """Ids of the journal answers already in the store (from the manifest's sidecars)."""
    manifest = manifest if manifest is not None else read_manifest(root)
    ids: set[str] = set()
    for entry in (manifest or {}).get("shards", []):
        meta = entry.get("meta")
        if not meta or not (root / meta).is_file():
            continue
        try:
            rows = json.loads((root / meta).read_text()).get("rows", [])
        except json.JSONDecodeError:
            continue
        ids.update(str(r.get("id")) for r in rows)
    return ids


def merge_journals(
    root: str | os.PathLike,
    journal: Journal,
    clip_cqt: Callable[[int, str], np.ndarray],
    scorer: Any,
    *,
    ready: Callable[[dict], bool] | None = None,
    description: str = "human labels from cqtml-label",
) -> MergeResult:
    """Merge every journal answer that is ``ready`` and not yet in the store into one shard.

    ``clip_cqt(clip_index, clip_id)`` returns the clip's CQT ``[2, F, T]`` (raising if the data
    set no longer has that clip: those answers stay in the journal and are reported).
    """
    root = Path(root)
    records, bad = journal.read()
    res = MergeResult(bad_lines=bad)
    manifest = read_manifest(root)
    done = merged_ids(root, manifest)
    todo = [
        r
        for r in effective_answers(records)
        if r["id"] not in done
        and CHOICES.get(r.get("choice")) is not None
        and (ready is None or ready(r))
    ]
    if not todo:
        return res
    if manifest is None:
        manifest = _new_manifest(scorer.config.num_devices, scorer.config.to_dict(), description)
    if "human" not in manifest["labellers"]:
        manifest["labellers"].append("human")
    d = int(manifest["num_devices"])
    clips: dict[tuple[int, str], int] = {}
    cqts: list[np.ndarray] = []
    cand_clip, actions, sources, pairs, labels, rows = [], [], [], [], [], []
    for r in todo:
        key = (int(r["clip"]), str(r["clip_id"]))
        try:
            if key not in clips:
                cqt = np.asarray(clip_cqt(*key), dtype=np.float32)
                if cqts and cqt.shape != cqts[0].shape:
                    raise ValueError(f"CQT shape {cqt.shape} differs from {cqts[0].shape}")
                clips[key] = len(cqts)
                cqts.append(cqt)
            t = cqts[clips[key]].shape[-1]
            pa = decode_levels(r["a"]["levels"], (d, t))
            pb = decode_levels(r["b"]["levels"], (d, t))
        except Exception as exc:  # keep it in the journal, report it
            res.skipped.append(f"{journal.path(r['labeller']).name} answer {r['id']}: {exc}")
            continue
        row = clips[key]
        base = len(actions)
        for show in (r["a"], r["b"]):
            src = str(show.get("source", "unknown"))
            if src not in manifest["sources"]:
                manifest["sources"].append(src)
            sources.append(manifest["sources"].index(src))
            cand_clip.append(row)
        actions += [pa, pb]
        pairs.append((base, base + 1))
        labels.append(CHOICES[r["choice"]])
        rows.append(
            {
                "id": r["id"],
                "labeller": r["labeller"],
                "time": float(r["time"]),
                "seconds": float(r.get("seconds", 0.0)),
                "both_played": bool(r.get("both_played", False)),
                "played_fraction": float(r.get("played_fraction", 0.0)),
                "pair": r["pair"],
                "choice": r["choice"],
                "selection": r.get("selection", ""),
                "model_margin": r.get("model_margin"),
            }
        )
    if not rows:
        return res
    cqt_arr = np.stack(cqts)
    acts = np.stack(actions)
    cc = np.asarray(cand_clip)
    gold = np.zeros(len(acts), np.float32)
    for c in range(len(cqts)):  # one feature pass per clip
        rows_c = np.flatnonzero(cc == c)
        gold[rows_c] = np.atleast_1d(
            scorer.score(cqt_arr[c], acts[rows_c].astype(np.float32) / ACTION_SCALE)
        )
    n = len(manifest["shards"])
    stem = f"human-{n:05d}"
    while (root / f"{stem}.safetensors").exists() and any(
        s["file"] == f"{stem}.safetensors" for s in manifest["shards"]
    ):
        n += 1
        stem = f"human-{n:05d}"
    arrays = {
        "cqt": np.clip(cqt_arr, 0, 1).astype(np.float16),
        "cand_clip": np.asarray(cand_clip, np.int32),
        "actions": acts.astype(np.uint8),
        "gold": np.clip(gold, 0, 1),
        "source": np.asarray(sources, np.int16),
        "pairs": np.asarray(pairs, np.int32).reshape(-1, 2),
        "label": np.asarray(labels, np.float32),
        "labeller": np.full(len(pairs), manifest["labellers"].index("human"), np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    _save_shard(root / f"{stem}.safetensors", arrays)
    meta = {"format": META_FORMAT, "version": META_VERSION, "rows": rows}
    _atomic_write_bytes(root / f"{stem}.meta.json", json.dumps(meta, indent=0).encode())
    manifest["shards"].append(
        {
            "file": f"{stem}.safetensors",
            "clips": len(cqts),
            "clip_ids": [k[1] for k in clips],
            "candidates": len(acts),
            "pairs": len(pairs),
            "labeller": "human",
            "meta": f"{stem}.meta.json",
        }
    )
    _write_manifest(root, manifest)  # the commit point
    _fsync_dir(root)
    res.merged, res.shard = len(rows), f"{stem}.safetensors"
    return res


__all__ = [
    "CHOICES",
    "Journal",
    "MergeResult",
    "StoreLock",
    "decode_levels",
    "effective_answers",
    "encode_levels",
    "merge_journals",
    "merged_ids",
]
