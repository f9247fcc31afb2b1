"""MusicNet: classical recordings with aligned note labels, in the published layout.

``root/{train,test}_data/<id>.wav`` (44.1 kHz mono) and ``root/{train,test}_labels/<id>.csv``
with columns start_time,end_time,instrument,note,start_beat,end_beat,note_value, where
start/end are sample indices at 44.1 kHz and instrument is a MIDI program number.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from cqtml_env.datasets.base import AudioFile, FileClipDataset
from cqtml_env.datasets.locations import data_root, missing_data_message

LABEL_SAMPLE_RATE = 44100
SPLITS = {"train": "train", "training": "train", "test": "test"}


def read_labels(path: Path) -> tuple[np.ndarray, list[str]]:
    """Note labels as a float64 array ``[n, 4]`` (start s, end s, instrument, note).

    Returns ``(notes, problems)``; a bad row is dropped and reported as "file:row: why",
    a missing or unreadable file gives no notes and one problem, never an exception.
    """
    problems: list[str] = []
    rows: list[tuple[float, float, float, float]] = []
    if not path.is_file():
        return np.zeros((0, 4)), [f"{path}: missing label file"]
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            need = {"start_time", "end_time", "instrument", "note"}
            if reader.fieldnames is None or not need <= set(reader.fieldnames):
                return np.zeros((0, 4)), [
                    f"{path}: header {reader.fieldnames} lacks columns {sorted(need)}"
                ]
            for line, rec in enumerate(reader, start=2):
                try:
                    start, end = float(rec["start_time"]), float(rec["end_time"])
                    inst, note = float(rec["instrument"]), float(rec["note"])
                    if not (np.isfinite([start, end, inst, note]).all() and end >= start >= 0):
                        raise ValueError("non-finite or end < start")
                except (TypeError, ValueError) as exc:
                    problems.append(f"{path}:{line}: {exc}")
                    continue
                rows.append((start / LABEL_SAMPLE_RATE, end / LABEL_SAMPLE_RATE, inst, note))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return np.zeros((0, 4)), [f"{path}: unreadable ({exc})"]
    arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return arr[np.argsort(arr[:, 0], kind="stable")] if arr.size else arr, problems


class MusicNet(FileClipDataset):
    """MusicNet recordings of ``split`` ("train" or "test") as clips with note labels.

    clip_info adds ``recording_id`` and ``notes``: dicts (start, end in s relative to the
    clip start, clipped to the window; instrument; note) for notes overlapping the window.
    A missing or malformed label csv never drops the recording: its clips get no notes,
    ``labels_ok`` is False, and the problems (file and row) are in ``ds.label_problems``
    and summarised in one warning.
    """

    kind = "musicnet"

    def __init__(
        self, root: str | os.PathLike | None = None, split: str = "train", **options: Any
    ) -> None:
        """``options``: the keywords of :class:`~cqtml_env.datasets.base.FileClipDataset`
        (``output_format``, ``max_duration`` and the other :class:`Windowing` fields,
        ``processor``, ``cache``, ``seed``, ``validate``, ``strict``). ``root=None``: the
        default folder (``$CQTML_DATA/musicnet``, see :mod:`cqtml_env.datasets.locations`)."""
        given = root is not None
        super().__init__(data_root("musicnet", root), **options)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        self.split = SPLITS[split]
        data_dir = self.root / f"{self.split}_data"
        label_dir = self.root / f"{self.split}_labels"
        if not data_dir.is_dir():
            raise FileNotFoundError(
                "MusicNet: " + missing_data_message("musicnet", self.root, data_dir, given)
            )
        self.label_problems: list[str] = []
        self._notes: dict[str, np.ndarray] = {}
        candidates: list[tuple[Path, dict[str, Any]]] = []
        wavs = sorted(data_dir.glob("*.wav"), key=lambda p: p.name)
        for wav in wavs:
            notes, problems = read_labels(label_dir / f"{wav.stem}.csv")
            self._notes[wav.stem] = notes
            self.label_problems.extend(problems)
            candidates.append(
                (wav, {"recording_id": wav.stem, "split": self.split, "labels_ok": not problems})
            )
        notes = []
        if self.label_problems:
            bad_files = sorted({p.split(":")[0] for p in self.label_problems})
            notes.append(
                f"MusicNet({self.root}): {len(self.label_problems)} label problem(s) in "
                f"{len(bad_files)} file(s), e.g. {'; '.join(self.label_problems[:3])}. Those "
                "recordings keep their audio and the notes that did parse (labels_ok=False). "
                "See ds.label_problems."
            )
        self._build(candidates, notes=notes)

    def _window_labels(self, f: AudioFile, offset: float) -> dict[str, Any]:
        notes = self._notes.get(f.meta["recording_id"], np.zeros((0, 4)))
        end = offset + self.max_duration
        sel = notes[(notes[:, 1] > offset) & (notes[:, 0] < end)] if notes.size else notes
        return {
            "notes": [
                {
                    "start": float(max(s, offset) - offset),
                    "end": float(min(e, end) - offset),
                    "instrument": int(i),
                    "note": int(n),
                }
                for s, e, i, n in sel
            ]
        }


__all__ = ["MusicNet", "read_labels", "LABEL_SAMPLE_RATE"]
