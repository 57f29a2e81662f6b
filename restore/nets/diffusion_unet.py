"""The diffusion U-Net of MONAI's ``DiffusionModelUNet`` (Pinaya et al. 2023), re-stated in plain torch.

Importing MONAI costs ~3 s per process (its package ``__init__`` loads every submodule), which
doubled the time of a one-file ``restore audio`` run. This module builds the same network with
the same parameter names, so weights trained with MONAI's class load as they are and give the
same outputs (``tests/test_nets.py`` checks both against MONAI). It covers what ``restore`` uses:
no cross-attention or class conditioning, strided-conv downsampling and nearest-neighbour
upsampling with a conv (``resblock_updown=False``), self-attention (SDPA) at the chosen levels
and always in the middle block; ``spatial_dims`` 1, 2 or 3.

    x -> conv_in -> [down: res blocks (+ attention), strided conv] -> middle: res, attention, res
      -> [up: res blocks on the skip concatenation (+ attention), nearest x2 + conv] -> norm, SiLU, conv
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

NORM_EPS = 1e-6


class _Conv(nn.Module):
    """A conv under the attribute name ``conv`` (MONAI's ``Convolution(conv_only=True)`` layout)."""

    def __init__(self, dims: int, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1](c_in, c_out, kernel, stride, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B,) -> (B, dim)``: cosines then sines (Ho et al. 2020)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv, + time embedding, GroupNorm, SiLU, conv; 1x1 conv skip when channels change."""

    def __init__(self, dims: int, c_in: int, c_out: int, temb: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in, eps=NORM_EPS)
        self.conv1 = _Conv(dims, c_in, c_out)
        self.time_emb_proj = nn.Linear(temb, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out, eps=NORM_EPS)
        self.conv2 = _Conv(dims, c_out, c_out)
        self.skip_connection = nn.Identity() if c_in == c_out else _Conv(dims, c_in, c_out, kernel=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        temb = self.time_emb_proj(F.silu(emb))
        h = h + temb.reshape(*temb.shape, *([1] * (h.ndim - 2)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip_connection(x) + h


class _SelfAttention(nn.Module):
    """Multi-head self-attention over tokens ``(B, N, C)`` (MONAI's ``SABlock`` names)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.out_proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, heads, N, C / heads)
            return y.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class SpatialAttention(nn.Module):
    """GroupNorm, self-attention over every position, residual."""

    def __init__(self, channels: int, head_channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=NORM_EPS)
        self.attn = _SelfAttention(channels, channels // head_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        tokens = self.norm(x).reshape(b, c, -1).transpose(1, 2)
        return x + self.attn(tokens).transpose(1, 2).reshape(x.shape)


class _Upsample(nn.Module):
    """Nearest-neighbour x2, then a conv (``postconv``)."""

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        self.postconv = _Conv(dims, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.postconv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Downsample(nn.Module):
    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        self.op = _Conv(dims, channels, channels, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DownBlock(nn.Module):
    def __init__(self, dims: int, c_in: int, c_out: int, temb: int, n_res: int, groups: int,
                 head_channels: int | None, downsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(ResBlock(dims, c_in if i == 0 else c_out, c_out, temb, groups) for i in range(n_res))
        self.attentions = None if head_channels is None else nn.ModuleList(
            SpatialAttention(c_out, head_channels, groups) for _ in range(n_res))
        self.downsampler = _Downsample(dims, c_out) if downsample else None

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            h = resnet(h, emb)
            if self.attentions is not None:
                h = self.attentions[i](h)
            skips.append(h)
        if self.downsampler is not None:
            h = self.downsampler(h)
            skips.append(h)
        return h, skips


class MidBlock(nn.Module):
    def __init__(self, dims: int, channels: int, temb: int, groups: int, head_channels: int) -> None:
        super().__init__()
        self.resnet_1 = ResBlock(dims, channels, channels, temb, groups)
        self.attention = SpatialAttention(channels, head_channels, groups)
        self.resnet_2 = ResBlock(dims, channels, channels, temb, groups)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.resnet_2(self.attention(self.resnet_1(h, emb)), emb)


class UpBlock(nn.Module):
    def __init__(self, dims: int, c_skip_last: int, c_prev: int, c_out: int, temb: int, n_res: int, groups: int,
                 head_channels: int | None, upsample: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResBlock(dims, (c_prev if i == 0 else c_out) + (c_skip_last if i == n_res - 1 else c_out), c_out, temb, groups)
            for i in range(n_res)
        )
        self.attentions = None if head_channels is None else nn.ModuleList(
            SpatialAttention(c_out, head_channels, groups) for _ in range(n_res))
        self.upsampler = _Upsample(dims, c_out) if upsample else None

    def forward(self, h: torch.Tensor, skips: list[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            h = resnet(torch.cat([h, skips.pop()], dim=1), emb)
            if self.attentions is not None:
                h = self.attentions[i](h)
        return h if self.upsampler is None else self.upsampler(h)


class DiffusionUNet(nn.Module):
    """``(x: (B, in_channels, *spatial), timesteps: (B,)) -> (B, out_channels, *spatial)``; every
    spatial size must divide by ``2 ** (len(channels) - 1)``. Arguments as MONAI's ``DiffusionModelUNet``."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *, channels: Sequence[int],
                 attention_levels: Sequence[bool], num_res_blocks: int = 1, norm_num_groups: int = 32,
                 num_head_channels: int = 8) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        if len(attention_levels) != len(channels):
            raise ValueError("attention_levels needs one entry per level in channels")
        dims, groups, n = spatial_dims, norm_num_groups, num_res_blocks
        temb = channels[0] * 4
        self.embedding_channels = channels[0]
        self.conv_in = _Conv(dims, in_channels, channels[0])
        self.time_embed = nn.Sequential(nn.Linear(channels[0], temb), nn.SiLU(), nn.Linear(temb, temb))
        levels = len(channels)
        heads = [num_head_channels if attention else None for attention in attention_levels]
        self.down_blocks = nn.ModuleList(
            DownBlock(dims, channels[max(i - 1, 0)], channels[i], temb, n, groups, heads[i], i < levels - 1)
            for i in range(levels)
        )
        self.middle_block = MidBlock(dims, channels[-1], temb, groups, num_head_channels)
        rev = list(reversed(channels))
        self.up_blocks = nn.ModuleList(
            UpBlock(dims, rev[min(i + 1, levels - 1)], rev[max(i - 1, 0)], rev[i], temb, n + 1, groups,
                    heads[levels - 1 - i], i < levels - 1)
            for i in range(levels)
        )
        self.out = nn.Sequential(nn.GroupNorm(groups, channels[0], eps=NORM_EPS), nn.SiLU(),
                                 _Conv(dims, channels[0], out_channels))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.embedding_channels).to(x.dtype))
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            h, more = block(h, emb)
            skips += more
        h = self.middle_block(h, emb)
        for block in self.up_blocks:
            h = block(h, skips, emb)
        return self.out(h)
