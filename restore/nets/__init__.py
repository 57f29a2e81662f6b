"""Denoiser networks wrapped to the ``(x_t, t, cond) -> x0_hat`` contract."""

from restore.nets.unet import UNetConfig, UNetDenoiser

__all__ = ["UNetConfig", "UNetDenoiser"]
