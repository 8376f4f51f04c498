"""Where canfvc keeps its files outside the repository: the user cache and the user's models.

- the cache: ``$CANFVC_CACHE``, else ``~/.cache/canfvc`` (clips, decoded training frames,
  photographs, and the user's models unless they live elsewhere);
- the user's model folder: ``$CANFVC_MODELS``, else ``models/`` in the cache.

Both the model loader (:mod:`canfvc_codec.weights`) and the data fetcher
(:mod:`canfvc_codec.datasets`) follow these rules. This module imports neither, so that loading a
model never imports the fetcher (which runs ffmpeg, pip and apt-get).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "CANFVC_CACHE"
MODELS_ENV = "CANFVC_MODELS"
USER_MODELS_SUBDIR = "models"


def cache_dir() -> Path:
    """The cache root: ``$CANFVC_CACHE``, else ``~/.cache/canfvc``; created on demand."""
    root = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "canfvc"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def user_models_dir() -> Path:
    """The user's model folder: ``$CANFVC_MODELS``, else ``models/`` in the cache."""
    folder = os.environ.get(MODELS_ENV)
    return Path(folder) if folder else cache_dir() / USER_MODELS_SUBDIR
