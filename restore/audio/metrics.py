"""Audio quality metrics as plain floats (JSON-safe): SI-SDR, PESQ-WB, ESTOI, LSD, estimated SNR.

All take 1-D float arrays ``(L,)`` at rate ``sr`` (a reference and an estimate of the same length).
"""

from __future__ import annotations

import numpy as np
import soxr
import torch

PESQ_SR = 16_000


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), after removing the means. ``inf`` if exact."""
    ref = np.asarray(reference, np.float64) - np.mean(reference)
    est = np.asarray(estimate, np.float64) - np.mean(estimate)
    alpha = np.dot(est, ref) / max(np.dot(ref, ref), 1e-30)
    target = alpha * ref
    residual = est - target
    p_res = float(np.dot(residual, residual))
    p_target = float(np.dot(target, target))
    if p_res <= 1e-20 * max(p_target, 1e-30):
        return float("inf")
    return float(10 * np.log10(max(p_target, 1e-30) / p_res))


def pesq_wb(reference: np.ndarray, estimate: np.ndarray, sr: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2) at 16 kHz (resampled with soxr when ``sr`` differs); NaN on failure."""
    from pesq import PesqError, pesq

    ref, est = (np.asarray(a, np.float32) for a in (reference, estimate))
    if sr != PESQ_SR:
        ref, est = (soxr.resample(a, sr, PESQ_SR) for a in (ref, est))
    value = pesq(PESQ_SR, ref, est, "wb", on_error=PesqError.RETURN_VALUES)
    return float(value) if value >= 0 else float("nan")


def estoi(reference: np.ndarray, estimate: np.ndarray, sr: int) -> float:
    """Extended STOI (Jensen & Taal 2016) via pystoi, as a Python float."""
    from pystoi import stoi

    return float(stoi(np.asarray(reference, np.float64), np.asarray(estimate, np.float64), sr, extended=True))


def lsd(reference: np.ndarray, estimate: np.ndarray, sr: int) -> float:
    """Log-spectral distance in dB: RMS over bins of the log-power difference, averaged over frames."""
    n_fft = 2 ** int(np.ceil(np.log2(0.032 * sr)))
    window = torch.hann_window(n_fft, dtype=torch.float64)

    def log_power(a: np.ndarray) -> torch.Tensor:
        X = torch.stft(torch.as_tensor(np.asarray(a, np.float64)), n_fft, n_fft // 4, window=window,
                       return_complex=True)
        return torch.log10(X.abs().pow(2) + 1e-10)

    diff = log_power(reference) - log_power(estimate)
    return float((10 * diff).pow(2).mean(dim=0).sqrt().mean())


def estimated_snr(samples: np.ndarray, sr: int) -> float:
    """Reference-free SNR estimate in dB (quiet-frame noise PSD, :mod:`restore.audio.estimate`).

    ``samples`` at any rate are resampled to the model rate first, as the model sees them.
    """
    from restore.audio.estimate import estimate_degradation
    from restore.audio.spectral import MODEL_SR

    x = np.asarray(samples, np.float32)
    if sr != MODEL_SR:
        x = soxr.resample(x, sr, MODEL_SR)
    return float(estimate_degradation(torch.from_numpy(np.ascontiguousarray(x))[None]).snr_db[0])


def reference_metrics(reference: np.ndarray, estimate: np.ndarray, sr: int) -> dict[str, float]:
    """SI-SDR, PESQ-WB, ESTOI and LSD of ``estimate`` against ``reference`` (both ``(L,)``)."""
    return {
        "si_sdr_db": si_sdr(reference, estimate),
        "pesq_wb": pesq_wb(reference, estimate, sr),
        "estoi": estoi(reference, estimate, sr),
        "lsd_db": lsd(reference, estimate, sr),
    }


def gap_snr(reference: np.ndarray, estimate: np.ndarray, start: int, stop: int) -> float:
    """SNR in dB of ``estimate`` over the samples ``[start, stop)`` (a filled gap)."""
    ref = np.asarray(reference[start:stop], np.float64)
    err = ref - np.asarray(estimate[start:stop], np.float64)
    return float(10 * np.log10(max(np.dot(ref, ref), 1e-20) / max(np.dot(err, err), 1e-20)))


def gap_lsd(reference: np.ndarray, estimate: np.ndarray, start: int, stop: int, sr: int) -> float:
    """LSD in dB over the STFT frames whose window overlaps ``[start, stop)`` (32 ms Hann, hop 1/4)."""
    n_fft = 2 ** int(np.ceil(np.log2(0.032 * sr)))
    hop = n_fft // 4
    window = torch.hann_window(n_fft, dtype=torch.float64)

    def log_power(a: np.ndarray) -> torch.Tensor:
        X = torch.stft(torch.as_tensor(np.asarray(a, np.float64)), n_fft, hop, window=window, return_complex=True)
        return torch.log10(X.abs().pow(2) + 1e-10)

    ref, est = log_power(reference), log_power(estimate)
    centres = np.arange(ref.shape[1]) * hop  # centred frames
    frames = np.flatnonzero((centres + n_fft // 2 > start) & (centres - n_fft // 2 < stop))
    diff = (ref - est)[:, frames]
    return float((10 * diff).pow(2).mean(dim=0).sqrt().mean())
