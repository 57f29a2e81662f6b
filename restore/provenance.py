"""Provenance of inputs and outputs: content hashes that sidecars record and resumed batches compare."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of the file at ``path``, read in ``chunk``-byte blocks (memory stays flat)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
