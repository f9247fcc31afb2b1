"""The Gymnasium env ``CQTML-v0``: the shared core, the single env, the native vector env and
the renderer. ``cqtml_env.env`` keeps the names it had when it was one module."""

from cqtml_env.env.core import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_NUM_DEVICES,
    CQTMLCore,
    Scorer,
    Scores,
    load_reward,
    resolve_dataset,
    resolve_processor,
)
from cqtml_env.env.single import CQTMLEnv

__all__ = [
    "CQTMLCore",
    "CQTMLEnv",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_NUM_DEVICES",
    "Scorer",
    "Scores",
    "load_reward",
    "resolve_dataset",
    "resolve_processor",
]
