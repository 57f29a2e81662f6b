"""The volume model every MRI input becomes (NIfTI or DICOM) and the pipeline works on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np


@dataclass(frozen=True)
class DicomSource:
    """Where each slice came from, for writing a derived series with the same geometry.

    ``files[v][k]``: the file of slice ``k`` of volume ``v`` (single-frame series); for a multi-frame
    file, ``files`` is ``((path,),)`` and ``frames[v][k]`` is the frame index of that slice.
    """

    files: tuple[tuple[Path, ...], ...]
    frames: tuple[tuple[int, ...], ...] | None
    series_uid: str
    description: str


@dataclass(frozen=True)
class Volume:
    """``data``: float32 ``(X, Y, Z)`` or ``(X, Y, Z, V)`` in the file's real-world units."""

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    path: Path
    slope: float = 1.0  # the file's intensity scaling: real = raw * slope + inter
    inter: float = 0.0
    dicom: DicomSource | None = None  # set when the input was a DICOM series (its files, for DICOM output)
    complex_taken_as_magnitude: bool = False

    @property
    def on_disk_dtype(self) -> np.dtype:
        return self.header.get_data_dtype()
