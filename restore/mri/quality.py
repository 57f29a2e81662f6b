"""Quality numbers for MRI volumes, with and without a clean reference."""

from __future__ import annotations

import numpy as np

from restore.metrics.image import head_mask, nrmse, psnr, ssim
from restore.mri.noise import estimate_gaussian_sigma


def foreground_mask(data: np.ndarray, sigma: float) -> np.ndarray:
    """Voxels clearly above the noise floor: > max(5 sigma, 10% of the 99th percentile), holes filled."""
    from scipy import ndimage

    p99 = float(np.percentile(data, 99))
    smooth = ndimage.uniform_filter(data, 3)
    return ndimage.binary_fill_holes(smooth > max(5 * sigma, 0.1 * p99))


def snr(data: np.ndarray, sigma: float, mask: np.ndarray) -> float:
    """Foreground mean over the noise sigma (inf when sigma is 0)."""
    return float(data[mask].mean() / sigma) if sigma > 0 else float("inf")


def residual_structure(noisy: np.ndarray, restored: np.ndarray, mask: np.ndarray) -> float:
    """Share of the removed signal (``noisy - restored``) inside ``mask`` that is not white noise.

    For pure noise removal the residual is white, so its variance equals the fine-scale (wavelet)
    noise variance and this is ~0; anatomy in the residual adds low-frequency variance and pushes
    it towards 1. Blurring denoisers score high.
    """
    residual = (noisy - restored).astype(np.float64)
    if not mask.any():
        return float("nan")
    total = float(residual[mask].var())
    if total == 0:
        return 0.0
    white = estimate_gaussian_sigma(residual, mask) ** 2
    return float(np.clip(1 - white / total, 0, 1))


def reference_metrics(reference: np.ndarray, estimate: np.ndarray) -> dict:
    """PSNR, SSIM and NRMSE inside the reference's head mask and over the whole volume."""
    mask = head_mask(reference)
    data_range = float(reference.max() - reference.min())
    return {
        "psnr_head": psnr(reference, estimate, mask=mask, data_range=data_range),
        "ssim_head": ssim(reference, estimate, mask=mask, data_range=data_range),
        "nrmse_head": nrmse(reference, estimate, mask=mask),
        "psnr": psnr(reference, estimate, data_range=data_range),
        "ssim": ssim(reference, estimate, data_range=data_range),
        "nrmse": nrmse(reference, estimate),
    }
