"""Training targets on the path the sampler takes at inference, and the EDM loss weight.

At inference the reverse process starts at ``t*`` from the observation ``y`` (topped up with noise to
``sigma_t*``) and deterministic DDIM then visits, with a perfect denoiser,
``x_t = sqrt(alpha_bar_t) (x0 + sigma_t / sigma_t* (x_t* / sqrt(alpha_bar_t*) - x0))`` for ``t <= t*``.
Training examples drawn on that path teach the network exactly the inputs it will see.
"""

from __future__ import annotations

import numpy as np
import torch

from restore.diffusion import Schedule, expand_to
from restore.nets.unet import UNetDenoiser


def on_ddim_path(x0: torch.Tensor, x_star: torch.Tensor, t_star: int, t: int, schedule: Schedule) -> torch.Tensor:
    """The point at step ``t <= t*`` of the ideal DDIM path from ``x_star`` (at ``t*``) to ``x0`` (module docstring)."""
    ab_star, ab_t = float(schedule.alpha_bar[t_star]), float(schedule.alpha_bar[t])
    ratio = float(schedule.sigma_at(t) / schedule.sigma_at(t_star))
    return ab_t**0.5 * (x0 + ratio * (x_star / ab_star**0.5 - x0))


def along_sampler_path(x0: torch.Tensor, y: torch.Tensor, s_y: torch.Tensor, t_star: torch.Tensor,
                       schedule: Schedule, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_t, t)`` on the path the sampler takes from ``y`` (noise ``s_y``) started at ``t*``, batched.

    ``x0``, ``y``: ``(B, 1, H, W)``; ``s_y``, ``t_star``: ``(B,)``. The noise direction is the
    observation's own noise topped up to ``sigma_t*``, ``e = (y - x0 + sqrt(sigma_t*^2 - s_y^2) eps) / sigma_t*``,
    and ``x_t = sqrt(alpha_bar_t) (x0 + sigma_t e)``, the DDIM path of the module docstring. ``t*`` is
    jittered for 30% of examples (misestimated noise, ``--strength``); half the examples sit at the
    start step, the rest uniformly below it; a quarter use fresh noise instead (ancestral sampling).
    """
    b = len(s_y)
    jitter = torch.from_numpy(np.where(rng.random(b) < 0.3, rng.uniform(0.7, 1.4, b), 1.0))
    t_start = (t_star * jitter).round().long().clamp(1, schedule.num_steps)
    pick_start = torch.from_numpy(rng.random(b) < 0.5)
    t = torch.where(pick_start, t_start, (torch.from_numpy(rng.random(b)) * t_start).long() + 1)
    s_start, s_t = schedule.sigma_at(t_start).view(-1, 1, 1, 1), schedule.sigma_at(t).view(-1, 1, 1, 1)
    eps = torch.from_numpy(rng.standard_normal(x0.shape, dtype=np.float32)).double()
    top_up = (s_start**2 - s_y.view(-1, 1, 1, 1) ** 2).clamp(min=0).sqrt()
    e = (y.double() - x0 + top_up * eps) / s_start
    fresh = torch.from_numpy(rng.random(b) < 0.25).view(-1, 1, 1, 1)
    e = torch.where(fresh, torch.from_numpy(rng.standard_normal(x0.shape)), e)
    ab = schedule.alpha_bar[t].view(-1, 1, 1, 1)
    return (ab.sqrt() * (x0 + s_t * e)).float(), t


def edm_weight(net: UNetDenoiser, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2`` (Karras et al. 2022, eq. 8 / Table 1)."""
    sigma = expand_to(net.schedule.sigma_at(t).float(), like)
    sd = net.config.sigma_data
    return (sigma**2 + sd**2) / (sigma * sd) ** 2
