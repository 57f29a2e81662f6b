"""Restore one block at any rate: the model band runs at 16 kHz, the band above it is kept.

For a file at ``sr > 16 kHz`` the block splits into ``low = up(down(block))`` (what the model sees)
and ``high = block - low`` (content above 8 kHz). The model restores ``down(block)``; the high
band is kept, not thrown away, scaled per frame by the gain the model applied at 4-8 kHz
(``sqrt(E_restored / E_noisy)``, at most 1) so hiss above 8 kHz is reduced where the model found
none below. Resampling (soxr, HQ) is reported in the sidecar, never silent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
import torch

from restore.audio import spectral
from restore.audio.denoise import AudioModel, denoise_samples
from restore.audio.estimate import estimate_degradation

MODEL_SR = spectral.MODEL_SR
GAIN_FROM_HZ = 4000.0


@dataclass(frozen=True)
class BlockResult:
    """``samples: (n, C)`` at the input rate; per channel ``t_star``, ``snr_before_db``, ``snr_after_db``."""

    samples: np.ndarray
    t_star: list[int]
    snr_before_db: list[float]
    snr_after_db: list[float]


def _resample(x: np.ndarray, sr_in: int, sr_out: int, n_out: int) -> np.ndarray:
    y = soxr.resample(x, sr_in, sr_out, quality="HQ") if sr_in != sr_out else x
    if y.shape[0] < n_out:
        y = np.pad(y, ((0, n_out - y.shape[0]), (0, 0)))
    return np.ascontiguousarray(y[:n_out], dtype=np.float32)


def _band_gain(noisy: torch.Tensor, restored: torch.Tensor, n_out: int, sr_out: int) -> np.ndarray:
    """Per-frame ``sqrt(E_restored / E_noisy)`` above :data:`GAIN_FROM_HZ`, as ``(n_out, C)`` at ``sr_out``."""
    lo = int(GAIN_FROM_HZ / MODEL_SR * spectral.N_FFT)
    e_noisy = spectral.stft(noisy)[:, lo:].abs().pow(2).sum(dim=1)
    e_rest = spectral.stft(restored)[:, lo:].abs().pow(2).sum(dim=1)
    floor = 1e-6 * e_noisy.mean(dim=1, keepdim=True) + 1e-20  # no energy below: keep the high band as is
    gain = ((e_rest + floor) / (e_noisy + floor)).clamp(0, 1).sqrt().numpy()  # (C, N)
    frame_times = np.arange(gain.shape[1]) * spectral.HOP / MODEL_SR
    times = np.arange(n_out) / sr_out
    return np.stack([np.interp(times, frame_times, g) for g in gain], axis=1).astype(np.float32)


def restore_block(
    model: AudioModel,
    block: np.ndarray,
    sr: int,
    *,
    strength: float,
    steps: int | None,
    generator: torch.Generator,
    context: np.ndarray | None = None,
) -> BlockResult:
    """``block: (n, C)`` float32 at ``sr`` -> restored ``(n, C)``; channels are restored independently.

    ``context: (m, C)`` (a longer stretch around the block) is where level and noise are estimated.
    """
    n = block.shape[0]
    n_model = round(n * MODEL_SR / sr)
    low = _resample(block, sr, MODEL_SR, n_model)
    noisy = torch.from_numpy(low.T.copy())  # (C, L): channels as batch rows
    around = None
    if context is not None:
        around = torch.from_numpy(_resample(context, sr, MODEL_SR, round(context.shape[0] * MODEL_SR / sr)).T.copy())
    result = denoise_samples(model, noisy, strength=strength, steps=steps, generator=generator, context=around)
    restored = result.samples
    out = _resample(restored.numpy().T, MODEL_SR, sr, n)
    if sr > MODEL_SR:
        high = block - _resample(low, MODEL_SR, sr, n)
        out = out + high * _band_gain(noisy, restored, n, sr)
    after = estimate_degradation(restored).snr_db
    return BlockResult(
        samples=out,
        t_star=[int(t) for t in result.t_star],
        snr_before_db=[float(s) for s in result.degradation.snr_db],
        snr_after_db=[float(s) for s in after],
    )
