"""The choices of ``--jobs``, ``--ray`` and ``--chunk-source`` (torch-free, for the command line;
the work is in :mod:`canfvc_codec.parallel`)."""

from __future__ import annotations

DEFAULT_JOBS = 1
AUTO_ADDRESS = "auto"  # --ray auto: a running Ray cluster, else a local instance
FRAMES_SOURCE, PATH_SOURCE = "frames", "path"  # how a worker gets its chunk's frames
CHUNK_SOURCES = (FRAMES_SOURCE, PATH_SOURCE)
