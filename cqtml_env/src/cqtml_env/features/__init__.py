"""Audio in, CQT out: decoding (``audio``), the Constant-Q Transform (``cqt``) and the on-disk
feature cache (``cache``). The first step of the data flow (docs/ARCHITECTURE.md)."""

from cqtml_env.features.audio import (
    AUDIO_EXTENSIONS,
    AudioLoadError,
    BadClipError,
    audio_info,
    display_path,
    load_audio,
)
from cqtml_env.features.cache import FeatureCache, as_cache, default_cache_dir, file_identity
from cqtml_env.features.cqt import CQTConfig, CQTProcessor, frames_for, seconds_to_frames

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioLoadError",
    "BadClipError",
    "CQTConfig",
    "CQTProcessor",
    "FeatureCache",
    "as_cache",
    "audio_info",
    "default_cache_dir",
    "display_path",
    "file_identity",
    "frames_for",
    "load_audio",
    "seconds_to_frames",
]
