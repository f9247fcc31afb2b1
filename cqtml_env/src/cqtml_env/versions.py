"""The registered env ids and the gold version each one scores with (one place for both).

``CQTML-v0`` keeps gold-v1 and its reward model, so results made with it stay comparable;
``CQTML-v1`` scores with gold-v5 (``docs/GOLD.md``) and the reward model trained on it. A
version only changes what the env rewards and monitors: spaces and data are the same.
"""

ENV_GOLD_VERSIONS: dict[str, str] = {"CQTML-v0": "gold-v1", "CQTML-v1": "gold-v5"}
LATEST_ENV = "CQTML-v1"


def env_id_for(gold_version: str) -> str:
    """The registered id scoring with ``gold_version``; the latest for a version none uses
    (pass ``gold=`` and ``reward=`` explicitly then)."""
    return next((k for k, v in ENV_GOLD_VERSIONS.items() if v == gold_version), LATEST_ENV)


__all__ = ["ENV_GOLD_VERSIONS", "LATEST_ENV", "env_id_for"]
