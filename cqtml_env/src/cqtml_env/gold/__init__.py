"""The gold scorer: a documented, deterministic stand-in for a human judge (``docs/GOLD.md``)."""

from cqtml_env.gold import scorer as _scorer
from cqtml_env.gold.scorer import *  # noqa: F403  (the public surface is scorer.__all__)

__all__ = list(_scorer.__all__)
