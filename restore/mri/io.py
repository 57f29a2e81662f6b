"""NIfTI input and output; the only MRI module that touches files.

The output keeps the input's affine, qform/sform codes, header and on-disk dtype (with the same
scl_slope/scl_inter), unless a float32 output is asked for.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from restore.errors import InputError
from restore.outputs import atomic_write


@dataclass(frozen=True)
class Volume:
    """``data``: float32 ``(X, Y, Z)`` or ``(X, Y, Z, V)`` in the file's real-world units."""

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    path: Path
    slope: float = 1.0  # the file's intensity scaling: real = raw * slope + inter
    inter: float = 0.0

    @property
    def on_disk_dtype(self) -> np.dtype:
        return self.header.get_data_dtype()


def load_nifti(path: Path | str) -> Volume:
    """Read a 3D/4D NIfTI volume; every failure is an InputError that names the problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input not found: {path}")
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise InputError(f"not a NIfTI file (.nii or .nii.gz): {path.name}")
    try:
        img = nib.load(str(path))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError(f"not a NIfTI image: {path.name}")
        data = np.asarray(img.dataobj, dtype=np.float32)
    except InputError:
        raise
    except (gzip.BadGzipFile, zlib.error, EOFError) as e:
        raise InputError(f"corrupt or truncated gzip in {path.name}: {e}") from None
    except (nib.filebasedimages.ImageFileError, ValueError, OSError) as e:
        raise InputError(f"cannot read {path.name} as NIfTI: {str(e).splitlines()[0]}") from None
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0]
    if data.ndim not in (3, 4):
        raise InputError(f"{path.name}: expected a 3D or 4D volume, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputError(f"{path.name}: {bad} voxels are NaN or Inf (fix or mask them first)")
    if not np.any(data):
        raise InputError(f"{path.name}: the volume is all zeros")
    slope, inter = float(getattr(img.dataobj, "slope", 1.0)), float(getattr(img.dataobj, "inter", 0.0))
    return Volume(data=data, affine=img.affine, header=img.header.copy(), path=path, slope=slope, inter=inter)


def save_nifti(path: Path | str, data: np.ndarray, like: Volume, *, dtype: str | None = None) -> None:
    """Write ``data`` with ``like``'s geometry, header and intensity scaling, atomically.

    The on-disk dtype is ``like``'s (for integer types: ``raw = round((data - inter) / slope)``,
    limited to the type's range, as any writer must) unless ``dtype="float32"``.
    """
    header = like.header.copy()
    header.set_data_shape(data.shape)
    on_disk = np.dtype(np.float32) if dtype == "float32" else like.on_disk_dtype
    if dtype not in (None, "float32"):
        raise ValueError(f"dtype must be None or 'float32', got {dtype!r}")
    header.set_data_dtype(on_disk)
    if np.issubdtype(on_disk, np.integer):
        info = np.iinfo(on_disk)
        raw = np.clip(np.round((data - like.inter) / like.slope), info.min, info.max).astype(on_disk)
        slope, inter = like.slope, like.inter
    else:
        raw, slope, inter = data.astype(on_disk), 1.0, 0.0
    img = nib.Nifti1Image(raw, like.affine, header)
    img.header.set_slope_inter(slope, inter)
    # keep the input's qform/sform codes, not nibabel's defaults
    img.set_qform(like.header.get_qform(), code=int(like.header["qform_code"]))
    img.set_sform(like.header.get_sform(), code=int(like.header["sform_code"]))
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    atomic_write(Path(path), lambda tmp: nib.save(img, str(tmp)), suffix=suffix)
