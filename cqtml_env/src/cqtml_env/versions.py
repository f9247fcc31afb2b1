"""The registered env ids and the gold version each one scores with (one place for both).

``CQTML-v0`` keeps gold-v1 and its reward model, so results made with it stay comparable;
``CQTML-v1`` scores with gold-v5 (``docs/GOLD.md``) and the reward model trained on it. A
version only changes what the env rewards and monitors: spaces and data are the same.
"""

ENV_GOLD_VERSIONS: dict[str, str] = {"CQTML-v0": "gold-v1", "CQTML-v1": "gold-v5"}
LATEST_ENV = "CQTML-v1"

__all__ = ["ENV_GOLD_VERSIONS", "LATEST_ENV"]
