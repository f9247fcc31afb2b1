"""The preference store: the on-disk format, its validation, loading and label merging.

On-disk format ``cqtml-prefs`` version 1 (a directory):

* ``manifest.json``: format, version, shapes, the gold config, source and labeller names,
  generation settings, and a list of shards. A *data shard* entry has ``file``, ``clips``,
  ``clip_ids``, ``candidates``, ``pairs``; a *label shard* entry (e.g. human labels) has
  ``file``, ``ref`` (the data shard its pairs index into) and ``pairs``.
* data shard (safetensors): ``cqt`` float16 ``[C, 2, F, T]`` (stored once per clip),
  ``cand_clip`` int32 ``[M]`` (clip row of each candidate), ``actions`` uint8 ``[M, D, T]``
  (activation = value / 255), ``gold`` float32 ``[M]``, ``source`` int16 ``[M]`` (index in
  ``manifest["sources"]``) and the pair columns below.
* pair columns (data and label shards alike): ``pairs`` int32 ``[P, 2]`` (candidate rows of
  the shard: first, second; both of one clip), ``label`` float32 ``[P]`` (probability that the
  first is preferred: 1, 0, or 0.5 for "equal"), ``labeller`` uint8 ``[P]`` (index in
  ``manifest["labellers"]``: oracle, bt, mistake, human).
* optional ``meta`` in a shard entry: a JSON sidecar ``{"rows": [...]}`` with one object per
  pair row of that shard (human labels: ``labeller`` name, ``time``, ``seconds`` spent,
  ``both_played``; see :mod:`cqtml_env.labelling.journal`). Stores without it load as before.

Candidates come from :mod:`cqtml_env.preferences.candidates`, labels from
:mod:`~cqtml_env.preferences.labellers`, whole directories from
:func:`~cqtml_env.preferences.generate.generate_preferences`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "cqtml-prefs"
VERSION = 1
ACTION_SCALE = 255


class PrefsFormatError(ValueError):
    """A preference directory that does not follow the format; lists file and row."""


# -- writing ----------------------------------------------------------------------------
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save_shard(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save

    _atomic_write_bytes(path, save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))


def _write_manifest(root: Path, manifest: dict) -> None:
    _atomic_write_bytes(root / "manifest.json", json.dumps(manifest, indent=1).encode())


# -- reading ----------------------------------------------------------------------------
_DATA_ARRAYS = {
    "cqt": (np.float16, 4),
    "cand_clip": (np.int32, 1),
    "actions": (np.uint8, 3),
    "gold": (np.float32, 1),
    "source": (np.int16, 1),
}
LABEL_VALUES = (0.0, 0.5, 1.0)  # P(first preferred): second, equal, first
_PAIR_ARRAYS = {"pairs": (np.int32, 2), "label": (np.float32, 1), "labeller": (np.uint8, 1)}


@dataclass
class PreferenceArrays:
    """Everything of a preference directory in memory, with global candidate rows."""

    cqt: np.ndarray  # [C, 2, F, T] float16
    cand_clip: np.ndarray  # [M] global clip row
    actions: np.ndarray  # [M, D, T] uint8
    gold: np.ndarray  # [M]
    source: np.ndarray  # [M]
    pairs: np.ndarray  # [P, 2] global candidate rows
    label: np.ndarray  # [P]
    labeller: np.ndarray  # [P]
    clip_ids: list[str]

    @property
    def pair_clip(self) -> np.ndarray:
        return self.cand_clip[self.pairs[:, 0]]

    def action_floats(self, rows) -> np.ndarray:
        return self.actions[rows].astype(np.float32) / ACTION_SCALE


class PreferenceDataset:
    """A ``cqtml-prefs`` directory: validation with file/row reports, loading, human labels.

    ``strict=True`` raises :class:`PrefsFormatError` on any bad row; ``strict=False`` drops
    bad pair rows, warns, and keeps the reports in ``self.problems``.
    """

    def __init__(self, root: str | os.PathLike, strict: bool = True) -> None:
        from cqtml_env.preferences.checks import manifest_problems, read_manifest

        self.root = Path(root)
        path = self.root / "manifest.json"
        manifest, why = read_manifest(self.root)
        if manifest is None:
            raise PrefsFormatError(why)
        self.manifest = manifest
        if self.manifest.get("format") != FORMAT:
            raise PrefsFormatError(
                f"{path}: format is {self.manifest.get('format')!r}, not {FORMAT}"
            )
        if self.manifest.get("version") != VERSION:
            raise PrefsFormatError(
                f"{path}: version {self.manifest.get('version')} not supported (expected {VERSION})"
            )
        bad = manifest_problems(self.manifest, self.root)
        if bad:
            raise PrefsFormatError(f"{self.root}: bad manifest\n  " + "\n  ".join(bad))
        self.strict = strict
        self.problems: list[str] = []
        self._arrays: PreferenceArrays | None = None

    def __repr__(self) -> str:
        return f"PreferenceDataset({str(self.root)!r}, pairs={self.num_pairs})"

    @property
    def shards(self) -> list[dict]:
        return list(self.manifest["shards"])

    @property
    def num_pairs(self) -> int:
        return int(sum(s["pairs"] for s in self.shards))

    @property
    def sources(self) -> list[str]:
        return list(self.manifest["sources"])

    def validate(self) -> list[str]:
        """All problems as ``'file row R: what'`` lines (empty list = valid)."""
        problems: list[str] = []
        self._load(problems)
        self._check_label_meta(problems)
        return problems

    def _check_label_meta(self, problems: list[str]) -> None:
        """Optional per-row sidecars of human labels (``"meta"`` in a shard entry)."""
        for entry in self.shards:
            meta = entry.get("meta")
            if meta is None:
                continue
            name = entry.get("file", "?")
            path = self.root / str(meta)
            if Path(str(meta)).name != str(meta) or not path.is_file():
                problems.append(f"{name}: label metadata {meta!r} missing")
                continue
            try:
                rows = json.loads(path.read_text()).get("rows")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
                problems.append(f"{meta}: not a JSON object with 'rows' ({exc})")
                continue
            if not isinstance(rows, list) or len(rows) != entry.get("pairs"):
                problems.append(f"{meta}: needs one row per pair ({entry.get('pairs')})")
                continue
            for r, row in enumerate(rows):
                ok = isinstance(row, dict) and isinstance(row.get("labeller"), str)
                ok = ok and all(isinstance(row.get(k), (int, float)) for k in ("time", "seconds"))
                ok = ok and isinstance(row.get("both_played"), bool) and row["seconds"] >= 0
                if not ok:
                    problems.append(
                        f"{meta} row {r}: needs labeller (str), time, seconds >= 0, both_played (bool)"
                    )

    def label_meta(self) -> list[dict]:
        """Per-row metadata of human labels (labeller name, time, seconds, both played)."""
        out: list[dict] = []
        for entry in self.shards:
            if entry.get("meta"):
                out += json.loads((self.root / entry["meta"]).read_text())["rows"]
        return out

    def load(self) -> PreferenceArrays:
        if self._arrays is None:
            problems: list[str] = []
            arrays = self._load(problems)
            self.problems = problems
            if problems:
                head = "\n  ".join(problems[:20])
                more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
                if self.strict:
                    raise PrefsFormatError(
                        f"{self.root}: {len(problems)} problem(s)\n  {head}{more}"
                    )
                warnings.warn(f"{self.root}: dropped bad rows\n  {head}{more}", stacklevel=2)
            self._arrays = arrays
        return self._arrays

    def _read(self, name: str, problems: list[str]) -> dict[str, np.ndarray] | None:
        from cqtml_env.safetensors_io import SafetensorsFileError, load_safetensors

        path = self.root / name
        if not path.is_file():
            problems.append(f"{name}: missing file")
            return None
        try:
            return load_safetensors(path, expected=f"a {FORMAT} shard")
        except SafetensorsFileError as exc:
            problems.append(str(exc))
            return None

    def _check_columns(self, name, arrs, spec, problems) -> bool:
        ok = True
        for key, (dtype, ndim) in spec.items():
            a = arrs.get(key)
            if a is None:
                problems.append(f"{name}: missing array {key!r}")
                ok = False
            elif a.dtype != dtype or a.ndim != ndim:
                problems.append(
                    f"{name}: {key} is {a.dtype}{list(a.shape)}, expected {np.dtype(dtype)} with {ndim} dims"
                )
                ok = False
        return ok

    def _check_pairs(self, name, arrs, cand_clip, problems) -> np.ndarray:
        """Boolean mask of good pair rows; each bad row is reported."""
        pairs, label, lab = arrs["pairs"], arrs["label"], arrs["labeller"]
        p = len(pairs)
        if pairs.shape[1:] != (2,) or len(label) != p or len(lab) != p:
            problems.append(
                f"{name}: pairs {list(pairs.shape)}, label {list(label.shape)}, labeller {list(lab.shape)} disagree (expected [P, 2], [P], [P])"
            )
            return None
        m = len(cand_clip)
        good = np.ones(p, bool)
        bad_idx = (pairs < 0) | (pairs >= m)
        for r in np.flatnonzero(bad_idx.any(axis=1)):
            problems.append(f"{name} row {r}: pair {pairs[r].tolist()} out of range [0, {m})")
        good &= ~bad_idx.any(axis=1)
        safe = np.clip(pairs, 0, max(m - 1, 0))
        if m:  # a candidate marked invalid (clip -1: bad gold/source/clip) is not "another clip"
            invalid = good & (cand_clip[safe] < 0).any(axis=1)
            for r in np.flatnonzero(invalid):
                problems.append(f"{name} row {r}: pair {pairs[r].tolist()} uses an invalid candidate")
            good &= ~invalid
            cross = good & (cand_clip[safe[:, 0]] != cand_clip[safe[:, 1]])
            for r in np.flatnonzero(cross):
                problems.append(f"{name} row {r}: pair {pairs[r].tolist()} mixes two clips")
            good &= ~cross
        same = good & (pairs[:, 0] == pairs[:, 1])
        for r in np.flatnonzero(same):
            problems.append(f"{name} row {r}: pair compares candidate {pairs[r, 0]} with itself")
        good &= ~same
        bad_label = ~np.isin(label, LABEL_VALUES)  # NaN is never in
        for r in np.flatnonzero(bad_label):
            problems.append(f"{name} row {r}: label {float(label[r]):.6g} not 0, 0.5 or 1")
        good &= ~bad_label
        bad_lab = lab >= len(self.manifest["labellers"])
        for r in np.flatnonzero(bad_lab):
            problems.append(f"{name} row {r}: labeller id {lab[r]} unknown")
        return good & ~bad_lab

    def _check_counts(self, entry: dict, arrs: dict, problems: list[str]) -> None:
        """The manifest's counts must be what the shard holds (a lying manifest is an error)."""
        held = {"pairs": len(arrs["pairs"])}
        if "ref" not in entry:
            held.update(clips=len(arrs["cqt"]), candidates=len(arrs["actions"]))
        i = self.shards.index(entry)
        for key, n in held.items():
            if entry.get(key) != n:
                problems.append(
                    f"manifest.json: shards[{i}].{key} is {entry.get(key)}, "
                    f"but {entry['file']} holds {n}"
                )

    def _load(self, problems: list[str]) -> PreferenceArrays:
        parts: dict[str, list] = {k: [] for k in (*_DATA_ARRAYS, *_PAIR_ARRAYS)}
        clip_ids: list[str] = []
        data_offsets: dict[str, tuple[int, np.ndarray]] = {}
        n_clips = n_cands = 0
        n_sources = len(self.manifest["sources"])
        d = self.manifest["num_devices"]
        for entry in self.shards:
            name = entry.get("file", "?")
            if "ref" in entry:
                continue
            arrs = self._read(name, problems)
            if arrs is None or not self._check_columns(
                name, arrs, {**_DATA_ARRAYS, **_PAIR_ARRAYS}, problems
            ):
                continue
            cqt, cc, acts = arrs["cqt"], arrs["cand_clip"], arrs["actions"]
            c, m = len(cqt), len(acts)
            if cqt.shape[1] != 2 or acts.shape[1] != d or acts.shape[2] != cqt.shape[3]:
                problems.append(
                    f"{name}: cqt {list(cqt.shape)} / actions {list(acts.shape)} do not match [C, 2, F, T] / [M, {d}, T]"
                )
                continue
            if len(cc) != m or len(arrs["gold"]) != m or len(arrs["source"]) != m:
                problems.append(f"{name}: cand_clip, gold and source need one row per action ({m})")
                continue
            if not np.all(np.isfinite(cqt)) or cqt.min() < 0 or cqt.max() > 1:
                problems.append(f"{name}: cqt values must be finite and in [0, 1]")
                continue
            gold, src = arrs["gold"], arrs["source"]
            checks = {
                f"cand_clip {{}} not in [0, {c})": (cc < 0) | (cc >= c),
                "gold {:.6g} not finite in [0, 1]": ~np.isfinite(gold) | (gold < 0) | (gold > 1),
                f"source {{}} not in [0, {n_sources})": (src < 0) | (src >= n_sources),
            }
            cols = (cc, gold, src)
            bad = np.zeros(m, bool)
            for (what, mask), col in zip(checks.items(), cols):
                for r in np.flatnonzero(mask):
                    problems.append(f"{name} candidate row {r}: {what.format(col[r])}")
                bad |= mask
            cc = np.where(bad, -1, cc)  # pairs touching a bad candidate are dropped
            self._check_counts(entry, arrs, problems)
            good = self._check_pairs(name, arrs, cc, problems)
            if good is None:  # pair columns disagree: keep the candidates, not the pairs
                good = np.zeros(0, bool)
                arrs = {**arrs, "pairs": np.zeros((0, 2), np.int32),
                        "label": np.zeros(0, np.float32), "labeller": np.zeros(0, np.uint8)}
            data_offsets[name] = (n_cands, cc)
            parts["cqt"].append(cqt)
            parts["cand_clip"].append(np.where(cc >= 0, cc + n_clips, -1))
            parts["actions"].append(acts)
            parts["gold"].append(arrs["gold"])
            parts["source"].append(arrs["source"])
            parts["pairs"].append(arrs["pairs"][good].astype(np.int64) + n_cands)
            parts["label"].append(arrs["label"][good])
            parts["labeller"].append(arrs["labeller"][good])
            ids = list(entry.get("clip_ids", []))
            clip_ids += ids if len(ids) == c else [f"{name}:{k}" for k in range(c)]
            n_clips += c
            n_cands += m
        for entry in self.shards:  # label shards (e.g. human labels) point into data shards
            if "ref" not in entry:
                continue
            name = entry.get("file", "?")
            if entry["ref"] not in data_offsets:
                problems.append(f"{name}: refers to {entry['ref']!r}, not a loaded data shard")
                continue
            arrs = self._read(name, problems)
            if arrs is None or not self._check_columns(name, arrs, _PAIR_ARRAYS, problems):
                continue
            base, cc = data_offsets[entry["ref"]]
            self._check_counts(entry, arrs, problems)
            good = self._check_pairs(name, arrs, cc, problems)
            if good is None:
                continue
            parts["pairs"].append(arrs["pairs"][good].astype(np.int64) + base)
            parts["label"].append(arrs["label"][good])
            parts["labeller"].append(arrs["labeller"][good])
        if not parts["cqt"]:
            problems.append(f"{self.root}: no readable data shard")
            empty = np.zeros(0)
            return PreferenceArrays(
                np.zeros((0, 2, 1, 1), np.float16),
                empty.astype(np.int64),
                np.zeros((0, d, 1), np.uint8),
                empty,
                empty,
                np.zeros((0, 2), np.int64),
                empty,
                empty,
                [],
            )
        return PreferenceArrays(
            cqt=np.concatenate(parts["cqt"]),
            cand_clip=np.concatenate(parts["cand_clip"]).astype(np.int64),
            actions=np.concatenate(parts["actions"]),
            gold=np.concatenate(parts["gold"]),
            source=np.concatenate(parts["source"]),
            pairs=np.concatenate(parts["pairs"]) if parts["pairs"] else np.zeros((0, 2), np.int64),
            label=np.concatenate(parts["label"]) if parts["label"] else np.zeros(0, np.float32),
            labeller=np.concatenate(parts["labeller"])
            if parts["labeller"]
            else np.zeros(0, np.uint8),
            clip_ids=clip_ids,
        )

    def add_labels(
        self,
        ref: str,
        pairs: np.ndarray,
        labels: np.ndarray,
        labeller: str = "human",
    ) -> str:
        """Append a label shard (e.g. human judgements) over candidates of data shard ``ref``.

        ``pairs`` ``[P, 2]`` are candidate rows *within* ``ref``; ``labels`` ``P(first
        preferred)`` in [0, 1]. Validated like any shard; returns the new file name.
        """
        if labeller not in self.manifest["labellers"]:
            raise ValueError(f"unknown labeller {labeller!r}; known: {self.manifest['labellers']}")
        pairs = np.asarray(pairs, dtype=np.int32)
        labels = np.asarray(labels, dtype=np.float32)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or labels.shape != (len(pairs),):
            raise ValueError(
                f"pairs must be [P, 2] and labels [P], got {pairs.shape}, {labels.shape}"
            )
        entry = next((s for s in self.shards if s["file"] == ref and "ref" not in s), None)
        if entry is None:
            raise ValueError(f"{ref!r} is not a data shard of {self.root}")
        arrays = {
            "pairs": pairs,
            "label": labels,
            "labeller": np.full(len(pairs), self.manifest["labellers"].index(labeller), np.uint8),
        }
        problems: list[str] = []
        cc = self._read(ref, problems)
        if cc is None:
            raise PrefsFormatError("; ".join(problems))
        bad: list[str] = []
        good = self._check_pairs("new labels", arrays, cc["cand_clip"], bad)
        if not good.all():
            raise ValueError("bad label rows:\n  " + "\n  ".join(bad[:20]))
        name = f"{labeller}-{len(self.shards):05d}.safetensors"
        _save_shard(self.root / name, arrays)
        self.manifest["shards"].append(
            {"file": name, "ref": ref, "pairs": len(pairs), "labeller": labeller}
        )
        _write_manifest(self.root, self.manifest)
        self._arrays = None
        return name


def split_clips(
    num_clips: int, val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train/held-out clip rows (held-out pairs are on clips never trained on)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(num_clips)
    n_val = max(1, int(round(num_clips * val_fraction)))
    if n_val >= num_clips:
        raise ValueError(f"need at least 2 clips to split, got {num_clips}")
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def rows_for_clips(arrays: PreferenceArrays, clips: Sequence[int]) -> np.ndarray:
    """Pair rows whose clip is in ``clips``."""
    return np.flatnonzero(np.isin(arrays.pair_clip, np.asarray(clips)))


__all__ = [
    "ACTION_SCALE",
    "FORMAT",
    "VERSION",
    "PreferenceArrays",
    "PreferenceDataset",
    "PrefsFormatError",
    "rows_for_clips",
    "split_clips",
]
