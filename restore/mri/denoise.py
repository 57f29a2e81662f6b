"""2.5D conditional diffusion denoising of a 3D volume, slice by slice.

Each slice is restored from its noisy self plus ``n`` neighbours on either side (condition
channels) and a constant channel holding the noise level, starting partway at the step ``t*``
that matches the volume's noise:

    normalise -> sigma -> t* -> x_t* from the observation -> K reverse steps -> un-normalise
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from restore.device import autocast
from restore.diffusion import sample_ancestral, sample_ddim, start_from_observation
from restore.nets import UNetDenoiser


@dataclass(frozen=True)
class IntensityScale:
    """Maps intensities to the model's range: ``x = data / scale * 2 - 1`` (background ~ -1)."""

    scale: float  # the volume's 99th percentile

    def to_model(self, data: np.ndarray) -> np.ndarray:
        return (data / self.scale * 2 - 1).astype(np.float32)

    def from_model(self, x: np.ndarray) -> np.ndarray:
        return ((x + 1) / 2 * self.scale).astype(np.float32)

    def sigma_to_model(self, sigma: float) -> float:
        return 2 * sigma / self.scale


def fit_intensity_scale(data: np.ndarray) -> IntensityScale:
    scale = float(np.percentile(data, 99))
    if scale <= 0:
        scale = float(np.max(np.abs(data)))
    if scale <= 0:
        raise ValueError("cannot normalise an all-zero volume")
    return IntensityScale(scale)


def slab_condition(volume: torch.Tensor, index: torch.Tensor, neighbours: int, sigma: float) -> torch.Tensor:
    """Condition channels for slices ``index`` of ``volume: (S, H, W)``.

    Returns ``(B, 2 * neighbours + 2, H, W)``: slices ``k - n .. k + n`` (edges repeated) and a
    constant channel equal to ``sigma`` (model units).
    """
    offsets = torch.arange(-neighbours, neighbours + 1, device=volume.device)
    idx = (index[:, None] + offsets[None, :]).clamp(0, volume.shape[0] - 1)
    slabs = volume[idx]  # (B, 2n+1, H, W)
    sigma_map = torch.full_like(slabs[:, :1], float(sigma))
    return torch.cat([slabs, sigma_map], dim=1)


@dataclass(frozen=True)
class DenoiseResult:
    data: np.ndarray  # restored volume, input units, same shape
    std: np.ndarray | None  # per-voxel std over posterior samples (samples > 1)
    t_star: int
    sigma_model: float  # noise std in model units
    steps: int  # reverse steps actually run


def denoise_volume(
    data: np.ndarray,
    sigma: float,
    model: UNetDenoiser,
    *,
    steps: int = 2,
    samples: int = 1,
    seed: int = 0,
    axis: int = 2,
    batch_size: int = 8,
    bf16: bool = True,
    strength: float = 1.0,
    on_batch: Callable[[int], None] | None = None,
) -> DenoiseResult:
    """Restore ``data: (X, Y, Z)`` (input units) with Gaussian-equivalent noise ``sigma``.

    ``samples > 1`` draws ancestral posterior samples and returns their mean and std; one sample
    uses deterministic DDIM. ``strength`` scales the noise level used to pick ``t*``.
    ``on_batch(n_slices)`` is called after each batch of slices (progress bars).
    """
    if data.ndim != 3:
        raise ValueError(f"data must be 3-D (X, Y, Z), got shape {data.shape}")
    if steps < 1 or samples < 1:
        raise ValueError(f"steps and samples must be >= 1, got {steps} and {samples}")
    intensity = fit_intensity_scale(data)
    sigma_model = intensity.sigma_to_model(sigma) * strength
    schedule = model.schedule
    t_star = int(schedule.timestep_for_sigma(sigma_model))
    if t_star == 0:
        return DenoiseResult(data.copy(), None, 0, sigma_model, 0)
    device = next(model.parameters()).device
    neighbours = int(model.config.extra.get("neighbours", 2))
    volume = torch.from_numpy(np.moveaxis(intensity.to_model(data), axis, 0).copy()).to(device)
    timesteps = schedule.inference_timesteps(steps, start=t_star)
    generator = torch.Generator(device=device).manual_seed(seed)
    total = torch.zeros_like(volume)
    total_sq = torch.zeros_like(volume) if samples > 1 else None
    for start in range(0, volume.shape[0], batch_size):
        index = torch.arange(start, min(start + batch_size, volume.shape[0]), device=device)
        cond = slab_condition(volume, index, neighbours, sigma_model)
        y = cond[:, neighbours : neighbours + 1]
        for _ in range(samples):
            x = start_from_observation(y, sigma_model, t_star, schedule, generator=generator)
            with autocast(device, bf16):
                if samples == 1:
                    out = sample_ddim(model, x, timesteps, schedule, cond=cond, generator=generator)
                else:
                    out = sample_ancestral(model, x, timesteps, schedule, cond=cond, generator=generator)
            out = out.float()[:, 0]
            total[index] += out
            if total_sq is not None:
                total_sq[index] += out**2
        if on_batch is not None:
            on_batch(len(index))
    mean = total / samples
    restored = np.moveaxis(intensity.from_model(mean.cpu().numpy()), 0, axis)
    std = None
    if total_sq is not None:
        var = (total_sq / samples - mean**2).clamp(min=0)
        std = np.moveaxis(var.sqrt().cpu().numpy() * intensity.scale / 2, 0, axis).astype(np.float32)
    return DenoiseResult(restored, std, t_star, sigma_model, len(timesteps) - 1)


def denoise_orientations(data: np.ndarray, sigma: float, model: UNetDenoiser, *, axes: list[int], seed: int = 0,
                         **options) -> DenoiseResult:
    """Average :func:`denoise_volume` over slicing ``axes`` (e.g. ``[2, 0, 1]``): each voxel is seen
    in several orientations, for ~3x the time. On the whole held-out MNI152 at 3/6/9% noise:
    +0.43/+0.40/+0.40 dB, +0.32..+0.52 dB in every axial slab (bench/mri_orientations.py).
    ``options`` are :func:`denoise_volume`'s."""
    results = [denoise_volume(data, sigma, model, axis=a, seed=seed + i, **options) for i, a in enumerate(axes)]
    if len(results) == 1:
        return results[0]
    mean = np.mean([r.data for r in results], axis=0).astype(np.float32)
    std = None
    if all(r.std is not None for r in results):
        std = np.mean([r.std for r in results], axis=0).astype(np.float32)
    first = results[0]
    return DenoiseResult(mean, std, first.t_star, first.sigma_model, first.steps)
