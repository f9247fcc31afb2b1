"""Shared test fixtures. Keep this small: put test-specific helpers in the test files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def load_bench(name: str):
    """``bench/<name>.py`` as a module (bench/ is scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models are latency-bound; one torch thread avoids contention on shared CPUs."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_home_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """A FeatureCache() without a root must never write into the real ~/.cache in tests."""
    monkeypatch.setenv("CQTML_CACHE_DIR", str(tmp_path_factory.mktemp("cqtml-cache")))
    # SB3's default logger (``learn()`` without a tensorboard_log) makes /tmp/SB3-<date> folders
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path_factory.getbasetemp() / "sb3-log"))


# ---------------------------------------------------------------------------- show fixtures
def beat_song(seconds: float, sr: int | None = None, bpm: float = 120.0, seed: int = 0):
    """Stereo ``[n, 2]`` float32: a kick on every beat, a hat between, a slow chord."""
    import numpy as np

    from cqtml_env.contract import SAMPLE_RATE

    sr = SAMPLE_RATE if sr is None else sr
    t = np.arange(int(seconds * sr)) / sr
    beat = 60.0 / bpm
    kick = np.exp(-(t % beat) * 30) * np.sin(2 * np.pi * 55 * t)
    hat = np.random.default_rng(seed).normal(0, 1, t.size) * np.exp(-((t + beat / 2) % beat) * 60)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    chord *= 0.5 + 0.5 * np.sin(2 * np.pi * t / 8.0)
    y = 0.5 * kick + 0.15 * hat + 0.25 * chord
    return np.stack([y, 0.9 * y], axis=1).astype(np.float32)


@pytest.fixture(scope="session")
def show_song(tmp_path_factory) -> Path:
    """A 12-second steady-beat song (120 BPM) as a wav file, written once per session."""
    import soundfile as sf

    path = tmp_path_factory.mktemp("show-song") / "song.wav"
    from cqtml_env.contract import SAMPLE_RATE

    sf.write(str(path), beat_song(12.0), SAMPLE_RATE)
    return path


@pytest.fixture(scope="session")
def band_show(show_song, tmp_path_factory):
    """``make_show`` with the band follower and every file output, made once per session."""
    policy_pkg = pytest.importorskip("cqtml_policy")
    from cqtml_env.show import make_show

    out = tmp_path_factory.mktemp("show-out") / "show"
    from cqtml_env.contract import DEFAULT_FRAME_RATE

    policy = policy_pkg.BandFollowPolicy(num_devices=4, frame_rate=DEFAULT_FRAME_RATE)
    return make_show(show_song, policy, out=out, progress=False)
