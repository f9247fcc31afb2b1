"""Shared test fixtures. Keep this small: put test-specific helpers in the test files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def tone(seconds: float, sr: int = 22050, freq: float = 440.0, amp: float = 0.5,
         channels: int = 1) -> np.ndarray:
    """A sine as float32 ``[samples, channels]`` (soundfile's layout)."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


@pytest.fixture
def write_audio() -> Callable[..., Path]:
    """``write_audio(path, seconds=1.5, sr=22050, freq=440, amp=0.5, channels=1)`` -> path."""
    import soundfile as sf

    def _write(path: Path, seconds: float = 1.5, sr: int = 22050, freq: float = 440.0,
               amp: float = 0.5, channels: int = 1) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), tone(seconds, sr, freq, amp, channels), sr)
        return path

    return _write


@pytest.fixture(autouse=True)
def _no_home_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """A FeatureCache() without a root must never write into the real ~/.cache in tests."""
    monkeypatch.setenv("CQTML_CACHE_DIR", str(tmp_path_factory.mktemp("cqtml-cache")))
