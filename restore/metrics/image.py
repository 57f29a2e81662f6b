"""Reference-based image metrics (PSNR, SSIM, NRMSE), optionally inside a mask.

``data_range`` defaults to the reference's max minus min, as in scikit-image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _range(reference: np.ndarray, data_range: float | None) -> float:
    r = float(reference.max() - reference.min()) if data_range is None else float(data_range)
    if r <= 0:
        raise ValueError("data_range must be positive (is the reference constant?)")
    return r


def psnr(reference: np.ndarray, estimate: np.ndarray, *, mask: np.ndarray | None = None,
         data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB; identical inputs give ``inf``."""
    diff = (estimate.astype(np.float64) - reference.astype(np.float64)) ** 2
    mse = float(diff[mask].mean() if mask is not None else diff.mean())
    if mse == 0:
        return float("inf")
    return 10 * np.log10(_range(reference, data_range) ** 2 / mse)


def nrmse(reference: np.ndarray, estimate: np.ndarray, *, mask: np.ndarray | None = None) -> float:
    """Root-mean-square error over the reference's RMS (the 'euclidean' normalisation)."""
    ref = reference.astype(np.float64) if mask is None else reference[mask].astype(np.float64)
    est = estimate.astype(np.float64) if mask is None else estimate[mask].astype(np.float64)
    return float(np.sqrt(np.mean((est - ref) ** 2)) / np.sqrt(np.mean(ref**2)))


def ssim(reference: np.ndarray, estimate: np.ndarray, *, mask: np.ndarray | None = None,
         data_range: float | None = None, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004) with a Gaussian window, in 2D or 3D.

    The SSIM map is averaged over ``mask`` when given. Identical inputs give 1.
    """
    x, y = reference.astype(np.float64), estimate.astype(np.float64)
    L = _range(reference, data_range)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    blur = lambda a: ndimage.gaussian_filter(a, sigma, truncate=3.5)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(smap[mask].mean() if mask is not None else smap.mean())


def head_mask(reference: np.ndarray, *, fraction: float = 0.1) -> np.ndarray:
    """Foreground (head) mask of a clean volume: above ``fraction`` of its 99th percentile,
    holes filled and dilated by one voxel."""
    mask = reference > fraction * np.percentile(reference, 99)
    mask = ndimage.binary_fill_holes(mask)
    return ndimage.binary_dilation(mask, iterations=1)
