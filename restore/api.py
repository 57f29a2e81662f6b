"""Python API: restore one file of any supported kind, dispatching on its type.

Every restore function below writes ``output`` and its JSON sidecar atomically and returns the
sidecar record, which always holds::

    {"kind": "mri" | "audio", "input": {"path", "sha256"}, "output": str,
     "model": {"name", "version"}, "params": {...}, "metrics": {...}, "timing": {"seconds"}}

Bad input raises :class:`restore.errors.InputError` before anything is written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from restore.errors import InputError

Kind = Literal["mri", "audio"]
MRI_SUFFIXES = (".nii", ".nii.gz")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def kind_of(path: Path) -> Kind:
    """``mri`` for NIfTI and DICOM (a series folder or a file), ``audio`` for WAV/FLAC/OGG/MP3;
    anything else is an InputError."""
    name = Path(path).name.lower()
    if name.endswith(MRI_SUFFIXES):
        return "mri"
    if name.endswith(AUDIO_SUFFIXES):
        return "audio"
    from restore.mri.dicom import is_dicom_input

    if is_dicom_input(Path(path)):
        return "mri"
    raise InputError(
        f"unsupported file type: {Path(path).name} (expected {', '.join(MRI_SUFFIXES + AUDIO_SUFFIXES)} or DICOM)"
    )


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
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


def restore_file(input_path: Path | str, output_path: Path | str, **options) -> dict:
    """Restore one file; ``options`` are the keyword options of the modality's restore function
    (:func:`restore.mri.pipeline.restore_nifti` or :func:`restore.audio.pipeline.restore_audio`)."""
    input_path, output_path = Path(input_path), Path(output_path)
    if kind_of(input_path) == "mri":
        from restore.mri.pipeline import restore_nifti

        return restore_nifti(input_path, output_path, **options)
    from restore.audio.pipeline import restore_audio

    return restore_audio(input_path, output_path, **options)
