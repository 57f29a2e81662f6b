"""Noise schedule of a variance-preserving diffusion, with no hidden state.

Notation used throughout ``restore``:

- ``x0``: clean data; ``x_t``: data at step ``t``; ``x0_hat``: a denoiser's estimate of ``x0``.
- ``eps``: unit Gaussian noise; ``y``: the observation; ``mask``: 1 where samples are known.
- ``t``: integer step in ``0..T``. Step 0 is clean data (``alpha_bar[0] == 1``), steps ``1..T``
  follow the DDPM betas (Ho et al. 2020), so ``alpha_bar`` has ``T + 1`` entries.
- ``x_t = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * eps``            (DDPM eq. 4)
- ``sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)``: the noise std of ``x_t / sqrt(alpha_bar_t)``
  relative to ``x0``, i.e. the Gaussian noise level an observation ``y = x0 + sigma * eps`` must
  have to sit at step ``t`` (the variance-exploding view, Karras et al. 2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

ScheduleKind = Literal["linear", "cosine"]


def expand_to(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-batch ``(B,)`` (or scalar) tensor to broadcast against ``x: (B, C, *spatial)``."""
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if v.ndim == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))


@dataclass(frozen=True)
class Schedule:
    """Immutable ``alpha_bar`` table of ``T + 1`` entries (index 0 is clean data)."""

    alpha_bar: torch.Tensor  # (T + 1,) float64, decreasing from 1

    def __post_init__(self) -> None:
        ab = self.alpha_bar
        if ab.ndim != 1 or ab.numel() < 2:
            raise ValueError(f"alpha_bar must be 1-D with at least 2 entries, got shape {tuple(ab.shape)}")
        if ab[0] != 1.0 or not bool(torch.all(ab[1:] < ab[:-1])) or ab[-1] <= 0:
            raise ValueError("alpha_bar must start at 1 and decrease strictly to a positive value")

    @classmethod
    def create(cls, kind: ScheduleKind = "linear", steps: int = 1000) -> Schedule:
        """Linear betas 1e-4..0.02 (Ho et al. 2020) or the cosine schedule (Nichol & Dhariwal 2021)."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if kind == "linear":
            betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
            ab = torch.cumprod(1.0 - betas, dim=0)
        elif kind == "cosine":
            s = 0.008
            f = lambda t: math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2
            f_t = torch.tensor([f(t) for t in range(steps + 1)], dtype=torch.float64)
            betas = (1 - f_t[1:] / f_t[:-1]).clamp(max=0.999)  # the paper's clipping keeps sigma_T finite
            ab = torch.cumprod(1.0 - betas, dim=0)
        else:
            raise ValueError(f"schedule kind must be 'linear' or 'cosine', got {kind!r}")
        return cls(torch.cat([torch.ones(1, dtype=torch.float64), ab]))

    @property
    def num_steps(self) -> int:
        """T, the largest step."""
        return self.alpha_bar.numel() - 1

    def _ab(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.alpha_bar.device).long()
        return expand_to(self.alpha_bar[t].to(like.device), like)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``x_t`` from ``x0: (B, C, *spatial)``, ``eps`` of the same shape, ``t``: int or ``(B,)``."""
        ab = self._ab(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def sigma_at(self, t: torch.Tensor | int) -> torch.Tensor:
        """``sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)`` (float64, shape of ``t``)."""
        ab = self.alpha_bar[torch.as_tensor(t).long()]
        return ((1 - ab) / ab).sqrt()

    def timestep_for_sigma(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """The step whose ``sigma_t`` is nearest to ``sigma`` in log scale (inverse of ``sigma_at``).

        ``sigma <= 0`` maps to step 0; ``sigma`` beyond ``sigma_T`` maps to ``T``.
        """
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        sig = self.sigma_at(torch.arange(self.num_steps + 1))  # increasing, sig[0] = 0
        hi = torch.searchsorted(sig, sigma.clamp(min=0)).clamp(1, self.num_steps)
        lo = hi - 1
        log = lambda s: torch.log(s.clamp(min=1e-300))
        pick_lo = (log(sigma) - log(sig[lo])).abs() <= (log(sig[hi]) - log(sigma)).abs()
        t = torch.where(pick_lo, lo, hi)
        return torch.where(sigma <= 0, torch.zeros_like(t), t)

    def inference_timesteps(self, n: int, start: int | None = None) -> torch.Tensor:
        """Descending steps ``[start, ..., 0]`` for ``n`` reverse steps (``n + 1`` entries at most).

        Partial reverse is just a smaller ``start``; full generation is ``start = T``. When
        ``start < n`` there are only ``start`` distinct steps; ``start = 0`` gives ``[0]`` (no step).
        """
        start = self.num_steps if start is None else int(start)
        if not 0 <= start <= self.num_steps:
            raise ValueError(f"start must be 0..{self.num_steps}, got {start}")
        if n < 1:
            raise ValueError(f"n (reverse steps) must be >= 1, got {n}")
        ts = torch.linspace(start, 0, n + 1, dtype=torch.float64).round().long()
        return torch.unique_consecutive(ts)
