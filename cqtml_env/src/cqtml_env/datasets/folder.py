"""AudioFolder: every audio file (``cqtml_env.audio.AUDIO_EXTENSIONS``) under a folder, as clips."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from cqtml_env.datasets.base import FileClipDataset, OutputFormat, Validate
from cqtml_env.features.audio import AUDIO_EXTENSIONS
from cqtml_env.features.cache import FeatureCache
from cqtml_env.features.cqt import CQTProcessor


def list_audio_files(root: Path) -> list[Path]:
    """Audio files under ``root`` (recursive), sorted by relative path so the order (and so
    the clip indices) is the same on every machine. Hidden files and folders (``.x``, e.g.
    macOS ``._song.mp3`` resource forks) are ignored."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS):
                out.append(Path(dirpath) / name)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


class AudioFolder(FileClipDataset):
    """Every audio file under ``root`` (recursive, sorted, deterministic).

    Extensions: ``cqtml_env.audio.AUDIO_EXTENSIONS`` (wav, flac, ogg, opus, mp3, aiff, m4a;
    m4a/aac need PyAV, the ``show`` extra), the same list ``cqtml-show`` accepts.

    ``clip_info`` adds ``folder`` (the file's parent folder relative to root; a common way
    to encode a label such as a genre). See :class:`FileClipDataset` for windows and the
    bad-file policy.
    """

    kind = "folder"

    def __init__(
        self,
        root: str | os.PathLike,
        processor: CQTProcessor | None = None,
        max_duration: float = 5.0,
        output_format: OutputFormat = "cqt",
        cache: FeatureCache | str | os.PathLike | None = None,
        seed: int = 0,
        min_duration: float = 1.0,
        clip_hop: float | None = None,
        max_clips_per_file: int | None = None,
        clip_selection: Literal["sequential", "random"] = "sequential",
        clips_per_file: int = 1,
        validate: Validate = "probe",
        strict: bool = False,
    ) -> None:
        super().__init__(
            root, processor, max_duration, output_format, cache, seed, min_duration, clip_hop,
            max_clips_per_file, clip_selection, clips_per_file, validate, strict,
        )
        if not self.root.is_dir():
            raise FileNotFoundError(f"AudioFolder: {self.root} is not a directory")
        candidates: list[tuple[Path, dict[str, Any]]] = []
        for p in list_audio_files(self.root):
            parent = p.parent.relative_to(self.root).as_posix()
            candidates.append((p, {"folder": "" if parent == "." else parent}))
        self._build(candidates)


__all__ = ["AudioFolder", "list_audio_files"]
