"""The labelling page: people compare two light shows on one clip; answers feed the store.

``cqtml-label serve --data SPEC --store DIR`` (:mod:`cqtml_env.cli.label`) runs it. Pieces:
:mod:`~cqtml_env.labelling.selection` (which pair next: ``random``, ``uncertain``,
``policy``), :mod:`~cqtml_env.labelling.journal` (per-labeller fsync'd journal, merged into
the ``cqtml-prefs`` store), :mod:`~cqtml_env.labelling.service` (the session) and
:mod:`~cqtml_env.labelling.app` (FastAPI; needs the ``label`` extra).
"""

from __future__ import annotations

from cqtml_env._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Journal": "cqtml_env.labelling.journal",
    "merge_journals": "cqtml_env.labelling.journal",
    "LabellingService": "cqtml_env.labelling.service",
    "LabellingError": "cqtml_env.labelling.service",
    "ServiceConfig": "cqtml_env.labelling.service",
    "create_app": "cqtml_env.labelling.app",
    "PairSelector": "cqtml_env.labelling.selection",
    "SELECTORS": "cqtml_env.labelling.selection",
    "make_selector": "cqtml_env.labelling.selection",
    "register_selector": "cqtml_env.labelling.selection",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
