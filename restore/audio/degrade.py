"""Synthetic degradations for training, tests and the benchmark: mixing at a chosen SNR, coloured
noise, mains hum, hiss, tape hiss and vinyl crackle. All randomness comes from an explicit ``numpy.random.Generator``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def add_noise_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean + g * noise`` with ``g`` chosen so that ``10 log10(P_clean / P_noise) = snr_db``.

    ``clean``, ``noise``: same shape, float. Power is the mean square over the whole array.
    """
    if clean.shape != noise.shape:
        raise ValueError(f"clean and noise must have the same shape, got {clean.shape} and {noise.shape}")
    p_clean = float(np.mean(clean.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_noise <= 0:
        raise ValueError("noise is all zeros")
    gain = np.sqrt(p_clean / (p_noise * 10 ** (snr_db / 10)))
    return (clean + gain * noise).astype(clean.dtype)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ``1 / f**exponent`` (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.arange(n // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return (noise / (noise.std() + 1e-12)).astype(np.float32)


def hum(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum at 50 or 60 Hz with a few random-strength harmonics, unit RMS."""
    f0 = rng.choice([50.0, 60.0]) * (1 + 0.005 * rng.standard_normal())
    t = np.arange(n) / sr
    wave = sum(rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 8))
    return (wave / (wave.std() + 1e-12)).astype(np.float32)


def hiss(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Tape-like hiss: white noise tilted towards high frequencies, unit RMS."""
    white = rng.standard_normal(n + 1)
    tilted = white[1:] - rng.uniform(0.3, 0.9) * white[:-1]  # first-order high-pass tilt
    return (tilted / (tilted.std() + 1e-12)).astype(np.float32)


def synthetic_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One of: coloured noise (white..brown), hum, hiss, or hum + coloured noise; unit RMS."""
    kind = rng.integers(4)
    if kind == 0:
        out = coloured_noise(n, rng.uniform(0.0, 2.0), rng)
    elif kind == 1:
        out = hum(n, sr, rng)
    elif kind == 2:
        out = hiss(n, sr, rng)
    else:
        out = hum(n, sr, rng) + rng.uniform(0.3, 1.0) * coloured_noise(n, rng.uniform(0.0, 2.0), rng)
    return (out / (out.std() + 1e-12)).astype(np.float32)


def augment_noise(noise: np.ndarray, rng: np.random.Generator, *, other: np.ndarray | None = None,
                  sr: int = 16_000) -> np.ndarray:
    """A new noise from a real one: random spectral tilt/EQ (up to +-12 dB over log frequency), a slow
    loudness envelope (half the time) and a second noise mixed in (when ``other`` is given); unit RMS.

    The denoiser's held-out SI-SDR peaked early in training and fell while the training loss kept
    falling (11.7 dB at step 500, 10.9 dB at 4000): 40 minutes of training noise are learnt, not
    generalised from. Changing the noises' colour and steadiness makes more of them.
    """
    n = noise.size
    spectrum = np.fft.rfft(noise.astype(np.float64))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    points = np.log(np.geomspace(40.0, sr / 2, 7))
    gains_db = rng.uniform(-12.0, 12.0, points.size)
    curve_db = np.interp(np.log(np.maximum(freqs, 40.0)), points, gains_db)
    out = np.fft.irfft(spectrum * 10 ** (curve_db / 20), n)
    if rng.random() < 0.5:  # loudness that comes and goes (traffic passing, gusts, bubbling)
        rate = rng.uniform(0.3, 4.0)  # envelope changes per second
        knots = rng.uniform(0.0, 1.0, int(np.ceil(n / sr * rate)) + 2)
        envelope = np.interp(np.linspace(0, knots.size - 1, n), np.arange(knots.size), knots)
        depth = rng.uniform(0.3, 0.95)
        out = out * (1 - depth + depth * envelope)
    if other is not None:
        other = other.astype(np.float64)
        out = out / (out.std() + 1e-12) + rng.uniform(0.3, 1.0) * other / (other.std() + 1e-12)
    return (out / (out.std() + 1e-12)).astype(np.float32)


def resample_linear(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` stretched or squeezed to ``n`` samples by linear interpolation (speed and pitch change
    together; used on training noise, where the aliasing of a squeeze is only more noise)."""
    return np.interp(np.linspace(0, x.size - 1, n), np.arange(x.size), x).astype(np.float32)


@dataclass(frozen=True)
class Crackle:
    """``samples``: the input with clicks added (same shape and dtype); ``mask``: True on every
    sample a click touched."""

    samples: np.ndarray
    mask: np.ndarray


def add_crackle(samples: np.ndarray, sr: int, rng: np.random.Generator, *, crackle_per_s: float = 30.0,
                clicks_per_s: float = 1.0, level: float = 1.0) -> Crackle:
    """Vinyl surface crackle and clicks on ``samples: (L,)`` or ``(L, C)`` (the same on every channel,
    as a groove defect is). Crackle: many small impulses of 0.05-0.5 ms; clicks: rarer ones of
    0.3-3 ms; each a decaying, band-pass-ish noise burst of random sign. Peak amplitudes are
    log-uniform in [0.3, 3] x (crackle) and [1, 8] x (clicks) the RMS of ``samples``, times ``level``.
    """
    x = np.asarray(samples)
    n = x.shape[0]
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) or 0.01
    burst = np.zeros(n)
    mask = np.zeros(n, bool)
    kinds = ((crackle_per_s, (0.05e-3, 0.5e-3), (0.3, 3.0)), (clicks_per_s, (0.3e-3, 3e-3), (1.0, 8.0)))
    for rate, (d_lo, d_hi), (a_lo, a_hi) in kinds:
        for at in rng.integers(0, n, rng.poisson(rate * n / sr)):
            length = max(1, int(np.exp(rng.uniform(np.log(d_lo), np.log(d_hi))) * sr))
            stop = min(n, at + length)
            t = np.arange(stop - at)
            shape = rng.standard_normal(t.size) * np.exp(-3.0 * t / max(1, t.size))
            shape[0] = abs(shape[0]) + 1.0  # a sharp leading edge
            peak = level * rms * np.exp(rng.uniform(np.log(a_lo), np.log(a_hi)))
            burst[at:stop] += rng.choice([-1.0, 1.0]) * peak * shape / np.abs(shape).max()
            mask[at:stop] = True
    out = x + (burst[:, None] if x.ndim == 2 else burst)
    return Crackle(out.astype(x.dtype), mask)


def tape_hiss(n: int, sr: int, rng: np.random.Generator, *, drift_db: float = 3.0) -> np.ndarray:
    """Tape hiss: white noise shaped by a +6..+12 dB shelf above 2-5 kHz, its level drifting slowly
    (a random walk of about ``drift_db`` dB over the clip, knots every ~2 s); unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    corner, lift = rng.uniform(2000.0, 5000.0), 10 ** (rng.uniform(6.0, 12.0) / 20)
    shelf = 1 + (lift - 1) * (f / corner) ** 2 / (1 + (f / corner) ** 2)
    noise = np.fft.irfft(spectrum * shelf, n)
    knots = np.cumsum(rng.standard_normal(max(2, int(n / sr / 2) + 2)))
    knots = drift_db * (knots - knots.mean()) / (np.ptp(knots) + 1e-12)
    envelope = 10 ** (np.interp(np.linspace(0, knots.size - 1, n), np.arange(knots.size), knots) / 20)
    out = noise * envelope
    return (out / (out.std() + 1e-12)).astype(np.float32)
