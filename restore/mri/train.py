"""Train the 2.5D MRI denoiser or slice filler: ``restore train mri --config configs/mri_denoise.yaml``.

The loop, EMA, learning rate and checkpoints are :mod:`restore.training`'s; this module adds the
data (random slabs of the training volumes, :func:`restore.mri.data.sample_slabs`), the examples
on the sampler's path (:func:`restore.training.targets.along_sampler_path`) and the validation on
the held-out volume. The loss is the MSE of ``x0_hat`` (EDM preconditioning). Data for step ``k``
come from ``np.random.default_rng([seed, k])``, so a resumed run sees the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from restore import __version__
from restore.errors import InputError
from restore.metrics.image import head_mask, psnr, ssim
from restore.mri.data import Augment, build_training_set, load_source, sample_slabs
from restore.mri.denoise import denoise_volume
from restore.mri.fill import fill_condition, fill_slices, interpolate_missing
from restore.mri.noise import add_rician_noise
from restore.nets import UNetConfig, UNetDenoiser
from restore.training import Example, TrainingConfig, start_run, train
from restore.training import load_config as load_training_config
from restore.training.targets import along_sampler_path
from restore.weights import save_model


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainingConfig):
    """``configs/mri_denoise.yaml`` / ``configs/mri_fill.yaml``; the loop's fields are :class:`TrainingConfig`'s."""

    task: Literal["denoise", "fill"]
    patch: int
    neighbours: int
    sigma_range: tuple[float, float]
    gamma_range: tuple[float, float]
    train_sources: tuple[str, ...]
    voxel_sizes: tuple[tuple[float, float, float], ...]
    validation_source: str
    validation_sigmas: tuple[float, ...]
    model: UNetConfig
    # {from_step: N, elastic: p, elastic_px: a, blur: p, blur_px: s, bias: b}: restore.mri.data.Augment
    # from step N on (the shipped denoiser was trained without)
    augment: dict | None = None

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.task not in ("denoise", "fill"):
            return [*problems, f"task must be denoise or fill, got {self.task!r}"]
        width = 2 * self.neighbours + 1
        need = width + 1 if self.task == "denoise" else 2 * width + 1
        if self.model.cond_channels != need:
            problems.append(f"model.cond_channels must be {need} for task {self.task} with {self.neighbours} neighbours")
        if self.model.extra.get("neighbours") != self.neighbours:
            problems.append(f"model.extra.neighbours must equal neighbours ({self.neighbours})")
        if self.task == "fill" and "start_sigma" not in self.model.extra:
            problems.append("a fill model needs model.extra.start_sigma")
        try:
            self.augmentation()
        except InputError as e:
            problems.append(str(e))
        return problems

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        return load_training_config(path, cls)

    def augmentation(self) -> tuple[int, Augment | None]:
        """``(from_step, Augment)`` of the ``augment`` block, or ``(max_steps, None)`` without one."""
        if self.augment is None:
            return self.max_steps, None
        options = dict(self.augment)
        from_step = options.pop("from_step", 0)
        if not (isinstance(from_step, int) and from_step >= 0):
            raise InputError(f"augment: from_step must be an int >= 0, got {from_step!r}")
        try:
            return from_step, Augment(**options)
        except (TypeError, ValueError) as e:
            raise InputError(f"augment: {e}") from None


def load_config(path: Path) -> TrainConfig:
    return TrainConfig.from_yaml(path)


def diffusion_example(batch, model: UNetDenoiser, rng: np.random.Generator, neighbours: int) -> Example:
    """Turn clean/noisy slabs into an :class:`Example` for the denoiser (on the sampler's path)."""
    sched = model.schedule
    x0 = torch.from_numpy(batch.clean[:, neighbours : neighbours + 1] * 2 - 1)
    noisy = torch.from_numpy(batch.noisy * 2 - 1)
    s_y = torch.from_numpy(batch.sigma * 2).double()  # model units: data * 2 - 1
    s_cond = s_y * torch.from_numpy(rng.uniform(0.9, 1.1, len(s_y)))  # estimates are never exact
    t_star = sched.timestep_for_sigma(s_y).clamp(min=1)
    x_t, t = along_sampler_path(x0, noisy[:, neighbours : neighbours + 1], s_y, t_star, sched, rng)
    sigma_map = s_cond.view(-1, 1, 1, 1).expand(-1, 1, *x0.shape[2:])
    cond = torch.cat([noisy, sigma_map.float()], dim=1)
    return Example(x_t, t, cond, x0)


def fill_example(batch, model: UNetDenoiser, rng: np.random.Generator, neighbours: int, start_sigma: float) -> Example:
    """Training example: the centre slice (plus a random gap around it and sparse drops) is missing."""
    b, width = batch.clean.shape[:2]
    known = rng.random((b, width)) >= 0.1
    lengths = rng.choice([1, 2, 3], size=b, p=[0.5, 0.3, 0.2])
    for i in range(b):
        first = neighbours - int(rng.integers(lengths[i]))
        known[i, first : first + lengths[i]] = False
    noisy = batch.noisy * 2 - 1
    slabs = np.stack([interpolate_missing(noisy[i], known[i]) if known[i].any() else np.full_like(noisy[i], -1)
                      for i in range(b)])
    slabs = np.where(known[:, :, None, None], noisy, slabs).astype(np.float32)
    slabs_t = torch.from_numpy(slabs)
    s_cond = torch.from_numpy(batch.sigma * 2 * rng.uniform(0.9, 1.1, b))
    cond = fill_condition(slabs_t, torch.from_numpy(known), 0.0)
    cond[:, -1] = s_cond.view(-1, 1, 1).float()
    x0 = torch.from_numpy(batch.clean[:, neighbours : neighbours + 1] * 2 - 1)
    y = slabs_t[:, neighbours : neighbours + 1]
    t_star = model.schedule.timestep_for_sigma(torch.full((b,), start_sigma, dtype=torch.float64))
    x_t, t = along_sampler_path(x0, y, torch.zeros(b, dtype=torch.float64), t_star, model.schedule, rng)
    return Example(x_t, t, cond, x0)


def validation_set(cfg: TrainConfig) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(sigma, clean, noisy) sub-volumes of the held-out volume: 8 (fill: 16) axial slices from its middle."""
    data, _ = load_source(cfg.validation_source)
    z, half = data.shape[2] // 2, (4 if cfg.task == "denoise" else 8)
    clean = data[:, :, z - half : z + half]
    rng = np.random.default_rng(12345)
    return [(s, clean, add_rician_noise(clean, s, rng) if s > 0 else clean.copy()) for s in cfg.validation_sigmas]


VALIDATION_GAPS = [3, 7, 8, 12, 13, 14]  # single, double and triple gaps in 16 slices


def validate(model: UNetDenoiser, items, task: str = "denoise", *, steps: int = 2) -> dict:
    out = {}
    for sigma, clean, noisy in items:
        mask = head_mask(clean)
        rng_ = float(clean.max())
        if task == "denoise":
            restored = denoise_volume(noisy, sigma, model, steps=steps, bf16=False).data
            out[f"sigma{sigma:g}"] = {
                "psnr_noisy": round(psnr(clean, noisy, mask=mask, data_range=rng_), 3),
                "psnr": round(psnr(clean, restored, mask=mask, data_range=rng_), 3),
                "ssim": round(ssim(clean, restored, mask=mask, data_range=rng_), 4),
            }
            continue
        filled = fill_slices(noisy, VALIDATION_GAPS, sigma, model, steps=1, bf16=False)
        known = np.ones(clean.shape[2], bool)
        known[VALIDATION_GAPS] = False
        linear = np.moveaxis(interpolate_missing(np.moveaxis(noisy, 2, 0), known), 0, 2)
        sel = filled.filled & mask
        out[f"sigma{sigma:g}"] = {
            "psnr_linear": round(psnr(clean, linear, mask=sel, data_range=rng_), 3),
            "psnr_fill": round(psnr(clean, filled.data, mask=sel, data_range=rng_), 3),
        }
    return out


def main(config_path: Path | str) -> Path:
    """Train (or resume) as configured; returns the path of the written weights."""
    cfg = TrainConfig.from_yaml(Path(config_path))
    run = start_run(cfg, cfg.model)
    if run.state["step"]:
        print(f"resuming from step {run.state['step']} ({cfg.run_dir})")
    print("building training volumes ...", flush=True)
    volumes = build_training_set(list(cfg.train_sources), [list(v) for v in cfg.voxel_sizes])
    val_items = validation_set(cfg)
    print(f"{len(volumes)} training volumes: {', '.join(v.name for v in volumes)}", flush=True)
    augment_from, augment = cfg.augmentation()

    def examples(step: int) -> Example:
        rng = np.random.default_rng([cfg.seed, step])
        batch = sample_slabs(volumes, rng, batch=cfg.batch_size, patch=cfg.patch, neighbours=cfg.neighbours,
                             sigma_range=cfg.sigma_range, gamma_range=cfg.gamma_range,
                             augment=augment if step >= augment_from else None)
        if cfg.task == "denoise":
            return diffusion_example(batch, run.net, rng, cfg.neighbours)
        return fill_example(batch, run.net, rng, cfg.neighbours, float(cfg.model.extra["start_sigma"]))

    def export(ema: UNetDenoiser, state: dict) -> None:
        save_model(ema, Path(cfg.weights), model_card(cfg, state, str(config_path), augment_from, augment))

    train(run, cfg, examples, validate=lambda ema: validate(ema, val_items, cfg.task), export=export,
          desc=f"train mri {cfg.task}")
    print(f"wrote {cfg.weights}")
    return Path(cfg.weights)


def model_card(cfg: TrainConfig, state: dict, config_path: str, augment_from: int, augment: Augment | None) -> dict:
    name = Path(cfg.weights).stem
    return {
        "name": name,
        "version": f"{__version__}+{name}.{state['step']}",
        "task": {"denoise": "Rician denoising of MRI magnitude volumes, 2.5D slices",
                 "fill": "filling missing MRI slices from their neighbours, 2.5D"}[cfg.task],
        "training": {
            "sources": list(cfg.train_sources),
            "voxel_sizes_mm": [list(v) for v in cfg.voxel_sizes],
            "validation_source (held out)": cfg.validation_source,
            "steps": state["step"],
            "batch_size": cfg.batch_size,
            "patch": cfg.patch,
            "wall_time_s": round(state["elapsed"], 1),
            "threads": cfg.threads,
            "sigma_range_of_p99": list(cfg.sigma_range),
            "augmentation": "3 orientations, flips, gamma, resampling, Rician noise"
                            + (f"; from step {augment_from}: {augment}" if augment is not None else ""),
            "config": config_path,
        },
        "metrics": {"validation": state["history"][-1] if state["history"] else {}},
    }
