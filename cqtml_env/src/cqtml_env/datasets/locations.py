"""Where the downloadable data sets live when no ``root`` is given, and how to get them.

``FreeMusic()`` reads ``$CQTML_DATA/fma`` and ``MusicNet()`` reads ``$CQTML_DATA/musicnet``;
without ``CQTML_DATA`` the base is ``data/`` under the feature-cache folder
(``$CQTML_CACHE_DIR`` or ``~/.cache/cqtml``, see :func:`cqtml_env.features.cache.default_cache_dir`).
Nothing is downloaded automatically: a missing data set is a FileNotFoundError that says
where it looked and how to get it.

    >>> from cqtml_env.datasets.locations import data_root
    >>> data_root("fma").name
    'fma'
"""

from __future__ import annotations

import os
from pathlib import Path

from cqtml_env.features.cache import default_cache_dir

DATA_ENV_VAR = "CQTML_DATA"

HOW_TO_GET = {
    "fma": (
        "Get FMA (https://github.com/mdeff/fma): download fma_metadata.zip and fma_small.zip "
        "from https://os.unil.cloud.switch.ch/fma/ and unzip both into {root}, so that "
        "{root}/fma_metadata/tracks.csv and {root}/fma_small/000/000002.mp3 exist."
    ),
    "musicnet": (
        "Get MusicNet (https://zenodo.org/records/5120004): download musicnet.tar.gz and "
        "unpack it into {root}, so that {root}/train_data/*.wav and {root}/train_labels/*.csv "
        "exist."
    ),
}


def default_data_dir() -> Path:
    """``$CQTML_DATA``, else ``<feature cache folder>/data``."""
    env = os.environ.get(DATA_ENV_VAR)
    return Path(env).expanduser() if env else default_cache_dir() / "data"


def data_root(name: str, root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else the default folder of data set ``name`` ("fma", "musicnet")."""
    if root is not None:
        return Path(root).expanduser()
    return default_data_dir() / name


def missing_data_message(name: str, root: Path, what: Path, given: bool) -> str:
    """The error text for a data set whose files are not where they should be."""
    if given:
        where = f"{what} not found under the given root {root}"
    else:
        where = (
            f"{what} not found: no root was given, so it looked in the default folder {root} "
            f"(${DATA_ENV_VAR}/{name}, else <cache folder>/data/{name}; pass root= or set "
            f"{DATA_ENV_VAR})"
        )
    return f"{where}. " + HOW_TO_GET[name].format(root=root)


__all__ = ["DATA_ENV_VAR", "data_root", "default_data_dir", "missing_data_message", "HOW_TO_GET"]
