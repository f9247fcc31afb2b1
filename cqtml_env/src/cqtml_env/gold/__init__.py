"""The gold scorer: a documented, deterministic stand-in for a human judge (``docs/GOLD.md``)."""

from cqtml_env.gold.scorer import (
    COMPONENTS,
    DEFAULT_WEIGHTS,
    GOLD_V2,
    GOLD_VERSIONS,
    V2_WEIGHTS,
    ClipFeatures,
    GoldConfig,
    GoldScorer,
    count_transitions,
    device_bands,
    rise,
)

__all__ = [
    "COMPONENTS",
    "DEFAULT_WEIGHTS",
    "GOLD_V2",
    "GOLD_VERSIONS",
    "V2_WEIGHTS",
    "ClipFeatures",
    "GoldConfig",
    "GoldScorer",
    "count_transitions",
    "device_bands",
    "rise",
]
