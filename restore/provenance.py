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


def input_digest(path: Path, series_uid: str | None = None) -> str:
    """SHA-256 of a file, or of the files of a DICOM series (:func:`restore.mri.dicom.series_digest`)."""
    path = Path(path)
    if path.is_dir() or series_uid is not None:
        from restore.mri.dicom import series_digest

        return series_digest(path, series_uid)
    return sha256_of(path)
