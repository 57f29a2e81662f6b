"""The lesion guard (restore.mri.guard): gives back removed structure, leaves removed noise alone,
and its QC number flags over-smoothing."""

import numpy as np
from scipy import ndimage

from restore.mri.guard import residual_feedback
from restore.mri.noise import add_rician_noise, rician_mean
from restore.mri.pipeline import OVER_SMOOTHING_SHARE
from restore.mri.quality import foreground_mask

SIGMA = 30.0


def _head(shape=(64, 64, 32)) -> np.ndarray:
    g = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = g[0] ** 2 / 0.8 + g[1] ** 2 / 0.8 + g[2] ** 2 < 1
    grains = ndimage.gaussian_filter(np.random.default_rng(9).standard_normal(shape), 1.5)  # fine texture
    return (inside * (600 + 150 * np.sin(4 * g[0]) * np.cos(3 * g[1]) + 800 * grains)).astype(np.float32)


def _lesion(shape, centre, radius=2.0) -> np.ndarray:
    g = np.indices(shape).astype(np.float32)
    return sum((gi - c) ** 2 for gi, c in zip(g, centre)) <= radius**2


def test_rician_mean_matches_samples():
    rng = np.random.default_rng(0)
    for a in (0.0, 1.0, 3.0, 20.0):
        samples = add_rician_noise(np.full(200_000, a, np.float32), 1.0, rng)
        assert abs(float(rician_mean(np.array([a]), 1.0)[0]) - samples.mean()) < 0.01


def test_noise_only_residual_is_mostly_left_alone():
    clean = _head()
    noisy = add_rician_noise(clean, SIGMA, np.random.default_rng(1))
    fg = foreground_mask(noisy, SIGMA)
    out = residual_feedback(noisy, clean, SIGMA, fg, zooms=(1.0, 1.0, 1.0))
    assert out.share_structured < OVER_SMOOTHING_SHARE / 4
    # a perfect restoration's residual is the noise itself: some false regions come back, few of the noise
    assert np.sqrt(np.mean((out.data - clean)[fg] ** 2)) < 0.35 * SIGMA


def test_clean_input_is_unchanged():
    clean = _head()
    out = residual_feedback(clean, clean, 1e-3, clean > 0, zooms=(1.0, 1.0, 1.0))
    assert np.array_equal(out.data, clean)


def test_erased_lesions_are_given_back():
    clean = _head()
    lesions = [_lesion(clean.shape, c) for c in ((32, 20, 16), (20, 40, 12), (44, 40, 20))]
    with_lesions = clean.copy()
    for k, m in enumerate(lesions):
        with_lesions[m] *= 1.25 if k % 2 == 0 else 0.75
    noisy = add_rician_noise(with_lesions, SIGMA, np.random.default_rng(2))
    # a restorer whose prior erased the lesions (it returns the lesion-free anatomy)
    out = residual_feedback(noisy, clean, SIGMA, foreground_mask(noisy, SIGMA), zooms=(1.0, 1.0, 1.0))
    kept = [(out.data[m] - clean[m]).sum() / (with_lesions[m] - clean[m]).sum() for m in lesions]
    assert min(kept) > 0.5, kept
    far = ~ndimage.binary_dilation(np.any(lesions, axis=0), iterations=8) & foreground_mask(noisy, SIGMA)
    assert np.abs(out.data - clean)[far].mean() < 0.15 * SIGMA  # elsewhere little comes back


def test_over_smoothing_is_flagged():
    clean = _head()
    noisy = add_rician_noise(clean, SIGMA, np.random.default_rng(3))
    fg = foreground_mask(noisy, SIGMA)
    blurred = ndimage.gaussian_filter(clean, 2.5)  # what a too-strong restoration returns
    assert residual_feedback(noisy, blurred, SIGMA, fg, zooms=(1.0, 1.0, 1.0)).share_structured > OVER_SMOOTHING_SHARE
    assert residual_feedback(noisy, clean, SIGMA, fg, zooms=(1.0, 1.0, 1.0)).share_structured < OVER_SMOOTHING_SHARE


def test_pipeline_flags_a_restoration_that_over_smooths(tmp_path):
    """--strength 4 starts the reverse process at 4x the noise level: anatomy is removed, the sidecar says so."""
    from conftest import write_nifti

    from restore.mri.pipeline import restore_nifti

    noisy = add_rician_noise(_head((64, 64, 24)), SIGMA, np.random.default_rng(4))
    src = write_nifti(tmp_path / "noisy.nii.gz", noisy, dtype=np.float32, zooms=(1.0, 1.0, 1.0))
    qc = {}
    for strength in (1.0, 4.0):
        record = restore_nifti(src, tmp_path / f"out{strength}.nii.gz", strength=strength, refine=False, progress=False)
        qc[strength] = record["metrics"]["qc"]
    assert qc[4.0]["over_smoothing"] and not qc[1.0]["over_smoothing"], qc
