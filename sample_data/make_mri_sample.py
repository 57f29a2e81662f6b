"""Rebuild sample_data/t1_clean.nii.gz and t1_noisy.nii.gz from Debian's mricron-data.

Colin27 (ch2.nii.gz), resampled to 2 mm, cropped to the head, stored as int16 with the template's
orientation; the noisy copy has Rician noise with sigma = 5% of the 99th percentile (seed 2026).
Run: .venv/bin/python sample_data/make_mri_sample.py
"""

from pathlib import Path

import nibabel as nib
import numpy as np

from restore.mri.data import resample
from restore.mri.noise import add_rician_noise

src = nib.load("/usr/share/mricron/templates/ch2.nii.gz")
data = np.asarray(src.dataobj, dtype=np.float32)
small = resample(data, (1.0, 1.0, 1.0), (2.0, 2.0, 2.0))
crop = (slice(4, 84), slice(6, 102), slice(10, 82))  # 80 x 96 x 72 voxels around the head
clean = small[crop] * (1000 / np.percentile(small, 99))  # a scanner-like int16 range
affine = src.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
affine[:3, 3] = nib.affines.apply_affine(src.affine, [2 * c.start for c in crop])
noisy = add_rician_noise(clean, 0.05 * float(np.percentile(clean, 99)), np.random.default_rng(2026))
out = Path(__file__).parent
for name, vol in [("t1_clean", clean), ("t1_noisy", noisy)]:
    img = nib.Nifti1Image(np.round(vol).astype(np.int16), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, out / f"{name}.nii.gz")
    print(name, vol.shape, float(vol.min()), float(vol.max()))
