"""AudioFolder: every audio file (``cqtml_env.audio.AUDIO_EXTENSIONS``) under a folder, as clips."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cqtml_env.datasets.base import FileClipDataset
from cqtml_env.features.audio import AUDIO_EXTENSIONS


def list_audio_files(root: Path, unreadable: list[str] | None = None) -> list[Path]:
    """Audio files under ``root`` (recursive), sorted by relative path so the order (and so
    the clip indices) is the same on every machine. Hidden files and folders (``.x``, e.g.
    macOS ``._song.mp3`` resource forks) are ignored. Symlinked folders are followed (a data
    set is often a folder of links to where the music lives), each real folder once, so a
    link loop cannot recurse. Folders that cannot be listed are appended to ``unreadable``
    (never skipped silently)."""
    out = []
    seen: set[str] = set()

    def onerror(exc: OSError) -> None:
        if unreadable is not None:
            unreadable.append(str(exc.filename) if exc.filename is not None else str(root))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # reached again through a link (a loop or a second link)
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # same walk everywhere
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

    def __init__(self, root: str | os.PathLike, **options: Any) -> None:
        """``options``: the keywords of :class:`FileClipDataset` (``windowing`` or its
        fields ``max_duration``, ``min_duration``, ``clip_hop``...; ``processor``,
        ``output_format``, ``cache``, ``seed``, ``validate``, ``strict``)."""
        super().__init__(root, **options)
        if not self.root.is_dir():
            raise FileNotFoundError(f"AudioFolder: {self.root} is not a directory")
        candidates: list[tuple[Path, dict[str, Any]]] = []
        folders: list[str] = []
        for p in list_audio_files(self.root, folders):
            parent = p.parent.relative_to(self.root).as_posix()
            candidates.append((p, {"folder": "" if parent == "." else parent}))
        self._build(candidates, [(f, "unreadable: folder cannot be listed") for f in folders])


__all__ = ["AudioFolder", "list_audio_files"]
