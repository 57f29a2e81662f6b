"""NIfTI input and output, and the one place that picks NIfTI or DICOM (:mod:`restore.mri.dicom`);
with that module, the only MRI code that touches files.

The output keeps the input's affine, qform/sform codes, header and on-disk dtype (with the same
scl_slope/scl_inter), unless a float32 output is asked for.

Hostile headers fail before any large allocation: the data a header declares must fit in the file
(``.nii``: ``vox_offset + voxels * itemsize <= file size``; ``.nii.gz``: at most
``DEFLATE_MAX_RATIO`` times the compressed size, the most deflate can expand) and, as float32, in
the memory available. Complex data is taken as its magnitude (recorded in the Volume and the sidecar).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from restore.errors import InputError
from restore.mri.volume import Volume
from restore.outputs import atomic_write

OutputFormat = Literal["auto", "nifti", "dicom"]
DEFLATE_MAX_RATIO = 1032  # deflate expands a byte to at most ~1032 (258-byte matches in 2 bits)
GZIP_SLACK_BYTES = 1 << 16  # header, vox_offset and rounding on top of that ratio

def _nonfinite_only_in_whole_slices(data: np.ndarray, axis: int) -> bool:
    finite = np.isfinite(np.moveaxis(data, axis, 0)).reshape(data.shape[axis], -1)
    return bool(np.all(finite.all(axis=1) | ~finite.any(axis=1)))


def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, or None where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def check_declared_size(path: Path, header: nib.Nifti1Header, offset: int) -> None:
    """InputError when the data ``header`` declares (from byte ``offset`` on) cannot be in the file or in
    memory (module docstring)."""
    shape = header.get_data_shape()
    voxels = math.prod(int(n) for n in shape)
    nbytes = voxels * header.get_data_dtype().itemsize
    size = path.stat().st_size
    declared = f"{path.name}: the header declares {'x'.join(map(str, shape))} {header.get_data_dtype()} ({_gib(nbytes)})"
    if path.name.lower().endswith(".gz"):
        if nbytes > DEFLATE_MAX_RATIO * size + GZIP_SLACK_BYTES:
            raise InputError(f"{declared}, more than a {size}-byte gzip file can hold (truncated or hostile header)")
    else:
        needed = offset + nbytes
        if needed > size:
            raise InputError(f"{declared}; that needs {needed} bytes, the file has {size} (truncated or hostile header)")
    available = _available_bytes()
    if available is not None and 4 * voxels > available:
        raise InputError(f"{declared}; as float32 that needs {_gib(4 * voxels)}, {_gib(available)} of memory is free")


def load_volume(path: Path | str, *, series_uid: str | None = None,
                nonfinite_slices_axis: int | None = None) -> Volume:
    """A NIfTI file, a DICOM series folder or a (multi-frame) DICOM file (:func:`restore.mri.dicom.load_dicom`)."""
    path = Path(path)
    if path.is_dir() or (path.is_file() and not path.name.lower().endswith((".nii", ".nii.gz"))):
        from restore.mri.dicom import is_dicom_file, load_dicom

        if path.is_dir() or is_dicom_file(path):
            return load_dicom(path, series_uid=series_uid)
    return load_nifti(path, nonfinite_slices_axis=nonfinite_slices_axis)


def output_format(output: Path | str, requested: OutputFormat, volume: Volume) -> Literal["nifti", "dicom"]:
    """``dicom`` when asked, or (``auto``) for a DICOM input and an output that is not ``.nii``/``.nii.gz``
    (``-o DIR/``); else ``nifti``. DICOM output needs a DICOM input, outside its own folder."""
    text = str(output)
    if requested not in ("auto", "nifti", "dicom"):
        raise InputError(f"--output-format must be auto, nifti or dicom, got {requested!r}")
    is_nifti_name = text.lower().endswith((".nii", ".nii.gz"))
    fmt = requested if requested != "auto" else ("dicom" if volume.dicom is not None and not is_nifti_name else "nifti")
    if fmt == "dicom":
        if volume.dicom is None:
            raise InputError("DICOM output needs a DICOM input (its patient, study and slice geometry); "
                             "write .nii/.nii.gz instead")
        folder = Path(text).resolve()
        source = volume.path.resolve() if volume.path.is_dir() else volume.path.resolve().parent
        if folder == source or source in folder.parents:
            raise InputError(f"DICOM output folder {output} is inside the input series folder (choose another -o)")
    elif text.endswith(os.sep) or (Path(text).is_dir() and not is_nifti_name):
        raise InputError(f"output {output} is a folder: DICOM output needs a DICOM input; give a .nii.gz path")
    return fmt


def save_volume(path: Path | str, data: np.ndarray, like: Volume, *, fmt: Literal["nifti", "dicom"] = "nifti",
                dtype: str | None = None, keep_from_input: np.ndarray | None = None) -> None:
    """:func:`save_nifti`, or a derived DICOM series folder (:func:`restore.mri.dicom.save_dicom`)."""
    if fmt == "nifti":
        return save_nifti(path, data, like, dtype=dtype, keep_from_input=keep_from_input)
    from restore.mri.dicom import save_dicom

    if dtype is not None:
        raise InputError(f"--dtype {dtype} is for NIfTI output; a DICOM series keeps the input's stored type")
    if keep_from_input is not None:  # the input's values round back to its own stored integers
        data = np.where(keep_from_input, like.data, data)
    save_dicom(path, data, like)


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
    complex_data = False
    try:
        img = nib.load(str(path))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError(f"not a NIfTI image: {path.name}")
        check_declared_size(path, img.header, int(getattr(img.dataobj, "offset", 352)))
        complex_data = np.issubdtype(img.get_data_dtype(), np.complexfloating)
        if complex_data:  # magnitude, not the real part numpy's cast would keep
            data = np.abs(np.asarray(img.dataobj)).astype(np.float32)
        else:
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
    header = img.header.copy()
    if complex_data:  # outputs hold the magnitude, as float32
        header.set_data_dtype(np.float32)
        slope, inter = 1.0, 0.0
    return Volume(data=data, affine=img.affine, header=header, path=path, slope=slope, inter=inter,
                  complex_taken_as_magnitude=complex_data)


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
        if like.dicom is not None or like.complex_taken_as_magnitude:  # no NIfTI to reread: values round back
            source = np.round((like.data - like.inter) / like.slope).astype(on_disk)
        else:
            source = np.asanyarray(nib.load(str(like.path)).dataobj.get_unscaled()).reshape(raw.shape)
        raw[keep_from_input] = source[keep_from_input]
    img = nib.Nifti1Image(raw, like.affine, header)
    img.header.set_slope_inter(slope, inter)
    # keep the input's qform/sform codes, not nibabel's defaults
    img.set_qform(like.header.get_qform(), code=int(like.header["qform_code"]))
    img.set_sform(like.header.get_sform(), code=int(like.header["sform_code"]))
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    atomic_write(Path(path), lambda tmp: nib.save(img, str(tmp)), suffix=suffix)
