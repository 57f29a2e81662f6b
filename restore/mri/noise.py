"""Noise level of Rician magnitude volumes.

``estimate_rician_sigma`` uses the finest 3D Haar wavelet detail band (HHH), which anatomy barely
reaches, and its median absolute deviation (Donoho & Johnstone 1994, sigma = MAD / 0.6745):

- in **signal** (local mean well above sigma) Rician noise is nearly Gaussian with std sigma;
- in **background** (no signal) magnitudes are Rayleigh, whose std is sqrt(2 - pi/2) * sigma.

It iterates: estimate, classify blocks as signal or background by their mean, re-estimate from the
signal blocks (corrected for the Rician std deficit), falling back to background blocks when the
volume has too little signal. This works with or without much background (Coupé et al. 2010 use a
similar wavelet-based estimate for MRI).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

MAD_TO_STD = 1 / 0.6744897501960817
RAYLEIGH_STD = float(np.sqrt(2 - np.pi / 2))  # std of a Rayleigh(sigma) variable / sigma
MIN_BLOCKS = 2000


@dataclass(frozen=True)
class NoiseEstimate:
    sigma: float  # in the input's units
    percent_of_p99: float  # 100 * sigma / 99th percentile of the volume
    method: str  # "wavelet-signal" | "wavelet-background" | "given"
    blocks: int  # how many 2x2x2 blocks the estimate rests on


def _haar_blocks(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per 2x2(x2) block: the finest diagonal Haar detail, the block mean and the gradient
    magnitude of the block means (all flattened). Haar is orthogonal, so for Gaussian noise the
    detail is independent of the means: selecting blocks by their means does not bias it."""
    dims = [d for d in range(data.ndim) if data.shape[d] >= 2]
    cut = tuple(slice(0, (n // 2) * 2) if d in dims else slice(None) for d, n in enumerate(data.shape))
    x = data[cut].astype(np.float64)
    detail, mean = x, x
    for d in dims:
        a = np.take(detail, np.arange(0, detail.shape[d], 2), axis=d)
        b = np.take(detail, np.arange(1, detail.shape[d], 2), axis=d)
        detail = (a - b) / np.sqrt(2)
        ma = np.take(mean, np.arange(0, mean.shape[d], 2), axis=d)
        mb = np.take(mean, np.arange(1, mean.shape[d], 2), axis=d)
        mean = (ma + mb) / 2
    grads = np.gradient(mean, axis=[i for i in range(mean.ndim) if mean.shape[i] >= 2])
    grads = list(grads) if isinstance(grads, (list, tuple)) else [grads]
    gradient = np.sqrt(sum(g**2 for g in grads))
    return detail.ravel(), mean.ravel(), gradient.ravel()


def _rician_std_factor(snr: np.ndarray) -> np.ndarray:
    """std of Rician(A, sigma) / sigma for ``snr = A / sigma`` (Gudbjartsson & Patz 1995):
    var / sigma^2 = 2 + snr^2 - (pi / 2) L_{1/2}(-snr^2 / 2)^2, with the Laguerre function written
    through exponentially scaled Bessel functions so large SNR does not overflow."""
    x = -0.5 * np.asarray(snr, dtype=np.float64) ** 2
    laguerre = (1 - x) * special.i0e(-x / 2) - x * special.i1e(-x / 2)
    return np.sqrt(np.maximum(2 + 2 * -x - np.pi / 2 * laguerre**2, 0))


def estimate_rician_sigma(data: np.ndarray, *, iterations: int = 4) -> NoiseEstimate:
    """Sigma of the Gaussian noise behind a Rician magnitude volume ``data: (X, Y[, Z])``.

    Returns the estimate in ``data``'s units; a volume without noise gives sigma 0.
    """
    if data.ndim < 2 or data.size < 64:
        raise ValueError(f"need a 2D or 3D volume with at least 64 voxels, got shape {data.shape}")
    detail, mean, gradient = _haar_blocks(data)
    p99 = float(np.percentile(data, 99))
    sigma = MAD_TO_STD * float(np.median(np.abs(detail)))
    method, used = "wavelet-signal", detail.size
    enough = min(MIN_BLOCKS, detail.size // 8)  # small (single-slice) volumes use what they have
    for _ in range(iterations):
        if sigma <= 0:
            break
        signal = mean > 5 * sigma
        if signal.sum() >= 2 * enough:  # flat half of the signal: edges leak into the detail band
            signal &= gradient <= np.median(gradient[signal])
        background = mean < 1.0 * sigma
        if signal.sum() >= enough:
            d = detail[signal]
            factor = float(np.median(_rician_std_factor(mean[signal] / sigma)))
            method, used = "wavelet-signal", int(signal.sum())
        elif background.sum() >= enough:
            d, factor = detail[background], RAYLEIGH_STD
            method, used = "wavelet-background", int(background.sum())
        else:
            break
        sigma = MAD_TO_STD * float(np.median(np.abs(d))) / factor
    return NoiseEstimate(sigma=sigma, percent_of_p99=100 * sigma / p99 if p99 > 0 else 0.0, method=method, blocks=used)


def add_rician_noise(x0: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``x0 + sigma * (n1 + i n2)``: Rician noise with Gaussian std ``sigma``."""
    n1 = rng.standard_normal(x0.shape, dtype=np.float32)
    n2 = rng.standard_normal(x0.shape, dtype=np.float32)
    return np.sqrt((x0 + sigma * n1) ** 2 + (sigma * n2) ** 2).astype(np.float32)


def estimate_gaussian_sigma(data: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Std of white Gaussian noise in signed ``data`` (e.g. a residual): MAD of the finest Haar
    detail band, over the 2x2x2 blocks that lie wholly inside ``mask`` when given."""
    detail, _, _ = _haar_blocks(data)
    if mask is not None:
        _, inside, _ = _haar_blocks(mask.astype(np.float64))
        detail = detail[inside == 1]
    if detail.size == 0:
        return float("nan")
    return MAD_TO_STD * float(np.median(np.abs(detail)))
