"""DICOM MR series in and out (pydicom); with :mod:`restore.mri.io`, the only MRI module that touches files.

Reading gives the same :class:`~restore.mri.io.Volume` as a NIfTI file, with the geometry dcm2niix
gives the same series: voxel ``(i, j, k)`` is column ``i`` and row ``rows - 1 - j`` of the ``k``-th
slice, slices sorted by ImagePositionPatient along the slice normal (row x column direction), so
``k`` runs along the normal; the affine maps voxels to RAS mm (DICOM's LPS with x and y negated).
Refused, each with one line: a folder with more than one series (unless one is chosen by its
SeriesInstanceUID), gantry tilt or sheared stacks (positions off the normal), non-uniform slice
spacing, slices of different orientation, size or pixel spacing. Positions repeated the same number
of times make a 4D volume (volumes in InstanceNumber order).

Writing makes a new derived series from the input's own files: every slice keeps its geometry and
the patient/study identifiers; new SeriesInstanceUID and SOPInstanceUIDs, ImageType
DERIVED\\SECONDARY, SeriesDescription + " (restored)", the restored values stored in the input's
integer type with one RescaleSlope/RescaleIntercept for the whole series (the input's, when the
values fit in it). The folder is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from restore.errors import InputError
from restore.mri.volume import DicomSource, Volume
from restore.outputs import atomic_write_dir

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
POSITION_TOLERANCE_MM = 0.01  # plus 0.1% of the distance: positions are rounded in the files
SPACING_TOLERANCE = 0.01  # slice gaps may differ from their median by 1%
READ_ERRORS = (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError)
HEADER_TAGS = ["SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "NumberOfFrames"]


def is_dicom_file(path: Path) -> bool:
    """True for a file with the DICM preamble marker (or a .dcm name)."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.name.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files directly inside ``folder`` (not below), sorted by name; hidden files skipped."""
    return sorted(p for p in Path(folder).iterdir() if not p.name.startswith(".") and is_dicom_file(p))


def is_dicom_input(path: Path) -> bool:
    path = Path(path)
    if path.is_dir():
        return any(not p.name.startswith(".") and is_dicom_file(p) for p in path.iterdir())
    return is_dicom_file(path)


def _read_header(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except READ_ERRORS as e:
        raise InputError(f"cannot read {path.name} as DICOM: {str(e).splitlines()[0]}") from None


def series_in(path: Path) -> dict[str, list[Path]]:
    """SeriesInstanceUID -> its files, for a folder (its direct DICOM files) or one file."""
    path = Path(path)
    files = [path] if path.is_file() else dicom_files(path)
    series: dict[str, list[Path]] = {}
    for f in files:
        try:
            uid = str(pydicom.dcmread(str(f), stop_before_pixels=True, specific_tags=HEADER_TAGS)
                      .get("SeriesInstanceUID", ""))
        except READ_ERRORS:
            uid = ""  # unreadable: _select names it
        series.setdefault(uid, []).append(f)
    return series


def series_digest(path: Path, series_uid: str | None = None) -> str:
    """SHA-256 over the files of the series (names and bytes, in name order): the input's identity."""
    path = Path(path)
    files = [path] if path.is_file() else _select(path, series_in(path), series_uid)
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as stream:
            while block := stream.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def _select(path: Path, series: dict[str, list[Path]], series_uid: str | None) -> list[Path]:
    if series_uid is not None:
        if series_uid not in series:
            raise InputError(f"{path.name}: no series {series_uid} here (found {len(series)})")
        return series[series_uid]
    if not series:
        raise InputError(f"no DICOM files in {path}")
    if "" in series:
        raise InputError(f"{path.name}: {series[''][0].name} is not a readable DICOM file")
    if len(series) > 1:
        raise InputError(f"{path.name} holds {len(series)} DICOM series (restore one series folder at a "
                         f"time, or run restore batch on it: one item per series)")
    return next(iter(series.values()))


@dataclass(frozen=True)
class _Slice:
    position: np.ndarray  # ImagePositionPatient, LPS mm
    row_dir: np.ndarray  # direction of increasing column index
    col_dir: np.ndarray  # direction of increasing row index
    spacing: tuple[float, float]  # between rows, between columns (mm)
    shape: tuple[int, int]  # rows, columns
    thickness: float  # SliceThickness (mm): the slice step of a single slice
    instance: int
    file: Path
    frame: int | None
    slope: float
    inter: float


def _floats(values, what: str, n: int, name: str) -> np.ndarray:
    try:
        out = np.asarray([float(v) for v in values], float)
    except (TypeError, ValueError):
        out = np.zeros(0)
    if out.size != n or not np.all(np.isfinite(out)):
        raise InputError(f"{name}: {what} must hold {n} numbers, got {values!r}")
    return out


def _slices_of_file(path: Path, ds: pydicom.Dataset) -> list[_Slice]:
    """One slice per frame: classic single-frame files, or an enhanced multi-frame file."""
    name = path.name
    if "Rows" not in ds or "Columns" not in ds:
        raise InputError(f"{name}: no Rows/Columns (not an image)")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise InputError(f"{name}: colour DICOM images are not MR magnitudes (SamplesPerPixel "
                         f"{ds.SamplesPerPixel}; expected 1)")
    shape = (int(ds.Rows), int(ds.Columns))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")

    def item(tag: str, seq: str, frame: int):
        for group in ((per_frame[frame] if per_frame is not None and frame < len(per_frame) else None), shared):
            if group is not None and seq in group and tag in group[seq][0]:
                return group[seq][0].get(tag)
        return ds.get(tag)

    out = []
    for f in range(frames):
        iop = item("ImageOrientationPatient", "PlaneOrientationSequence", f)
        ipp = item("ImagePositionPatient", "PlanePositionSequence", f)
        ps = item("PixelSpacing", "PixelMeasuresSequence", f)
        if iop is None or ipp is None or ps is None:
            missing = [t for t, v in (("ImageOrientationPatient", iop), ("ImagePositionPatient", ipp),
                                      ("PixelSpacing", ps)) if v is None]
            raise InputError(f"{name}: no {', '.join(missing)} (cannot place the slices in space)")
        iop = _floats(iop, "ImageOrientationPatient", 6, name)
        slope = item("RescaleSlope", "PixelValueTransformationSequence", f)
        inter = item("RescaleIntercept", "PixelValueTransformationSequence", f)
        out.append(_Slice(position=_floats(ipp, "ImagePositionPatient", 3, name), row_dir=iop[:3], col_dir=iop[3:],
                          spacing=tuple(_floats(ps, "PixelSpacing", 2, name)), shape=shape,
                          thickness=float(item("SliceThickness", "PixelMeasuresSequence", f) or 1.0),
                          instance=int(ds.get("InstanceNumber", 0) or 0) * frames + f, file=path,
                          frame=f if frames > 1 else None, slope=float(1.0 if slope is None else slope),
                          inter=float(0.0 if inter is None else inter)))
    return out


@dataclass(frozen=True)
class _Geometry:
    order: list[list[_Slice]]  # [volume][slice k], k along the normal
    affine: np.ndarray  # RAS, voxel (i, j, k) with j counted from the last row
    zooms: tuple[float, float, float]


def _geometry(slices: list[_Slice], name: str) -> _Geometry:
    first = slices[0]
    for s in slices[1:]:
        if s.shape != first.shape:
            raise InputError(f"{name}: slices of different size ({first.shape} and {s.shape})")
        if not (np.allclose(s.row_dir, first.row_dir, atol=1e-4) and np.allclose(s.col_dir, first.col_dir, atol=1e-4)):
            raise InputError(f"{name}: slices have different orientations (ImageOrientationPatient); "
                             "one stack of parallel slices is allowed")
        if not np.allclose(s.spacing, first.spacing, rtol=1e-4):
            raise InputError(f"{name}: slices have different PixelSpacing ({first.spacing} and {s.spacing})")
    row_dir, col_dir = first.row_dir, first.col_dir
    normal = np.cross(row_dir, col_dir)
    if not (abs(np.linalg.norm(normal) - 1) < 1e-3 and abs(np.dot(row_dir, col_dir)) < 1e-3):
        raise InputError(f"{name}: ImageOrientationPatient is not two orthogonal unit vectors: "
                         f"{[*row_dir, *col_dir]}")
    distance = np.array([np.dot(s.position, normal) for s in slices])
    keys = np.round(distance, 3)
    unique = np.unique(keys)
    counts = {u: int(np.sum(keys == u)) for u in unique}
    if len(set(counts.values())) > 1:
        raise InputError(f"{name}: positions repeat unevenly ({min(counts.values())} to {max(counts.values())} "
                         "slices at one position): missing or extra slices")
    n_volumes = next(iter(counts.values()))
    by_position = [sorted([s for s, key in zip(slices, keys) if key == u], key=lambda s: (s.instance, str(s.file)))
                   for u in unique]
    stack = [group[0] for group in by_position]
    origin = stack[0].position
    for s in stack[1:]:
        offset = s.position - origin
        along = np.dot(offset, normal)
        off_normal = np.linalg.norm(offset - along * normal)
        if off_normal > POSITION_TOLERANCE_MM + 1e-3 * abs(along):
            raise InputError(f"{name}: slice positions move {off_normal:.2f} mm off the slice normal over "
                             f"{abs(along):.1f} mm (gantry tilt or a sheared stack; not supported)")
    if len(stack) > 1:
        gaps = np.diff(unique.astype(float))
        step = float(np.median(gaps))
        if np.max(np.abs(gaps - step)) > SPACING_TOLERANCE * step + 1e-3:
            raise InputError(f"{name}: slice spacing is not uniform ({gaps.min():.3f} to {gaps.max():.3f} mm; "
                             "missing slices or a mixed series)")
    else:
        step = first.thickness
    rows = first.shape[0]
    row_spacing, col_spacing = first.spacing
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = -col_dir * row_spacing  # j counts rows from the last one, as dcm2niix stores them
    lps[:3, 2] = normal * step
    lps[:3, 3] = origin + (rows - 1) * row_spacing * col_dir
    order = [[group[v] for group in by_position] for v in range(n_volumes)]
    return _Geometry(order=order, affine=LPS_TO_RAS @ lps, zooms=(col_spacing, row_spacing, step))


def _stored_dtype(ds: pydicom.Dataset) -> np.dtype:
    bits, signed = int(ds.get("BitsAllocated", 16)), int(ds.get("PixelRepresentation", 0)) == 1
    if bits not in (8, 16, 32):
        raise InputError(f"BitsAllocated {bits} is not supported (8, 16 or 32)")
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def _pixels(ds: pydicom.Dataset, name: str) -> np.ndarray:
    try:
        return np.asarray(ds.pixel_array)
    except Exception as e:  # noqa: BLE001 - pydicom's decoders raise many types; all mean: cannot decode
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown") if hasattr(ds, "file_meta") else "unknown"
        raise InputError(f"{name}: cannot decode the pixel data (transfer syntax {syntax}): "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def load_dicom(path: Path | str, *, series_uid: str | None = None):
    """Read a DICOM series folder or one multi-frame file into a Volume (see the module docstring).

    ``series_uid`` picks one series of a folder that holds several. Returns a
    :class:`~restore.mri.io.Volume` whose ``data`` is float32 ``(X, Y, Z)`` or ``(X, Y, Z, V)`` in
    real-world units (RescaleSlope/Intercept applied) and whose ``dicom`` says where each slice came from.
    """

    path = Path(path)
    files = [path] if path.is_file() else _select(path, series_in(path), series_uid)
    headers = {f: _read_header(f) for f in files}
    multi = [f for f, ds in headers.items() if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    if multi and len(files) > 1:
        raise InputError(f"{path.name}: a multi-frame file ({multi[0].name}) among other files; "
                         "give the multi-frame file itself")
    slices = [s for f, ds in headers.items() for s in _slices_of_file(f, ds)]
    geometry = _geometry(slices, path.name)
    first = headers[files[0]]
    dtype = _stored_dtype(first)
    cache: dict[Path, np.ndarray] = {}

    def frame(s: _Slice) -> np.ndarray:
        if s.file not in cache:  # a single-frame file is read once; a multi-frame file stays cached
            cache.clear()
            cache[s.file] = _pixels(pydicom.dcmread(str(s.file)), s.file.name)
        pixels = cache[s.file] if s.frame is None else cache[s.file][s.frame]
        if pixels.shape != s.shape:
            raise InputError(f"{s.file.name}: pixel data of shape {pixels.shape}, expected {s.shape}")
        return pixels

    scalings = {(s.slope, s.inter) for vol in geometry.order for s in vol}
    volumes = []
    for vol in geometry.order:
        raw = np.stack([frame(s)[::-1].T for s in vol], axis=-1)  # (columns, rows from the last, slices)
        volumes.append(np.stack([raw[..., k] * np.float32(s.slope) + np.float32(s.inter)
                                 for k, s in enumerate(vol)], axis=-1).astype(np.float32))
    data = volumes[0] if len(volumes) == 1 else np.stack(volumes, axis=-1)
    slope, inter = next(iter(scalings)) if len(scalings) == 1 else (1.0, 0.0)
    header = nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_data_dtype(dtype if len(scalings) == 1 else np.float32)  # per-slice scaling: float on output
    header.set_zooms(tuple(geometry.zooms) + ((1.0,) if data.ndim == 4 else ()))
    header.set_qform(geometry.affine, code=1)
    header.set_sform(geometry.affine, code=1)
    header.set_xyzt_units("mm", "sec")
    if len(files) == 1 and multi:
        source = DicomSource(files=((files[0],),), frames=tuple(tuple(s.frame for s in vol) for vol in geometry.order),
                             series_uid=str(first.get("SeriesInstanceUID", "")),
                             description=str(first.get("SeriesDescription", "")))
    else:
        source = DicomSource(files=tuple(tuple(s.file for s in vol) for vol in geometry.order), frames=None,
                             series_uid=str(first.get("SeriesInstanceUID", "")),
                             description=str(first.get("SeriesDescription", "")))
    if not np.all(np.isfinite(data)) or not np.any(data):
        raise InputError(f"{path.name}: the series is all zeros or holds NaN/Inf")
    return Volume(data=data, affine=geometry.affine, header=header, path=path, slope=slope, inter=inter,
                  dicom=source)


def _series_scaling(data: np.ndarray, dtype: np.dtype, slope: float, inter: float) -> tuple[float, float]:
    """(slope, intercept) for storing ``data`` in ``dtype``: the input's when the values fit, else
    a series-wide scaling of [min, max] onto the type's range."""
    info = np.iinfo(dtype)
    lo, hi = float(np.min(data)), float(np.max(data))
    raw_lo, raw_hi = (lo - inter) / slope, (hi - inter) / slope
    if info.min <= round(min(raw_lo, raw_hi)) and round(max(raw_lo, raw_hi)) <= info.max:
        return slope, inter
    new_slope = (hi - lo) / (info.max - info.min) if hi > lo else 1.0
    return new_slope, lo - info.min * new_slope


def _derive(ds: pydicom.Dataset, series_uid: str, description: str, series_number: int | None) -> None:
    """Mark ``ds`` as an instance of the new derived series (in place)."""
    sop_uid = generate_uid()
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SeriesInstanceUID = series_uid
    ds.ImageType = ["DERIVED", "SECONDARY", *[str(v) for v in list(ds.get("ImageType", []))[2:]]]
    ds.SeriesDescription = (description + " (restored)").strip()[:64]
    ds.DerivationDescription = "restored (denoised / missing slices filled) by restore"
    if series_number is not None:
        ds.SeriesNumber = series_number
    for tag in ("SmallestImagePixelValue", "LargestImagePixelValue", "WindowCenter", "WindowWidth",
                "WindowCenterWidthExplanation"):
        if tag in ds:
            delattr(ds, tag)


def save_dicom(folder: Path | str, data: np.ndarray, like) -> None:
    """Write ``data`` (``like``'s shape) as a derived series of ``like``'s DICOM input into ``folder``.

    The series is built in a temporary folder beside ``folder`` and renamed into place; an existing
    ``folder`` (the caller checked ``--overwrite``) is replaced only after the new one is complete.
    """
    folder = Path(folder)
    source: DicomSource | None = like.dicom
    if source is None:
        raise InputError("DICOM output needs a DICOM input (its patient, study and geometry); "
                         "write NIfTI (.nii.gz) instead")
    if data.shape != like.data.shape:
        raise ValueError(f"data shape {data.shape} differs from the input's {like.data.shape}")
    vols = [data] if data.ndim == 3 else [data[..., v] for v in range(data.shape[3])]
    first = pydicom.dcmread(str(source.files[0][0]), stop_before_pixels=True)
    dtype = _stored_dtype(first)
    slope, inter = _series_scaling(data, dtype, like.slope, like.inter)
    info = np.iinfo(dtype)
    stored = [np.clip(np.round((v - inter) / slope), info.min, info.max).astype(dtype) for v in vols]
    series_uid = generate_uid()
    number = int(first.SeriesNumber) + 1000 if first.get("SeriesNumber") not in (None, "") else None

    def write(tmp: Path) -> None:
        if source.frames is not None:
            _write_multiframe(tmp, source, stored, slope, inter, series_uid, number)
            return
        for v, vol in enumerate(stored):
            for k, path in enumerate(source.files[v]):
                ds = pydicom.dcmread(str(path))
                _derive(ds, series_uid, source.description, number)
                ds.RescaleSlope, ds.RescaleIntercept = _ds_number(slope), _ds_number(inter)
                ds.PixelData = np.ascontiguousarray(vol[:, ::-1, k].T).astype(dtype.newbyteorder("<")).tobytes()
                ds.save_as(str(tmp / f"IM{v * len(source.files[v]) + k + 1:05d}.dcm"), enforce_file_format=True)

    atomic_write_dir(folder, write)


def _ds_number(value: float) -> str:
    """A decimal string (DS) of at most 16 characters."""
    for digits in range(10, 3, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.3g}"


def _write_multiframe(tmp: Path, source: DicomSource, stored: list[np.ndarray], slope: float, inter: float,
                      series_uid: str, number: int | None) -> None:
    ds = pydicom.dcmread(str(source.files[0][0]))
    n_frames = int(ds.NumberOfFrames)
    frames = np.zeros((n_frames, int(ds.Rows), int(ds.Columns)), stored[0].dtype)
    for v, vol in enumerate(stored):
        for k, f in enumerate(source.frames[v]):
            frames[f] = vol[:, ::-1, k].T
    _derive(ds, series_uid, source.description, number)
    groups = [*ds.get("PerFrameFunctionalGroupsSequence", []), *ds.get("SharedFunctionalGroupsSequence", [])]
    transforms = [g.PixelValueTransformationSequence[0] for g in groups if "PixelValueTransformationSequence" in g]
    for t in transforms or [ds]:
        t.RescaleSlope, t.RescaleIntercept = _ds_number(slope), _ds_number(inter)
    ds.PixelData = frames.astype(frames.dtype.newbyteorder("<")).tobytes()
    ds.save_as(str(tmp / "IM00001.dcm"), enforce_file_format=True)
