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


def _nonfinite_only_in_whole_slices(data: np.ndarray, axis: int) -> bool:
    finite = np.isfinite(np.moveaxis(data, axis, 0)).reshape(data.shape[axis], -1)
    return bool(np.all(finite.all(axis=1) | ~finite.any(axis=1)))


def load_nifti(path: Path | str, *, nonfinite_slices_axis: int | None = None) -> Volume:
    """Read a 3D/4D NIfTI volume; every failure is an InputError that names the problem.

    NaN/Inf voxels are an error, unless ``nonfinite_slices_axis`` is given and they fill whole
    slices along that axis (dropped slices, to be filled later).
    """
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
        whole = nonfinite_slices_axis is not None and _nonfinite_only_in_whole_slices(data, nonfinite_slices_axis)
        if not whole:
            bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise InputError(f"{path.name}: {bad} voxels are NaN or Inf (fix or mask them first)")
    if not np.any(np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)):
        raise InputError(f"{path.name}: the volume is all zeros")
    slope, inter = float(getattr(img.dataobj, "slope", 1.0)), float(getattr(img.dataobj, "inter", 0.0))
    return Volume(data=data, affine=img.affine, header=img.header.copy(), path=path, slope=slope, inter=inter)


def save_nifti(path: Path | str, data: np.ndarray, like: Volume, *, dtype: str | None = None,
               keep_from_input: np.ndarray | None = None) -> None:
    """Write ``data`` with ``like``'s geometry, header and intensity scaling, atomically.

    The on-disk dtype is ``like``'s (for integer types: ``raw = round((data - inter) / slope)``,
    limited to the type's range, as any writer must) unless ``dtype`` is ``"float32"`` or
    ``"uint8"`` (masks). Voxels where ``keep_from_input`` is True get the input file's raw values,
    bit for bit.
    """
    header = like.header.copy()
    header.set_data_shape(data.shape)
    if dtype not in (None, "float32", "uint8"):
        raise ValueError(f"dtype must be None, 'float32' or 'uint8', got {dtype!r}")
    on_disk = np.dtype(dtype) if dtype else like.on_disk_dtype
    header.set_data_dtype(on_disk)
    if dtype == "uint8" or (dtype is None and np.issubdtype(on_disk, np.integer)):
        slope, inter = (1.0, 0.0) if dtype == "uint8" else (like.slope, like.inter)
        info = np.iinfo(on_disk)
        raw = np.clip(np.round((data - inter) / slope), info.min, info.max).astype(on_disk)
    else:
        raw, slope, inter = data.astype(on_disk), 1.0, 0.0
    if keep_from_input is not None:
        if dtype is not None:
            raise ValueError("keep_from_input needs the input's own dtype")
        source = np.asanyarray(nib.load(str(like.path)).dataobj.get_unscaled()).reshape(raw.shape)
        raw[keep_from_input] = source[keep_from_input]
    img = nib.Nifti1Image(raw, like.affine, header)
    img.header.set_slope_inter(slope, inter)
    # keep the input's qform/sform codes, not nibabel's defaults
    img.set_qform(like.header.get_qform(), code=int(like.header["qform_code"]))
    img.set_sform(like.header.get_sform(), code=int(like.header["sform_code"]))
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    atomic_write(Path(path), lambda tmp: nib.save(img, str(tmp)), suffix=suffix)
