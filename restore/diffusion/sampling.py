"""Stateless reverse-process samplers that start from an observation partway through.

A sampler takes a denoiser ``(x_t, t, cond) -> x0_hat`` and a descending list of steps
``[t*, ..., 0]`` from :meth:`Schedule.inference_timesteps`. Each step optionally calls a
consistency hook ``(x_s, s) -> x_s`` (e.g. :func:`known_region_consistency`) and a progress
callback ``(i, n, t, x0_hat)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Protocol

import torch

from restore.diffusion.schedule import Schedule, expand_to


class Denoiser(Protocol):
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """``x_t: (B, C, *spatial)``, ``t: (B,)`` long, ``cond: (B, C', *spatial)`` -> ``x0_hat``."""
        ...


Consistency = Callable[[torch.Tensor, int], torch.Tensor]
Callback = Callable[[int, int, int, torch.Tensor], None]


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def start_from_observation(
    y: torch.Tensor,
    sigma_y: torch.Tensor | float,
    t_star: int,
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``x_t*`` from an observation ``y = x0 + sigma_y * n`` by topping up its noise.

    ``x_t* = sqrt(alpha_bar) * (y + sqrt(sigma_t*^2 - sigma_y^2) * eps)`` so that ``x_t*`` has the
    marginal the network was trained on; ``y`` keeps its own noise (no re-noising from scratch).
    If ``sigma_y > sigma_t*`` (a weaker start than the noise calls for) nothing is added.
    ``y: (B, C, *spatial)``; ``sigma_y``: float or ``(B,)`` in the units of ``y``.
    """
    if t_star == 0:
        return y.clone()
    sigma_t = float(schedule.sigma_at(t_star))
    sigma_y = expand_to(torch.as_tensor(sigma_y, dtype=y.dtype, device=y.device), y)
    top_up = (sigma_t**2 - sigma_y**2).clamp(min=0).sqrt()
    ab = float(schedule.alpha_bar[t_star])
    return ab**0.5 * (y + top_up * _randn_like(y, generator))


def _eps_from_x0(x_t: torch.Tensor, x0_hat: torch.Tensor, ab: float) -> torch.Tensor:
    return (x_t - ab**0.5 * x0_hat) / (1 - ab) ** 0.5


def _predict(denoiser: Denoiser, x: torch.Tensor, t: int, cond: torch.Tensor | None) -> torch.Tensor:
    t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    return denoiser(x, t_batch, cond).to(x.dtype)


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    timesteps: torch.Tensor,
    schedule: Schedule,
    *,
    cond: torch.Tensor | None = None,
    eta: float = 0.0,
    consistency: Consistency | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021) from ``x = x_{timesteps[0]}`` down to ``timesteps[-1]``.

    ``eta = 0`` is deterministic; ``eta = 1`` matches the ancestral posterior variance.
    """
    ts = [int(t) for t in timesteps]
    n = len(ts) - 1
    for i, (t, s) in enumerate(itertools.pairwise(ts)):
        ab_t, ab_s = float(schedule.alpha_bar[t]), float(schedule.alpha_bar[s])
        x0_hat = _predict(denoiser, x, t, cond)
        eps_hat = _eps_from_x0(x, x0_hat, ab_t)
        # eq. 16: sigma_eta = eta * sqrt((1 - ab_s) / (1 - ab_t)) * sqrt(1 - ab_t / ab_s)
        sigma_eta = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)) ** 0.5
        # eq. 12: x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma_eta^2) eps_hat + sigma_eta z
        x = ab_s**0.5 * x0_hat + max(1 - ab_s - sigma_eta**2, 0.0) ** 0.5 * eps_hat
        if sigma_eta > 0:
            x = x + sigma_eta * _randn_like(x, generator)
        if consistency is not None:
            x = consistency(x, s)
        if callback is not None:
            callback(i, n, t, x0_hat)
    return x


@torch.no_grad()
def sample_ancestral(
    denoiser: Denoiser,
    x: torch.Tensor,
    timesteps: torch.Tensor,
    schedule: Schedule,
    *,
    cond: torch.Tensor | None = None,
    consistency: Consistency | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Ancestral sampling with the exact posterior ``q(x_s | x_t, x0_hat)`` for any ``s < t``.

    Correct for any step count (unlike a DDPM step that always moves ``t -> t-1``).
    """
    ts = [int(t) for t in timesteps]
    n = len(ts) - 1
    for i, (t, s) in enumerate(itertools.pairwise(ts)):
        ab_t, ab_s = float(schedule.alpha_bar[t]), float(schedule.alpha_bar[s])
        x0_hat = _predict(denoiser, x, t, cond)
        alpha_ts = ab_t / ab_s
        # DDPM eq. 7 generalised to a jump t -> s: posterior mean and variance
        c_x0 = ab_s**0.5 * (1 - alpha_ts) / (1 - ab_t)
        c_xt = alpha_ts**0.5 * (1 - ab_s) / (1 - ab_t)
        var = (1 - alpha_ts) * (1 - ab_s) / (1 - ab_t)
        x = c_x0 * x0_hat + c_xt * x
        if var > 0:
            x = x + var**0.5 * _randn_like(x, generator)
        if consistency is not None:
            x = consistency(x, s)
        if callback is not None:
            callback(i, n, t, x0_hat)
    return x


def known_region_consistency(
    y: torch.Tensor,
    mask: torch.Tensor,
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
) -> Consistency:
    """RePaint-style hook (Lugmayr et al. 2022): known samples become ``y`` re-noised to step ``s``.

    ``mask``: bool, broadcastable to ``y``, True where ``y`` is known. At ``s = 0`` the known
    samples equal ``y`` exactly.
    """
    mask = mask.to(device=y.device, dtype=torch.bool)

    def hook(x: torch.Tensor, s: int) -> torch.Tensor:
        if s == 0:
            return torch.where(mask, y, x)
        known = schedule.add_noise(y, _randn_like(y, generator), s)
        return torch.where(mask, known, x)

    return hook
