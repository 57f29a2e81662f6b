"""Training configurations of the audio models: ``configs/audio_denoise.yaml`` and ``configs/audio_inpaint.yaml``
loaded into frozen, validated dataclasses that extend :class:`restore.training.TrainingConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from restore.audio import spectral
from restore.audio.denoise import SHIFTS
from restore.nets.unet import UNetConfig
from restore.training import TrainingConfig
from restore.training import load_config as load_training_config


def at_step(schedule: tuple[tuple[int, float], ...], step: int):
    """The value of a ``((step, value), ...)`` schedule at ``step``: that of the last entry started."""
    return [value for start, value in schedule if start <= step][-1]


def is_schedule(schedule: tuple[tuple[int, float], ...], valid) -> bool:
    """A schedule starts at step 0, its steps increase, and ``valid(value)`` holds for every value."""
    return (bool(schedule) and schedule[0][0] == 0 and all(a[0] < b[0] for a, b in pairwise(schedule))
            and all(valid(value) for _, value in schedule))


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainingConfig):
    """``configs/audio_denoise.yaml``: the denoiser (:mod:`restore.audio.train`); the loop's fields are
    :class:`TrainingConfig`'s (the learning rate decays over the wall-clock budget)."""

    data_dir: str = "data/audio"
    run_dir: str = "runs/audio_denoise"
    weights: str = "restore/models/audio_denoise.safetensors"
    version: str = "0.1.0"
    crop_frames: int = 64  # STFT frames per training crop (hop 256 at 16 kHz: 64 frames ~ 1 s)
    wall_clock_minutes: float = 75.0  # total training time over all resumes; stops cleanly after it
    snr_db_min: float = -5.0
    snr_db_max: float = 20.0
    synthetic_noise_prob: float = 0.25  # coloured noise, hum, hiss instead of (or on top of) real noise
    observation_prob: float = 0.7  # share of crops whose x_t lies on the path from the observation
    sigma_jitter: tuple[float, float] = (0.7, 1.4)  # random factor on the estimated sigma (strength, error)
    # share of real-noise crops that are augmented (speed, EQ, envelope, a second noise), from each step on:
    # ((step, share), ...) by step
    noise_augment: tuple[tuple[int, float], ...] = ((0, 0.0),)
    val_clips: int = 16
    val_seconds: float = 3.0
    inference_steps: int = 4  # default reverse steps, stored in the model card
    sigma_scale: float = 1.0  # t* = timestep_for_sigma(strength * sigma_scale * sigma_est), in the card
    clean_snr_db: float = 30.0  # estimated SNR above which a chunk is left unchanged (t* = 0), in the card
    shifts: int = SHIFTS  # STFT frame-grid offsets averaged at inference (cycle spinning), in the card
    model: UNetConfig = field(default_factory=lambda: UNetConfig(data_channels=2, cond_channels=2))

    def noise_augment_share(self, step: int) -> float:
        """The share of augmented real-noise crops at ``step`` (:attr:`noise_augment`)."""
        return at_step(self.noise_augment, step)

    def problems(self) -> list[str]:
        checks = [
            (self.crop_frames >= 8, f"crop_frames must be >= 8, got {self.crop_frames}"),
            (self.snr_db_min < self.snr_db_max, "snr_db_min must be below snr_db_max"),
            (0 <= self.synthetic_noise_prob <= 1, "synthetic_noise_prob must be in [0, 1]"),
            (0 <= self.observation_prob <= 1, "observation_prob must be in [0, 1]"),
            (is_schedule(self.noise_augment, lambda share: 0 <= share <= 1),
             "noise_augment must be [[0, share], [step, share], ...] with increasing steps and shares in [0, 1]"),
            (1 <= self.inference_steps <= 1000, f"inference_steps must be 1..1000, got {self.inference_steps}"),
            (0 < self.sigma_scale <= 4, f"sigma_scale must be in (0, 4], got {self.sigma_scale}"),
            (1 <= self.shifts <= spectral.HOP, f"shifts must be 1..{spectral.HOP}, got {self.shifts}"),
            (self.model.data_channels == 2 and self.model.cond_channels == 2,
             "model needs data_channels = cond_channels = 2 (real/imag STFT)"),
            (self.model.spatial_dims == 2, "model.spatial_dims must be 2 (frequency x time)"),
        ]
        return super().problems() + [message for ok, message in checks if not ok]


@dataclass(frozen=True, kw_only=True)
class InpaintConfig(TrainingConfig):
    """``configs/audio_inpaint.yaml``: the gap-filling / declipping model (:mod:`restore.audio.train_inpaint`)."""

    data_dir: str = "data/audio"
    run_dir: str = "runs/audio_inpaint"
    weights: str = "restore/models/audio_inpaint.safetensors"
    version: str = "0.1.0"
    threads: int = 2
    crop_frames: int = 64
    ema_decay: float = 0.995
    wall_clock_minutes: float = 60.0
    music_prob: float = 0.5  # share of crops from music (the rest speech)
    clip_prob: float = 0.25  # share of crops that are clipped instead of gapped
    noise_prob: float = 0.3  # share of crops with background noise under the signal (filled as it is)
    gap_ms: tuple[float, float] = (5.0, 400.0)  # gap lengths, log-uniform
    max_gaps: int = 2
    clip_fraction: tuple[float, float] = (0.15, 0.8)  # clip level as a share of the crop's peak
    fill_sigma_range: tuple[float, float] = (0.05, 1.0)  # start noise levels seen in training, log-uniform
    observation_prob: float = 0.7
    gap_loss_weight: float = 9.0  # extra loss weight on frames with missing samples
    # AR order of the gap first guess in training, from each step on: ((step, order), ...) by step
    gap_ar_orders: tuple[tuple[int, int], ...] = ((0, 128),)
    val_clips: int = 16
    inference_steps: int = 1  # card defaults, chosen on the validation split
    fill_sigma: float = 0.3
    blend: float = 1.0  # share of the network's correction added to the AR guess (card; calibrated)
    min_model_ms: float = 0.0  # shorter unknown runs keep the AR guess (card; calibrated)
    eta: float = 0.0  # DDIM stochasticity at inference (card; calibrated)
    taper_ms: float = 2.0  # the correction rises to full over this much of each gap edge (card; calibrated)
    highpass_hz: float = 0.0  # >0: gaps keep the AR guess below this frequency (card; calibrated)
    envelope_db: float = 0.0  # >0: gap frames above highpass_hz raised towards their neighbours by <= this (card)
    shrink_ms: float = 0.0  # >0: gaps this long or longer get the AR guess shrunk by its pseudo-gap gain (card)
    highband_hz: float = 0.0  # >0: gaps shorter than min_model_ms get the band above this re-fitted alone (card)
    model: UNetConfig = field(default_factory=lambda: UNetConfig(data_channels=2, cond_channels=3))

    def gap_ar_order(self, step: int) -> int:
        """The training first guess's AR order at ``step`` (:attr:`gap_ar_orders`)."""
        return at_step(self.gap_ar_orders, step)

    def problems(self) -> list[str]:
        checks = [
            (self.crop_frames >= 16, "crop_frames must be >= 16"),
            (0 < self.gap_ms[0] < self.gap_ms[1], "gap_ms must be (low, high) with 0 < low < high"),
            (0 < self.clip_fraction[0] < self.clip_fraction[1] < 1, "clip_fraction must be within (0, 1)"),
            (0 < self.fill_sigma_range[0] < self.fill_sigma_range[1], "fill_sigma_range must be increasing"),
            (self.taper_ms >= 0, "taper_ms must be >= 0"),
            (0 <= self.highpass_hz < 8000, "highpass_hz must be in [0, 8000) (the model runs at 16 kHz)"),
            (self.envelope_db >= 0, "envelope_db must be >= 0"),
            (self.shrink_ms >= 0, "shrink_ms must be >= 0"),
            (0 <= self.highband_hz < 8000, "highband_hz must be in [0, 8000)"),
            (is_schedule(self.gap_ar_orders, lambda order: order >= 1),
             "gap_ar_orders must be [[0, order], [step, order], ...] with increasing steps and orders >= 1"),
            (self.model.data_channels == 2 and self.model.cond_channels == 3,
             "model needs data_channels = 2 (real/imag STFT) and cond_channels = 3 (+ missing share)"),
            (self.model.spatial_dims == 2, "model.spatial_dims must be 2 (frequency x time)"),
        ]
        return super().problems() + [message for ok, message in checks if not ok]


def load_config(path: Path, kind: type[TrainConfig | InpaintConfig] = TrainConfig):
    """Read YAML into ``kind`` (:class:`TrainConfig` or :class:`InpaintConfig`): :func:`restore.training.load_config`."""
    return load_training_config(path, kind)
