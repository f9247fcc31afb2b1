"""CQTML environment package: music clip -> CQT observation -> device activations -> reward.

Public names are imported lazily (PEP 562) so ``import cqtml_env`` stays cheap: it only
registers ``CQTML-v0`` and ``CQTML-v1`` with Gymnasium; torch and librosa load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cqtml_env import _moved
from cqtml_env._lazy import lazy_exports
from cqtml_env._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "CQTProcessor": "cqtml_env.features.cqt",
    "load_audio": "cqtml_env.features.audio",
    "FeatureCache": "cqtml_env.features.cache",
    "ClipDataset": "cqtml_env.datasets.base",
    "SyntheticMusic": "cqtml_env.datasets.synthetic",
    "AudioFolder": "cqtml_env.datasets.folder",
    "Windowing": "cqtml_env.datasets.windowing",
    "FreeMusic": "cqtml_env.datasets.fma",
    "MusicNet": "cqtml_env.datasets.musicnet",
    "make_dataset": "cqtml_env.datasets.spec",
    "LevelAugmented": "cqtml_env.datasets.augment",
    "Contract": "cqtml_env.contract",
    "GoldScorer": "cqtml_env.gold.scorer",
    "device_bands": "cqtml_env.contract",
    "RewardModel": "cqtml_env.reward.model",
    "PreferenceDataset": "cqtml_env.preferences.store",
    "generate_preferences": "cqtml_env.preferences.generate",
    "CQTMLEnv": "cqtml_env.env.single",
    "CQTMLVectorEnv": "cqtml_env.env.vector",
}

__all__ = ["__version__", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from cqtml_env.features.cqt import CQTProcessor  # noqa: F401


def _register() -> None:
    """Register CQTML-v0 and CQTML-v1 once (re-imports in worker processes must not
    re-register); they differ only in their gold version (``cqtml_env.versions``)."""
    from gymnasium.envs.registration import register, registry

    from cqtml_env.versions import ENV_GOLD_VERSIONS

    for env_id, version in ENV_GOLD_VERSIONS.items():
        if env_id in registry:
            continue
        register(
            id=env_id,
            entry_point="cqtml_env.env.single:CQTMLEnv",
            vector_entry_point="cqtml_env.env.vector:CQTMLVectorEnv",
            kwargs={"gold_version": version},
        )


_register()
_moved.install()
