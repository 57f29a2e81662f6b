"""Python API: restore one file of any supported kind, dispatching on its type.

Every restore function below writes ``output`` and its JSON sidecar atomically and returns the
sidecar record, which always holds::

    {"kind": "mri" | "audio", "input": {"path", "sha256"}, "output": str,
     "model": {"name", "version"}, "params": {...}, "metrics": {...}, "timing": {"seconds"}}

Bad input raises :class:`restore.errors.InputError` before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from restore.errors import InputError
from restore.provenance import input_digest, sha256_of

__all__ = ["input_digest", "kind_of", "restore_file", "sha256_of"]  # restore.provenance's, kept here for callers

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


def restore_file(input_path: Path | str, output_path: Path | str, **options) -> dict:
    """Restore one file; ``options`` are the keyword options of the modality's restore function
    (:func:`restore.mri.pipeline.restore_nifti` or :func:`restore.audio.pipeline.restore_audio`)."""
    input_path, output_path = Path(input_path), Path(output_path)
    if kind_of(input_path) == "mri":
        from restore.mri.pipeline import restore_nifti

        return restore_nifti(input_path, output_path, **options)
    from restore.audio.pipeline import restore_audio

    return restore_audio(input_path, output_path, **options)
