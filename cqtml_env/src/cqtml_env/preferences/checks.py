"""Structural checks of a preference store's ``manifest.json``, before any shard is opened.

Every problem names the file, the shard entry (``shards[i]``) and the field, e.g.
``manifest.json: shards[1].pairs is '12' (str), expected an int >= 0``. Shard files must be
plain names inside the store directory: ``../x``, absolute paths and links that leave the
store are refused, so a manifest can never make the loader read a file elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MANIFEST = "manifest.json"


def read_manifest(root: Path) -> tuple[dict | None, str | None]:
    """The parsed manifest of ``root``, or ``(None, why)`` naming the file."""
    path = root / MANIFEST
    if not path.is_file():
        return None, f"{path}: no manifest (not a cqtml-prefs directory)"
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{path}: invalid JSON ({exc})"
    if not isinstance(manifest, dict):
        return None, f"{path}: top level is a JSON {_kind(manifest)}, expected an object"
    return manifest, None


def _kind(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(v), type(v).__name__
    )


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _str_list(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, str) and x for x in v)


def member_problem(root: Path, name: str) -> str | None:
    """Why ``name`` is not a safe file name inside ``root`` (None when it is)."""
    if not name or name in (".", "..") or name != Path(name).name or "\\" in name:
        return "must be a plain file name inside the store (no folders, '..' or absolute paths)"
    target = root / name
    if target.is_symlink() or target.exists():
        real_root = os.path.realpath(root)
        real = os.path.realpath(target)
        if os.path.commonpath([real_root, real]) != real_root:
            return f"resolves to {real}, outside the store"
    return None


def manifest_problems(manifest: dict, root: Path) -> list[str]:
    """Every field of the manifest that does not follow the format (empty list = fine)."""
    f = MANIFEST
    out: list[str] = []
    d = manifest.get("num_devices")
    if not (_is_count(d) and d > 0):
        out.append(f"{f}: num_devices is {d!r}, expected an int > 0")
    for key in ("sources", "labellers"):
        if not _str_list(manifest.get(key)):
            out.append(f"{f}: {key} is {manifest.get(key)!r}, expected a list of names")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        what = "missing" if shards is None else f"a JSON {_kind(shards)}"
        out.append(f"{f}: shards is {what}, expected a list of shard entries")
        return out
    seen: set[str] = set()
    data_names = {
        s["file"] for s in shards
        if isinstance(s, dict) and "ref" not in s and isinstance(s.get("file"), str)
    }
    for i, s in enumerate(shards):
        at = f"{f}: shards[{i}]"
        if not isinstance(s, dict):
            out.append(f"{at} is a JSON {_kind(s)}, expected an object")
            continue
        name = s.get("file")
        if not isinstance(name, str):
            out.append(f"{at}.file is {name!r}, expected a file name")
        else:
            why = member_problem(root, name)
            if why:
                out.append(f"{at}.file {name!r} {why}")
            elif name in seen:
                out.append(f"{at}.file {name!r} is listed twice")
            seen.add(name)
        keys = ("pairs",) if "ref" in s else ("clips", "candidates", "pairs")
        for key in keys:
            if key not in s:
                out.append(f"{at}.{key} is missing, expected an int >= 0")
            elif not _is_count(s[key]):
                out.append(
                    f"{at}.{key} is {s[key]!r} ({_kind(s[key])}), expected an int >= 0"
                )
        if "ref" in s:
            if not isinstance(s["ref"], str) or s["ref"] not in data_names:
                out.append(f"{at}.ref is {s['ref']!r}, expected the file of a data shard")
        elif "clip_ids" in s:
            ids = s["clip_ids"]
            if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
                out.append(f"{at}.clip_ids is {ids!r:.60}, expected a list of strings")
            elif _is_count(s.get("clips")) and len(ids) != s["clips"]:
                out.append(f"{at}.clip_ids has {len(ids)} ids, but clips is {s['clips']}")
        if "meta" in s:
            why = (member_problem(root, s["meta"]) if isinstance(s["meta"], str)
                   else "expected a file name")
            if why:
                out.append(f"{at}.meta {s['meta']!r} {why}")
    return out


__all__ = ["MANIFEST", "manifest_problems", "member_problem", "read_manifest"]
