"""Missing-slice detection and filling: what is detected, what changes, what is written."""

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import phantom, write_nifti

from restore.mri.fill import detect_bad_slices, interpolate_missing
from restore.mri.noise import add_rician_noise
from restore.mri.pipeline import restore_nifti


def damaged(shape=(40, 44, 30), sigma=20.0):
    vol = add_rician_noise(phantom(shape), sigma, np.random.default_rng(0))
    vol[:, :, 10] = 0  # dropped slice
    vol[:, :, 17:19] = 0  # dropped pair
    vol[:, :, 22] *= 2.0  # intensity spike
    return vol


def test_detects_dropped_and_corrupted_slices_only():
    report = detect_bad_slices(damaged(), axis=2)
    assert report.missing == [10, 17, 18]
    assert report.corrupted == [22]
    clean = add_rician_noise(phantom((40, 44, 30)), 20.0, np.random.default_rng(1))
    assert detect_bad_slices(clean, axis=2).to_fill == []  # background padding and anatomy are not gaps


def test_nan_slice_is_missing():
    vol = phantom()
    vol[:, 5] = np.nan
    assert detect_bad_slices(vol, axis=1).missing == [5]


def test_linear_interpolation_is_exact_on_linear_data():
    z = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 3, 3), np.float32)
    known = np.ones(10, bool)
    known[[3, 4, 7]] = False
    np.testing.assert_allclose(interpolate_missing(z, known), z)


def test_fill_only_keeps_every_known_voxel_bit_identical(tmp_path, tiny_mri_model, tiny_fill_model):
    src = write_nifti(tmp_path / "gappy.nii.gz", damaged())
    out = tmp_path / "filled.nii.gz"
    record = restore_nifti(src, out, task="fill", model_path=tiny_mri_model, fill_model_path=tiny_fill_model,
                           progress=False)
    raw_in = np.asarray(nib.load(src).dataobj.get_unscaled())
    raw_out = np.asarray(nib.load(out).dataobj.get_unscaled())
    mask = np.asarray(nib.load(tmp_path / "filled_filled-mask.nii.gz").dataobj).astype(bool)
    assert sorted(set(np.nonzero(mask)[2])) == [10, 17, 18, 22]
    np.testing.assert_array_equal(raw_out[~mask], raw_in[~mask])
    assert np.abs(raw_out[:, :, 10]).sum() > 0  # the dropped slice was filled
    side = json.loads((tmp_path / "filled.json").read_text())
    assert side["metrics"]["slices"]["filled"] == [10, 17, 18, 22] and side["task"] == "fill"
    assert record["metrics"]["slices"]["low_confidence"] is False


def test_user_named_slices_and_long_gaps_are_flagged(tmp_path, tiny_mri_model, tiny_fill_model):
    vol = add_rician_noise(phantom((40, 44, 30)), 20.0, np.random.default_rng(2))
    vol[:, :, 8:13] = 0  # 5 consecutive: longer than the model was trained for
    src = write_nifti(tmp_path / "long.nii.gz", vol)
    record = restore_nifti(src, tmp_path / "o.nii.gz", task="auto", missing_slices=[20],
                           model_path=tiny_mri_model, fill_model_path=tiny_fill_model, progress=False)
    slices = record["metrics"]["slices"]
    assert slices["filled"] == [8, 9, 10, 11, 12, 20] and slices["given"] == [20]
    assert slices["low_confidence"] is True and record["task"] == "fill+denoise"


def test_denoise_task_never_fills(tmp_path, tiny_mri_model):
    src = write_nifti(tmp_path / "gappy.nii.gz", damaged())
    record = restore_nifti(src, tmp_path / "d.nii.gz", task="denoise", model_path=tiny_mri_model, progress=False)
    assert record["metrics"]["slices"]["filled"] == []
    assert not (tmp_path / "d_filled-mask.nii.gz").exists()


def test_missing_slice_out_of_range_is_an_input_error(tmp_path, tiny_mri_model):
    from restore.errors import InputError

    src = write_nifti(tmp_path / "v.nii.gz", phantom())
    with pytest.raises(InputError, match="outside"):
        restore_nifti(src, tmp_path / "o.nii.gz", missing_slices=[99], model_path=tiny_mri_model, progress=False)
