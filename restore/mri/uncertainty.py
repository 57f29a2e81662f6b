"""A per-voxel error estimate for a restored volume, calibrated by the data itself.

The spread of posterior samples started at ``t*`` from the observation says how much the reverse
process varies, not how far the output is from the truth: on a real 2 mm T1 at 6% noise its
median was 30x smaller than the median error. The error that matters is mostly the restoration's
bias (smoothing, texture and lesions the prior does not know), which no sampling shows.

Refinement already measures that error without a reference: Recorrupted-to-Recorrupted scoring
(:func:`restore.mri.refine.choose_h`) gives the mean squared error of the whole restoration in
each class of the pilot's local spread (flat tissue, edges, ...), at noise ``1.12 sigma``. This
module turns those class errors into a map:

    std_map(v)^2 = mse[class(v)] + var_samples(v)

so flat tissue gets a small value and edges a large one, and voxels where the samples disagree
get more. Errors within a class are not all alike (a mixture), so the map is a local RMS, not a
per-voxel bound: for Gaussian-like errors about 95% of voxels lie within 2 std_map, for heavier
tails somewhat fewer.
"""

from __future__ import annotations

import numpy as np
import torch

from restore.mri.refine import RefineResult, local_std

MIN_MSE_OVER_SIGMA2 = 1e-3  # class MSE estimates are noisy and can come out <= 0: floor them


def error_std_map(pilot: np.ndarray, refined: RefineResult, sigma: float,
                  sample_std: np.ndarray | None = None) -> np.ndarray | None:
    """RMS error estimate per voxel of ``refined.data`` (input units, ``pilot``'s shape), or
    ``None`` when refinement scored nothing (no foreground, or a given ``h``). ``pilot`` is the
    diffusion output refinement started from; ``sample_std`` the spread of posterior samples."""
    if not refined.scores or sigma <= 0:
        return None
    floor = MIN_MSE_OVER_SIGMA2 * sigma**2
    mse = np.array([max(refined.scores[h][k], floor) for k, h in enumerate(refined.h)], dtype=np.float64)
    spread = local_std(torch.from_numpy(np.ascontiguousarray(pilot, dtype=np.float32))).numpy() / sigma
    label = np.searchsorted(np.asarray(refined.edges, dtype=np.float64), spread, side="left")
    var = mse[label]
    if sample_std is not None:
        var = var + sample_std.astype(np.float64) ** 2
    return np.sqrt(var).astype(np.float32)


def coverage(error: np.ndarray, std_map: np.ndarray, mask: np.ndarray, k: float = 2.0) -> float:
    """Share of ``mask`` voxels whose ``|error|`` is within ``k`` times the map."""
    return float((np.abs(error[mask]) <= k * std_map[mask]).mean())
