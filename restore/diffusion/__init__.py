"""Diffusion core: schedule, samplers that start partway, consistency hooks."""

from restore.diffusion.sampling import (
    Denoiser,
    known_region_consistency,
    sample_ancestral,
    sample_ddim,
    start_from_observation,
)
from restore.diffusion.schedule import Schedule, expand_to

__all__ = [
    "Denoiser",
    "Schedule",
    "expand_to",
    "known_region_consistency",
    "sample_ancestral",
    "sample_ddim",
    "start_from_observation",
]
