"""restore: conditional diffusion restoration of noisy MRI volumes and damaged audio."""

__version__ = "0.1.0"
