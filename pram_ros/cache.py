"""A folder for results that are slow to compute and depend only on their inputs.

Exporting a network to ONNX (pram_ros/inference.py) and finding each map point's look-alike
(registration.py) take seconds at every start of a node or a tool; both are kept here,
each file named by a hash of everything its content depends on, so a changed input is a
new file and never a stale one. The folder is PRAM_CACHE_DIR, else $XDG_CACHE_HOME/pram_ros
or ~/.cache/pram_ros; deleting it is always safe. A cache that cannot be read or written
is skipped, never an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    if os.environ.get("PRAM_CACHE_DIR"):
        return Path(os.environ["PRAM_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "pram_ros"


def content_key(*parts) -> str:
    """A hash of the parts: bytes and arrays by their content, anything else by its repr."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype.str}{part.shape}".encode())
            part = np.ascontiguousarray(part).tobytes()
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def cache_path(kind: str, key: str, suffix: str) -> Path:
    return cache_dir() / kind / f"{key}{suffix}"


def read_cached(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def write_cached(path: Path, data: bytes) -> None:
    """Atomically (another process never reads half a file); skipped when it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        partial.replace(path)
    except OSError as error:
        logger.debug("cannot cache %s: %s", path, error)
