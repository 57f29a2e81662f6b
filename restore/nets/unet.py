"""The diffusion U-Net (MONAI's ``DiffusionModelUNet``, re-stated in :mod:`restore.nets.diffusion_unet`
so inference does not import MONAI) wrapped into a conditional denoiser ``(x_t, t, cond) -> x0_hat``.

Conditioning is by channel concatenation: ``[x_t, cond]`` where ``cond`` holds the observation,
masks and extra context (e.g. neighbouring MRI slices). Inputs are padded to sizes the U-Net
accepts (each spatial size a multiple of ``2 ** (levels - 1)``) and the output cropped back, so
callers never see it.

The network output is turned into ``x0_hat`` by ``prediction``:

- ``"edm"``: preconditioning of Karras et al. 2022 (eq. 7) on ``x_ve = x_t / sqrt(alpha_bar_t)``:
  ``x0_hat = c_skip * x_ve + c_out * F(c_in * x_ve)``; keeps the identity at small noise cheap.
- ``"x0"``: the network predicts ``x0`` directly.
- ``"eps"``: the network predicts ``eps`` (DDPM); ``x0_hat = (x_t - sqrt(1 - ab) eps) / sqrt(ab)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from restore.diffusion.schedule import Schedule, ScheduleKind, expand_to
from restore.nets.diffusion_unet import DiffusionUNet

Prediction = Literal["edm", "x0", "eps"]


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a denoiser; stored in the model card."""

    spatial_dims: Literal[1, 2, 3] = 2
    data_channels: int = 1
    cond_channels: int = 1
    channels: tuple[int, ...] = (32, 64, 64)
    attention_levels: tuple[bool, ...] = (False, False, False)
    num_res_blocks: int = 1
    norm_num_groups: int = 16
    num_head_channels: int = 32
    prediction: Prediction = "edm"
    sigma_data: float = 0.5
    schedule: ScheduleKind = "linear"
    schedule_steps: int = 1000
    extra: dict = field(default_factory=dict)  # free-form, e.g. how cond channels are built

    def __post_init__(self) -> None:
        if self.spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {self.spatial_dims}")
        if len(self.attention_levels) != len(self.channels):
            raise ValueError("attention_levels needs one entry per level in channels")
        if self.prediction not in ("edm", "x0", "eps"):
            raise ValueError(f"prediction must be 'edm', 'x0' or 'eps', got {self.prediction!r}")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError(f"every channel count must divide by norm_num_groups={self.norm_num_groups}")
        if self.channels[-1] % self.num_head_channels:  # the middle block always has attention
            raise ValueError(f"the last channel count must divide by num_head_channels={self.num_head_channels}")

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        d = dict(d)
        for k in ("channels", "attention_levels"):
            if k in d:
                d[k] = tuple(d[k])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown UNetConfig fields: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class UNetDenoiser(nn.Module):
    """Conditional denoiser on ``(B, C, *spatial)`` tensors, 2D or 3D."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.schedule = Schedule.create(config.schedule, config.schedule_steps)
        self.net = DiffusionUNet(
            config.spatial_dims,
            config.data_channels + config.cond_channels,
            config.data_channels,
            num_res_blocks=config.num_res_blocks,
            channels=config.channels,
            attention_levels=config.attention_levels,
            norm_num_groups=config.norm_num_groups,
            num_head_channels=config.num_head_channels,
        )
        self.register_buffer("alpha_bar", self.schedule.alpha_bar.float(), persistent=False)

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.config.channels) - 1)

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        sizes = list(x.shape[2:])
        pad: list[int] = []
        for n in reversed(sizes):  # F.pad wants the last dimension first
            extra = -n % self.multiple
            pad += [extra // 2, extra - extra // 2]
        if any(pad):
            x = F.pad(x, pad, mode="replicate")
        return x, pad

    @staticmethod
    def _crop(x: torch.Tensor, pad: list[int]) -> torch.Tensor:
        if not any(pad):
            return x
        index = [slice(None), slice(None)]
        dims = x.ndim - 2
        for d in range(dims):
            lo, hi = pad[2 * (dims - 1 - d)], pad[2 * (dims - 1 - d) + 1]
            index.append(slice(lo, x.shape[2 + d] - hi))
        return x[tuple(index)]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``x_t: (B, C, *spatial)``, ``t: (B,)`` steps, ``cond: (B, C_cond, *spatial)`` -> ``x0_hat``."""
        cfg = self.config
        if x_t.ndim != cfg.spatial_dims + 2 or x_t.shape[1] != cfg.data_channels:
            raise ValueError(
                f"x_t must be (B, {cfg.data_channels}, {cfg.spatial_dims} spatial dims), got {tuple(x_t.shape)}"
            )
        c = 0 if cond is None else cond.shape[1]
        if c != cfg.cond_channels:
            raise ValueError(f"model expects {cfg.cond_channels} condition channels, got {c}")
        t = t.to(device=x_t.device).long().expand(x_t.shape[0])
        ab = expand_to(self.alpha_bar[t], x_t)
        sigma = ((1 - ab) / ab).sqrt()
        x_ve = x_t / ab.sqrt()
        if cfg.prediction == "edm":
            sd = cfg.sigma_data
            net_in = x_ve / (sigma**2 + sd**2).sqrt()
        else:
            net_in = x_t
        inputs = net_in if cond is None else torch.cat([net_in, cond.to(net_in.dtype)], dim=1)
        padded, pad = self._pad(inputs)
        # EDM conditions on log-sigma; we keep MONAI's integer-step embedding (same information).
        out = self._crop(self.net(padded, t.float()), pad).to(x_t.dtype)
        if cfg.prediction == "edm":
            c_skip = sd**2 / (sigma**2 + sd**2)
            c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
            return c_skip * x_ve + c_out * out
        if cfg.prediction == "x0":
            return out
        return (x_t - (1 - ab).sqrt() * out) / ab.sqrt()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

