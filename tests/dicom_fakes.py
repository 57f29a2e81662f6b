"""Small DICOM MR series with known geometry, written by pydicom, for the DICOM tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


def make_series(folder: Path, *, shape: tuple[int, int, int] = (16, 16, 6), seed: int = 0,
                row_dir=(1.0, 0.0, 0.0), col_dir=(0.0, 1.0, 0.0), spacing=(0.9, 1.1), slice_step: float = 2.5,
                origin=(-7.0, -9.0, 12.0), series_uid: str | None = None, series_number: int = 3,
                positions: list | None = None, shuffle: bool = True, slope: float = 1.0,
                intercept: float = 0.0, study_uid: str | None = None, prefix: str = "IM",
                first_instance: int = 1) -> np.ndarray:
    """Write ``shape[2]`` single-frame MR slices (``shape`` = columns, rows, slices) into ``folder``.

    ``row_dir``/``col_dir``: ImageOrientationPatient (LPS); ``spacing``: PixelSpacing (between rows,
    between columns, mm); slice k sits at ``origin + k * slice_step * normal`` unless ``positions``
    gives every ImagePositionPatient; InstanceNumber runs from ``first_instance``. Files are written in shuffled order (the reader must sort by
    position). Returns the stored values as ``(columns, rows, slices)`` uint16, slice k = position k.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cols, rows, n = shape
    x, y, z = np.meshgrid(np.arange(cols), np.arange(rows), np.arange(n), indexing="ij")
    values = (200 + 40 * x + 7 * y + 300 * z + rng.integers(0, 30, shape)).astype(np.uint16)
    row_dir, col_dir = np.asarray(row_dir, float), np.asarray(col_dir, float)
    normal = np.cross(row_dir, col_dir)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or "1.2.826.0.1.3680043.8.498.1"
    order = rng.permutation(n) if shuffle else np.arange(n)
    for file_index, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{prefix}{file_index:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
        ds.PatientName, ds.PatientID, ds.StudyID = "Test^Phantom", "PHANTOM01", "1"
        ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.SeriesTime = "20260101", "120000", "20260101", "120500"
        ds.AccessionNumber = "ACC1"
        ds.Modality, ds.Manufacturer = "MR", "pydicom-test"
        ds.SeriesNumber, ds.InstanceNumber = series_number, int(k) + first_instance
        ds.SeriesDescription, ds.ImageType = "t1_test", ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "GR", "SP", "2D"
        ds.RepetitionTime, ds.EchoTime, ds.FlipAngle, ds.MagneticFieldStrength = 500, 10, 90, 3
        ds.ImageOrientationPatient = [*map(float, row_dir), *map(float, col_dir)]
        pos = positions[k] if positions is not None else np.asarray(origin) + k * slice_step * normal
        ds.ImagePositionPatient = [round(float(v), 6) for v in pos]
        ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
        ds.SliceThickness = abs(slice_step)
        ds.SliceLocation = float(np.dot(pos, normal))
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        if slope != 1.0 or intercept != 0.0:
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = np.ascontiguousarray(values[:, :, k].T).tobytes()  # (rows, columns) in C order
        ds.save_as(ds.filename, enforce_file_format=True)
    return values


def make_multiframe(path: Path, *, shape: tuple[int, int, int] = (12, 10, 5), seed: int = 0,
                    row_dir=(0.0, 1.0, 0.0), col_dir=(0.0, 0.0, -1.0), spacing=(1.2, 0.8),
                    slice_step: float = 3.0, origin=(20.0, -5.0, 30.0), reverse_frames: bool = True) -> np.ndarray:
    """One enhanced MR multi-frame file (frames in reverse position order by default); returns the
    stored values as ``(columns, rows, slices)``, slice k at ``origin + k * slice_step * normal``."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage

    rng = np.random.default_rng(seed)
    cols, rows, n = shape
    values = rng.integers(100, 4000, shape).astype(np.uint16)
    row_dir, col_dir = np.asarray(row_dir, float), np.asarray(col_dir, float)
    normal = np.cross(row_dir, col_dir)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedMRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality, ds.Manufacturer = "Test^Multi", "MULTI01", "MR", "pydicom-test"
    ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 7, 1, "mf_test"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime = "20260101", "120000", "20260101", "120000"
    ds.AcquisitionDateTime = "20260101120000"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, n
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [float(spacing[0]), float(spacing[1])], abs(slice_step)
    measures.SpacingBetweenSlices = abs(slice_step)
    orientation = Dataset()
    orientation.ImageOrientationPatient = [*map(float, row_dir), *map(float, col_dir)]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    order = list(range(n))[::-1] if reverse_frames else list(range(n))
    per_frame = []
    for f, k in enumerate(order):
        group, position, content = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [round(float(v), 6) for v in np.asarray(origin) + k * slice_step * normal]
        content.InStackPositionNumber, content.StackID, content.DimensionIndexValues = k + 1, "1", [1, k + 1]
        group.PlanePositionSequence, group.FrameContentSequence = Sequence([position]), Sequence([content])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack([values[:, :, k].T for k in order]).astype("<u2").tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return values
