"""FreeMusic: the Free Music Archive (FMA) data set in its published layout.

``root/fma_{subset}/{tid:06d}[:3]/{tid:06d}.mp3`` and ``root/fma_metadata/tracks.csv`` (two
header rows: column groups album/artist/set/track; index track_id). Subsets nest
(small ⊂ medium ⊂ large ⊂ full): asking for ``medium`` keeps tracks whose
('set', 'subset') is small or medium, looked up in ``fma_medium/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cqtml_env.datasets.base import FileClipDataset
from cqtml_env.datasets.locations import data_root, missing_data_message

SUBSETS = ("small", "medium", "large", "full")
SPLITS = {
    "train": "training",
    "training": "training",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
}


def fma_audio_path(root: Path, track_id: int, subset: str = "small") -> Path:
    tid = f"{int(track_id):06d}"
    return root / f"fma_{subset}" / tid[:3] / f"{tid}.mp3"


def read_tracks(path: Path) -> Any:
    """tracks.csv as a pandas DataFrame with 2-level columns (FMA's own recipe)."""
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the 'fma' extra
        raise ImportError("FreeMusic needs pandas: pip install 'cqtml-env[fma]'") from exc
    return pd.read_csv(path, index_col=0, header=[0, 1])


class FreeMusic(FileClipDataset):
    """FMA tracks of ``subset`` (and ``split``: train/val/test or None for all) as clips.

    clip_info adds ``track_id``, ``genre_top`` (None when FMA has none), ``split``,
    ``subset`` and ``title`` / ``artist`` when present. Tracks listed in tracks.csv whose
    file is missing are skipped with reason ``missing`` (counted in the one warning).
    """

    kind = "fma"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        subset: str = "small",
        split: str | None = None,
        **options: Any,
    ) -> None:
        """``options``: the keywords of :class:`~cqtml_env.datasets.base.FileClipDataset`
        (``output_format``, ``max_duration`` and the other :class:`Windowing` fields,
        ``processor``, ``cache``, ``seed``, ``validate``, ``strict``). ``root=None``: the
        default folder (``$CQTML_DATA/fma``, see :mod:`cqtml_env.datasets.locations`)."""
        given = root is not None
        super().__init__(data_root("fma", root), **options)
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be None or one of {sorted(SPLITS)}, got {split!r}")
        self.subset = subset
        self.split = SPLITS[split] if split is not None else None
        csv = self.root / "fma_metadata" / "tracks.csv"
        if not csv.is_file():
            raise FileNotFoundError(
                "FreeMusic: " + missing_data_message("fma", self.root, csv, given)
            )
        audio_dir = self.root / f"fma_{subset}"
        if not audio_dir.is_dir():
            raise FileNotFoundError(
                "FreeMusic: " + missing_data_message("fma", self.root, audio_dir, given)
            )
        tracks = read_tracks(csv)
        if ("set", "subset") in tracks.columns and subset != "full":
            allowed = set(SUBSETS[: SUBSETS.index(subset) + 1])
            tracks = tracks[tracks[("set", "subset")].astype(str).isin(allowed)]
        if self.split is not None:
            if ("set", "split") not in tracks.columns:
                raise ValueError(f"FreeMusic: {csv} has no ('set', 'split') column")
            tracks = tracks[tracks[("set", "split")].astype(str) == self.split]

        tracks = tracks.sort_index()

        def column(group: str, name: str) -> list[Any]:
            """Values of a column as a list with NaN -> None (all None if absent)."""
            if (group, name) not in tracks.columns:
                return [None] * len(tracks)
            return [None if v != v else v for v in tracks[(group, name)].tolist()]

        cols = {
            "genre_top": column("track", "genre_top"),
            "split": column("set", "split"),
            "subset": column("set", "subset"),
            "title": column("track", "title"),
            "artist": column("artist", "name"),
        }
        candidates: list[tuple[Path, dict[str, Any]]] = []
        missing: list[tuple[str, str]] = []
        for j, tid in enumerate(tracks.index.tolist()):
            path = fma_audio_path(self.root, int(tid), subset)
            meta: dict[str, Any] = {"track_id": int(tid)}
            for key in ("genre_top", "split", "subset"):
                meta[key] = cols[key][j]
            for key in ("title", "artist"):
                if cols[key][j] is not None:
                    meta[key] = str(cols[key][j])
            if path.is_file():
                candidates.append((path, meta))
            else:
                missing.append((str(path), "missing"))
        self.num_listed = len(tracks)
        self._build(candidates, missing)

    def genres(self) -> list[str]:
        """Distinct genre_top values among usable tracks."""
        return sorted({str(f.meta["genre_top"]) for f in self.files if f.meta.get("genre_top")})


__all__ = ["FreeMusic", "fma_audio_path", "read_tracks", "SUBSETS", "SPLITS"]
