"""The model's view of audio: a level-normalised, magnitude-compressed complex STFT.

``spec = beta * |X|^alpha * exp(i angle X)`` with ``X = STFT(samples / scale)`` (Welker et al. 2022,
as in sgmse), stored as real/imag channels ``(B, 2, F, N)``: ``F = n_fft // 2 + 1`` bins, ``N``
frames. ``scale`` is the RMS of the noisy input, returned so :func:`from_spec` can undo it.
Everything here is torch (no librosa): one STFT costs well under a millisecond per second of audio.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

MODEL_SR = 16_000
N_FFT = 512
HOP = 256
ALPHA = 0.5  # magnitude compression exponent
BETA = 0.40  # brings clean speech at unit input RMS to a spectrogram std near sigma_data = 0.5 (measured 0.5)
SCALE_FLOOR = 1e-5  # RMS floor for (nearly) silent chunks


@dataclass(frozen=True, kw_only=True)
class FrontEnd:
    """The STFT front end a model was trained on, recorded in its card and checked on load."""

    sr: int = MODEL_SR
    n_fft: int = N_FFT
    hop: int = HOP
    alpha: float = ALPHA
    beta: float = BETA

    def check(self, where: str) -> None:
        """Refuse a model trained on another front end than this module's (its spectra would not match)."""
        theirs, ours = FrontEnd(**{f.name: getattr(self, f.name) for f in fields(FrontEnd)}), FrontEnd()
        if theirs != ours:
            raise ValueError(f"{where}: the model's STFT front end {theirs} differs from restore's {ours}")


@dataclass(frozen=True)
class Spec:
    """``values: (B, 2, F, N)`` float32 real/imag; ``scale: (B,)`` input RMS; ``length``: samples."""

    values: torch.Tensor
    scale: torch.Tensor
    length: int


def _window(device: torch.device) -> torch.Tensor:
    return torch.hann_window(N_FFT, device=device)


def level_of(samples: torch.Tensor) -> torch.Tensor:
    """RMS per row of ``samples: (B, L)``, floored so silence does not divide by zero."""
    return samples.pow(2).mean(dim=-1).sqrt().clamp(min=SCALE_FLOOR)


def stft(samples: torch.Tensor) -> torch.Tensor:
    """Complex STFT ``(B, F, N)`` of ``samples: (B, L)`` (Hann window, centred frames)."""
    return torch.stft(samples, N_FFT, HOP, window=_window(samples.device), center=True, return_complex=True)


def istft(X: torch.Tensor, length: int) -> torch.Tensor:
    return torch.istft(X, N_FFT, HOP, window=_window(X.device), center=True, length=length)


def compress(X: torch.Tensor) -> torch.Tensor:
    """Complex ``(B, F, N)`` -> real/imag ``(B, 2, F, N)`` of ``beta * |X|^alpha * e^{i angle X}``."""
    mag = X.abs()
    Z = BETA * mag.pow(ALPHA) * torch.exp(1j * torch.angle(X))
    return torch.stack([Z.real, Z.imag], dim=1).float()


def decompress(values: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`compress`."""
    Z = torch.complex(values[:, 0].float(), values[:, 1].float())
    mag = (Z.abs() / BETA).pow(1 / ALPHA)
    return mag * torch.exp(1j * torch.angle(Z))


def to_spec(samples: torch.Tensor, *, scale: torch.Tensor | None = None) -> Spec:
    """``samples: (B, L)`` float32 at :data:`MODEL_SR` -> :class:`Spec` (scale defaults to their RMS)."""
    scale = level_of(samples) if scale is None else scale
    X = stft(samples / scale[:, None])
    return Spec(compress(X), scale, samples.shape[-1])


def from_spec(values: torch.Tensor, scale: torch.Tensor, length: int) -> torch.Tensor:
    """Model-domain ``values: (B, 2, F, N)`` -> samples ``(B, length)`` at the input's level."""
    return istft(decompress(values), length) * scale[:, None]
