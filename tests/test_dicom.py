"""DICOM in and out against dcm2niix: the series are made here with pydicom, with known geometry."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from dicom_fakes import make_multiframe, make_series

from restore.cli import main
from restore.mri.dicom import load_dicom, save_dicom
from restore.mri.io import load_volume

COS, SIN = np.cos(0.3), np.sin(0.3)
SERIES = {  # name -> make_series options
    "axial": {},
    "axial-descending": {"slice_step": -2.5},
    "oblique": {"row_dir": (COS, SIN, 0.0), "col_dir": (0.0, 0.0, -1.0)},  # tilted sagittal-coronal
    "double-oblique": {"row_dir": (COS, SIN * COS, SIN * SIN), "col_dir": (0.0, -SIN, COS), "slope": 0.5,
                       "intercept": -100.0},
}


def dcm2niix_binary() -> str:
    found = shutil.which("dcm2niix") or str(Path(sys.executable).with_name("dcm2niix"))
    assert Path(found).is_file(), "dcm2niix is a dev dependency: pip install dcm2niix"
    return found


def dcm2niix(folder: Path, out: Path, name: str) -> nib.Nifti1Image:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([dcm2niix_binary(), "-z", "y", "-b", "n", "-o", str(out), "-f", name, str(folder)],
                   check=True, capture_output=True)
    return nib.load(str(out / f"{name}.nii.gz"))


def assert_same_geometry(ours_affine: np.ndarray, ours: np.ndarray, theirs: nib.Nifti1Image, atol: float = 1e-3):
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours_affine, theirs.affine, atol=atol)
    np.testing.assert_allclose(ours, theirs.get_fdata(), atol=atol)


@pytest.mark.parametrize("name", list(SERIES))
def test_read_matches_dcm2niix(tmp_path, name):
    stored = make_series(tmp_path / name, **SERIES[name])
    volume = load_volume(tmp_path / name)
    assert volume.dicom is not None and volume.data.dtype == np.float32
    assert_same_geometry(volume.affine, volume.data, dcm2niix(tmp_path / name, tmp_path / "nii", name))
    # and against the truth: voxel (i, j, k) is column i, row rows-1-j of the slice at position k along the normal
    opts = SERIES[name]
    slope, intercept = opts.get("slope", 1.0), opts.get("intercept", 0.0)
    k_order = slice(None, None, -1) if opts.get("slice_step", 2.5) < 0 else slice(None)
    np.testing.assert_allclose(volume.data, stored[:, ::-1, k_order] * slope + intercept, atol=1e-4)
    assert abs(np.linalg.det(volume.affine[:3, :3])) == pytest.approx(0.9 * 1.1 * 2.5, rel=1e-5)


def test_multiframe_file_matches_dcm2niix(tmp_path):
    (tmp_path / "mf").mkdir()
    stored = make_multiframe(tmp_path / "mf" / "enhanced.dcm")
    volume = load_volume(tmp_path / "mf" / "enhanced.dcm")
    assert_same_geometry(volume.affine, volume.data, dcm2niix(tmp_path / "mf", tmp_path / "nii", "mf"))
    np.testing.assert_array_equal(volume.data, stored[:, ::-1, :])
    # written back as one derived multi-frame file that dcm2niix reads with the same geometry
    save_dicom(tmp_path / "mf_out", volume.data * 2.5 + 7, volume)
    back = dcm2niix(tmp_path / "mf_out", tmp_path / "nii", "mf_out")
    assert_same_geometry(volume.affine, volume.data * 2.5 + 7, back, atol=0.5)


def test_derived_series_is_read_back_with_the_same_geometry(tmp_path):
    make_series(tmp_path / "in", **SERIES["double-oblique"])
    volume = load_dicom(tmp_path / "in")
    restored = volume.data * 40.0 + 1.25  # beyond uint16 with the input's scaling: rescaled to fit
    save_dicom(tmp_path / "out", restored, volume)
    back = dcm2niix(tmp_path / "out", tmp_path / "nii", "out")
    ours = load_dicom(tmp_path / "out")
    step = float(pydicom.dcmread(next((tmp_path / "out").iterdir())).RescaleSlope)
    assert step > 0.5  # a new slope: the values did not fit the input's
    assert_same_geometry(volume.affine, restored, back, atol=step)
    np.testing.assert_allclose(ours.data, restored, atol=step / 2 + 1e-3)
    np.testing.assert_allclose(ours.affine, volume.affine, atol=1e-5)
    src = [pydicom.dcmread(p) for p in sorted((tmp_path / "in").iterdir())]
    out = [pydicom.dcmread(p) for p in sorted((tmp_path / "out").iterdir())]
    assert len(out) == len(src)
    assert len({d.SeriesInstanceUID for d in out}) == 1 and out[0].SeriesInstanceUID != src[0].SeriesInstanceUID
    assert not {d.SOPInstanceUID for d in out} & {d.SOPInstanceUID for d in src}
    assert len({d.SOPInstanceUID for d in out}) == len(out)
    for d in out:
        assert list(d.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert d.SeriesDescription == "t1_test (restored)"
        assert (d.PatientID, d.PatientName, d.StudyInstanceUID, d.FrameOfReferenceUID) == (
            src[0].PatientID, src[0].PatientName, src[0].StudyInstanceUID, src[0].FrameOfReferenceUID)
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_values_that_fit_keep_the_input_scaling(tmp_path):
    make_series(tmp_path / "in", slope=0.5, intercept=-100.0)
    volume = load_dicom(tmp_path / "in")
    save_dicom(tmp_path / "out", volume.data, volume)
    again = load_dicom(tmp_path / "out")
    np.testing.assert_array_equal(again.data, volume.data)
    first = pydicom.dcmread(next((tmp_path / "out").iterdir()))
    assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (0.5, -100.0)


def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_mixed_tilted_and_uneven_series_are_refused(tmp_path, capsys):
    out = str(tmp_path / "out.nii.gz")
    make_series(tmp_path / "mixed", series_number=3)
    make_series(tmp_path / "mixed", series_number=4, prefix="B")
    assert "holds 2 DICOM series" in one_line_error(capsys, ["mri", str(tmp_path / "mixed"), "-o", out])
    normal = np.array([0.0, 0.0, 1.0])
    tilted = [np.array([-7.0, -9.0 + 0.5 * k, 12.0]) + 2.5 * k * normal for k in range(6)]  # 11 degrees
    make_series(tmp_path / "tilt", positions=tilted)
    assert "gantry tilt" in one_line_error(capsys, ["mri", str(tmp_path / "tilt"), "-o", out])
    uneven = [np.array([-7.0, -9.0, z]) for z in (0, 2.5, 5, 7.5, 12.5, 15)]  # a slice missing
    make_series(tmp_path / "uneven", positions=uneven)
    assert "not uniform" in one_line_error(capsys, ["mri", str(tmp_path / "uneven"), "-o", out])
    (tmp_path / "empty").mkdir()
    assert "no DICOM files" in one_line_error(capsys, ["mri", str(tmp_path / "empty"), "-o", out])
    assert not Path(out).exists()


def test_dicom_output_needs_dicom_input(tmp_path, capsys):
    make_series(tmp_path / "in")
    nifti = tmp_path / "in.nii.gz"
    volume = load_dicom(tmp_path / "in")
    nib.save(nib.Nifti1Image(volume.data, volume.affine), str(nifti))
    err = one_line_error(capsys, ["mri", str(nifti), "-o", str(tmp_path / "out") + "/"])
    assert "DICOM output needs a DICOM input" in err
    err = one_line_error(capsys, ["mri", str(tmp_path / "in"), "-o", str(tmp_path / "in" / "restored") + "/"])
    assert "inside the input series folder" in err


def test_restore_mri_dicom_in_dicom_out_end_to_end(tmp_path, tiny_mri_model):
    """The command on a series folder: NIfTI out with dcm2niix's geometry, then DICOM out read back by dcm2niix."""
    make_series(tmp_path / "series", shape=(16, 16, 6), seed=3, **SERIES["oblique"])
    before = {p.name: p.read_bytes() for p in (tmp_path / "series").iterdir()}
    reference = dcm2niix(tmp_path / "series", tmp_path / "nii", "ref")
    model = ["--model", str(tiny_mri_model)]  # untrained weights: the geometry is under test, not the quality
    assert main(["mri", str(tmp_path / "series"), "-o", str(tmp_path / "out.nii.gz"), "--quiet", "--no-refine", *model]) == 0
    nifti = nib.load(str(tmp_path / "out.nii.gz"))
    assert nifti.shape == reference.shape
    np.testing.assert_allclose(nifti.affine, reference.affine, atol=1e-3)
    assert main(["mri", str(tmp_path / "series"), "-o", str(tmp_path / "restored") + "/", "--quiet",
                 "--no-refine", *model]) == 0
    back = dcm2niix(tmp_path / "restored", tmp_path / "nii", "back")
    assert_same_geometry(reference.affine, nifti.get_fdata(), back, atol=1e-3)  # same values as the NIfTI output
    import json

    record = json.loads((tmp_path / "restored.json").read_text())  # the sidecar sits next to the folder
    assert record["output_format"] == "dicom" and record["input"]["format"] == "dicom"
    assert {p.name: p.read_bytes() for p in (tmp_path / "series").iterdir()} == before  # input untouched


def test_repeated_positions_make_a_4d_volume_like_dcm2niix(tmp_path):
    first = make_series(tmp_path / "s", series_uid="1.2.826.0.1.3680043.8.498.77", seed=0)
    second = make_series(tmp_path / "s", series_uid="1.2.826.0.1.3680043.8.498.77", seed=1, first_instance=7,
                         prefix="V2")
    volume = load_volume(tmp_path / "s")
    assert volume.data.shape == (16, 16, 6, 2)
    np.testing.assert_array_equal(volume.data[..., 1], second[:, ::-1, :])  # volumes in InstanceNumber order
    np.testing.assert_array_equal(volume.data[..., 0], first[:, ::-1, :])
    assert_same_geometry(volume.affine, volume.data, dcm2niix(tmp_path / "s", tmp_path / "nii", "s"))
    save_dicom(tmp_path / "out", volume.data + 1, volume)
    assert len(list((tmp_path / "out").iterdir())) == 12
    np.testing.assert_array_equal(load_dicom(tmp_path / "out").data, volume.data + 1)


def test_batch_names_series_outputs(tmp_path):
    from restore import batch

    make_series(tmp_path / "in" / "study" / "t1")
    (tmp_path / "in" / "dicom.csv").write_text("path,output_format\nstudy/t1,dicom\n")
    (tmp_path / "in" / "nifti.csv").write_text("path\nstudy/t1\n")
    out = tmp_path / "out"
    [as_dicom] = batch.discover(tmp_path / "in" / "dicom.csv", out)
    [as_nifti] = batch.discover(tmp_path / "in" / "nifti.csv", out)
    assert (as_dicom.output, as_dicom.options) == (out / "study" / "t1_restored", {"output_format": "dicom"})
    assert as_nifti.output == out / "study" / "t1_restored.nii.gz"
    (tmp_path / "mf").mkdir()
    make_multiframe(tmp_path / "mf" / "enhanced.dcm")
    [single] = batch.discover(tmp_path / "mf" / "enhanced.dcm", out)
    assert (single.output, single.kind) == (out / "enhanced_restored.nii.gz", "mri")


@pytest.mark.parametrize("output", ["out.nii.gz", "out_series/"])
def test_fill_keeps_every_other_voxel_of_a_dicom_input(tmp_path, tiny_mri_model, tiny_fill_model, output):
    from restore.mri.pipeline import restore_nifti

    make_series(tmp_path / "in", shape=(16, 16, 8), slope=0.5, intercept=-100.0)
    volume = load_dicom(tmp_path / "in")
    restore_nifti(tmp_path / "in", str(tmp_path / output), task="fill", missing_slices=[3], progress=False,
                  model_path=tiny_mri_model, fill_model_path=tiny_fill_model)
    out = load_volume(tmp_path / output.rstrip("/"))
    keep = np.ones(volume.data.shape, bool)
    keep[:, :, 3] = False
    np.testing.assert_array_equal(out.data[keep], volume.data[keep])
    assert not np.array_equal(out.data[:, :, 3], volume.data[:, :, 3])
    np.testing.assert_allclose(out.affine, volume.affine, atol=1e-5)
