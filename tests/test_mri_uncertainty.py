"""The --samples std map (restore.mri.uncertainty) is an error estimate, not the samples' spread."""

import nibabel as nib
import numpy as np
from conftest import write_nifti
from test_mri_guard import SIGMA, _head

from restore.metrics.image import head_mask
from restore.mri.noise import add_rician_noise
from restore.mri.pipeline import restore_nifti
from restore.mri.uncertainty import coverage


def test_std_map_covers_the_error(tmp_path):
    clean = _head((64, 64, 24))
    noisy = add_rician_noise(clean, SIGMA, np.random.default_rng(5))
    src = write_nifti(tmp_path / "noisy.nii.gz", noisy, dtype=np.float32, zooms=(1.0, 1.0, 1.0))
    record = restore_nifti(src, tmp_path / "out.nii.gz", samples=2, progress=False, task="denoise")
    out = np.asarray(nib.load(tmp_path / "out.nii.gz").dataobj, dtype=np.float32)
    std = np.asarray(nib.load(tmp_path / "out_std.nii.gz").dataobj, dtype=np.float32)
    mask = head_mask(clean)
    assert record["metrics"]["std_map"] == "calibrated"
    assert coverage(out - clean, std, mask) >= 0.9
    # and it is not uselessly wide: its median is of the order of the median error
    assert np.median(std[mask]) < 3 * np.median(np.abs(out - clean)[mask])
