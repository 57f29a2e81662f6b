"""Missing and corrupted slices: detection, and filling by conditional diffusion inpainting.

A missing slice is first given a rough observation ``y`` -- linear interpolation between the
nearest known slices -- whose error is treated as noise of level ``start_sigma``; the reverse
process starts at ``t* = timestep_for_sigma(start_sigma)`` from ``y`` and is conditioned on the
neighbouring slices and a mask of which of them are known. Known slices are never changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from restore.device import autocast
from restore.diffusion import sample_ddim, start_from_observation
from restore.mri.denoise import fit_intensity_scale
from restore.mri.noise import estimate_rician_sigma
from restore.nets import UNetDenoiser

MAX_GAP = 3  # consecutive missing slices the model was trained for


@dataclass(frozen=True)
class SliceReport:
    axis: int
    missing: list[int] = field(default_factory=list)  # all-zero, constant or non-finite
    corrupted: list[int] = field(default_factory=list)  # intensity far off their neighbours: filled
    suspect: list[int] = field(default_factory=list)  # poorly correlated with neighbours: reported only
    given: list[int] = field(default_factory=list)  # named by the user

    @property
    def to_fill(self) -> list[int]:
        return sorted(set(self.missing) | set(self.corrupted) | set(self.given))

    def longest_gap(self) -> int:
        run = best = 0
        prev = None
        for k in self.to_fill:
            run = run + 1 if prev is not None and k == prev + 1 else 1
            best, prev = max(best, run), k
        return best


def detect_bad_slices(data: np.ndarray, *, axis: int = 2) -> SliceReport:
    """Slices along ``axis`` of ``data: (X, Y, Z)`` that are missing or strongly corrupted.

    Missing: not finite, or constant (e.g. all zero) between slices that hold head (a constant run
    at either end is background padding). Corrupted (interior slices only): mean intensity above
    both neighbours' or below both by a factor of 1.5 (a spike, not the trend at the end of the
    head; the interhemispheric slice of a template differs by ~15%). Suspect (reported, not filled unless named with ``--missing-slices``): a
    normalised cross-correlation with the average of its two neighbours far below the volume's
    typical value (motion, spikes); with strong noise, anatomy such as the midline can trip it.
    """
    s = np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1).astype(np.float64)
    n = len(s)
    finite = np.isfinite(s).all(axis=1)
    constant = np.array([finite[k] and np.ptp(s[k]) == 0 for k in range(n)])
    content = np.flatnonzero(finite & ~constant)
    if content.size == 0:
        return SliceReport(axis=axis)
    means = np.where(finite, np.nan_to_num(s).mean(axis=1), np.nan)
    level = float(np.nanpercentile(means[content], 90))
    head = finite & ~constant & (means > 0.1 * level)
    heads = np.flatnonzero(head)
    missing = [int(k) for k in range(n) if not finite[k]
               or (constant[k] and heads.size and heads[0] < k < heads[-1])]
    ok = head & ~np.isin(np.arange(n), missing)
    # well inside the head (a quarter of the largest area above 5 sigma): noise cannot decorrelate these
    sigma = estimate_rician_sigma(np.compress(ok, data, axis=axis)).sigma if ok.sum() >= 2 else 0.0
    area = (np.nan_to_num(s) > 5 * sigma).mean(axis=1)
    inner = ok & (area > 0.25 * area.max())
    ncc = np.full(n, np.nan)
    ratio = np.full(n, np.nan)
    for k in range(1, n - 1):
        if not (inner[k] and ok[k - 1] and ok[k + 1]):
            continue
        a = s[k] - s[k].mean()
        b = (s[k - 1] + s[k + 1]) / 2
        b = b - b.mean()
        ncc[k] = (a @ b) / np.sqrt((a @ a) * (b @ b) + 1e-12)
        # a spike, not a trend: compared with the nearer of its two neighbours
        lo, hi = sorted((means[k - 1], means[k + 1]))
        ratio[k] = means[k] / hi if means[k] > hi else (means[k] / lo if means[k] < lo else 1.0)
    loss = 1 - ncc
    if np.all(np.isnan(loss)):  # too few slices to judge
        return SliceReport(axis=axis, missing=missing)
    typical = np.nanmedian(loss)
    spread = 1.4826 * np.nanmedian(np.abs(loss - typical))
    with np.errstate(invalid="ignore"):
        off = (ratio > 1.5) | (ratio < 1 / 1.5)
        decorrelated = (loss > typical + 10 * spread) & (loss > 0.08) & ~off
    return SliceReport(axis=axis, missing=missing, corrupted=[int(k) for k in np.flatnonzero(off)],
                       suspect=[int(k) for k in np.flatnonzero(decorrelated)])


def interpolate_missing(volume: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Linear interpolation along axis 0 of ``volume: (S, ...)`` from the ``known`` slices
    (nearest known slice copied beyond the ends)."""
    out = volume.copy()
    idx = np.flatnonzero(known)
    if idx.size == 0:
        raise ValueError("no known slice to interpolate from")
    for k in np.flatnonzero(~known):
        right = idx[idx > k]
        left = idx[idx < k]
        if left.size and right.size:
            a, b = left[-1], right[0]
            w = (k - a) / (b - a)
            out[k] = (1 - w) * volume[a] + w * volume[b]
        else:
            out[k] = volume[left[-1] if left.size else right[0]]
    return out


FLIPS = [[], [-1], [-2], [-2, -1]]  # in-plane flips of the ensemble members


def fill_condition(slabs: torch.Tensor, known: torch.Tensor, sigma: float) -> torch.Tensor:
    """``slabs: (B, 2n+1, H, W)`` (missing slices interpolated), ``known: (B, 2n+1)`` bool ->
    condition ``(B, 2 (2n+1) + 1, H, W)``: the slab, one known-mask plane per slice, the noise level."""
    planes = known.to(slabs.dtype)[:, :, None, None].expand_as(slabs)
    sigma_map = torch.full_like(slabs[:, :1], float(sigma))
    return torch.cat([slabs, planes, sigma_map], dim=1)


@dataclass(frozen=True)
class FillResult:
    data: np.ndarray  # volume with the slices filled, input units
    filled: np.ndarray  # bool mask of filled voxels
    t_star: int


def fill_slices(
    data: np.ndarray,
    to_fill: list[int],
    sigma: float,
    model: UNetDenoiser,
    *,
    axis: int = 2,
    steps: int = 4,
    seed: int = 0,
    bf16: bool = True,
    batch_size: int = 8,
    ensemble: int = 1,
    on_batch: Callable[[int], None] | None = None,
) -> FillResult:
    """Fill slices ``to_fill`` along ``axis`` of ``data: (X, Y, Z)``; every other voxel is kept.

    ``ensemble`` > 1 averages that many fills, each from its own start noise and in-plane flip
    (none, left-right, up-down, both; the network was trained with flips): the mean of posterior
    samples, closer to the posterior mean than one sample. Measured on the held-out volume
    (bench/mri_fill.py data, 13 missing slices): 1/2/4/8 members give 28.99/29.17/29.27/29.30 dB
    without noise and 28.37/28.50/28.59/28.61 dB at 3% noise, in 1.7/3.2/6.5/12.9 s.
    """
    vol = np.moveaxis(data, axis, 0).astype(np.float32)
    known = np.ones(vol.shape[0], bool)
    known[to_fill] = False
    if ensemble < 1:
        raise ValueError(f"ensemble must be >= 1, got {ensemble}")
    if not to_fill:
        return FillResult(data.copy(), np.zeros(data.shape, bool), 0)
    intensity = fit_intensity_scale(vol[known])
    x = intensity.to_model(interpolate_missing(np.where(np.isfinite(vol), vol, 0), known))
    n = int(model.config.extra["neighbours"])
    start_sigma = float(model.config.extra["start_sigma"])
    schedule = model.schedule
    t_star = int(schedule.timestep_for_sigma(start_sigma))
    timesteps = schedule.inference_timesteps(steps, start=t_star)
    device = next(model.parameters()).device
    volume = torch.from_numpy(x).to(device)
    known_t = torch.from_numpy(known).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    sigma_model = intensity.sigma_to_model(sigma)
    missing = torch.tensor(to_fill, device=device)
    offsets = torch.arange(-n, n + 1, device=device)
    for start in range(0, len(missing), batch_size):
        index = missing[start : start + batch_size]
        idx = (index[:, None] + offsets[None, :]).clamp(0, volume.shape[0] - 1)
        cond = fill_condition(volume[idx], known_t[idx], sigma_model)
        y = volume[index][:, None]
        total = torch.zeros_like(y)
        for member in range(ensemble):
            dims = FLIPS[member % len(FLIPS)]
            x_t = start_from_observation(y.flip(dims), 0.0, t_star, schedule, generator=generator)
            with autocast(device, bf16):
                out = sample_ddim(model, x_t, timesteps, schedule, cond=cond.flip(dims), generator=generator)
            total += out.float().flip(dims)
        volume[index] = (total / ensemble)[:, 0]
        if on_batch is not None:
            on_batch(len(index))
    filled = intensity.from_model(volume.cpu().numpy())
    result = np.where(known[:, None, None], vol, filled)  # known slices untouched
    mask = np.broadcast_to(~known[:, None, None], vol.shape)
    return FillResult(np.moveaxis(result, 0, axis), np.moveaxis(mask, 0, axis).copy(), t_star)
