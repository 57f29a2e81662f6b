"""Train the 2.5D MRI denoiser: ``restore train mri --config configs/mri_denoise.yaml``.

Each example follows the path the sampler takes at inference. From a clean slab ``x0`` and its
Rician observation ``y`` (sigma ``s_y``), the start step is ``t* = timestep_for_sigma(s_y)``; the
noise direction is the observation's own noise topped up to ``sigma_t*``,
``e = (y - x0 + sqrt(sigma_t*^2 - s_y^2) eps) / sigma_t*``, and a step ``t <= t*`` sees
``x_t = sqrt(alpha_bar_t) (x0 + sigma_t e)`` -- exactly what deterministic DDIM visits with a
perfect denoiser. A quarter of the examples use fresh noise instead (ancestral sampling).
The loss is the MSE of ``x0_hat`` (EDM preconditioning). Resumable: checkpoints (safetensors,
never pickle) hold the model, its EMA, the optimiser moments and the step; data for step ``k``
come from ``np.random.default_rng([seed, k])``, so a resumed run sees the same batches.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from restore import __version__
from restore.device import autocast
from restore.errors import InputError
from restore.metrics.image import head_mask, psnr, ssim
from restore.mri.data import Augment, build_training_set, load_source, sample_slabs
from restore.mri.denoise import denoise_volume
from restore.mri.fill import fill_example, fill_slices, interpolate_missing
from restore.mri.noise import add_rician_noise
from restore.nets import UNetConfig, UNetDenoiser
from restore.outputs import atomic_write
from restore.weights import save_model


@dataclass(frozen=True)
class TrainConfig:
    task: Literal["denoise", "fill"]
    seed: int
    steps: int
    batch_size: int
    patch: int
    lr: float
    warmup: int
    ema: float
    threads: int
    bf16: bool
    checkpoint_every: int
    validate_every: int
    checkpoint_dir: str
    output: str
    neighbours: int
    sigma_range: tuple[float, float]
    gamma_range: tuple[float, float]
    train_sources: tuple[str, ...]
    voxel_sizes: tuple[tuple[float, float, float], ...]
    validation_source: str
    validation_sigmas: tuple[float, ...]
    model: dict
    # {from_step: N, elastic: p, elastic_px: a, blur: p, blur_px: s, bias: b}: restore.mri.data.Augment
    # from step N on (the shipped denoiser's first 5200 steps ran without)
    augment: dict | None = None

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise InputError(f"cannot read config {path}: {e}") from None
        names, optional = {f.name for f in fields(cls)}, {"augment"}
        if not names - optional <= set(raw) <= names:
            raise InputError(f"{path}: missing {sorted(names - optional - set(raw))}, unknown {sorted(set(raw) - names)}")
        raw["voxel_sizes"] = tuple(tuple(v) for v in raw["voxel_sizes"])
        for k in ("sigma_range", "gamma_range", "train_sources", "validation_sigmas"):
            raw[k] = tuple(raw[k])
        cfg = cls(**raw)
        UNetConfig.from_dict(cfg.model)  # validates the network part
        if cfg.task not in ("denoise", "fill"):
            raise InputError(f"{path}: task must be denoise or fill, got {cfg.task!r}")
        width = 2 * cfg.neighbours + 1
        need = width + 1 if cfg.task == "denoise" else 2 * width + 1
        if cfg.model.get("cond_channels") != need:
            raise InputError(f"{path}: model.cond_channels must be {need} for task {cfg.task} with {cfg.neighbours} neighbours")
        if cfg.model.get("extra", {}).get("neighbours") != cfg.neighbours:
            raise InputError(f"{path}: model.extra.neighbours must equal neighbours ({cfg.neighbours})")
        cfg.augmentation()  # validates the augment block
        if cfg.task == "fill" and "start_sigma" not in cfg.model.get("extra", {}):
            raise InputError(f"{path}: a fill model needs model.extra.start_sigma")
        return cfg

    def augmentation(self) -> tuple[int, Augment | None]:
        """``(from_step, Augment)`` of the ``augment`` block, or ``(steps, None)`` without one."""
        if self.augment is None:
            return self.steps, None
        options = dict(self.augment)
        from_step = options.pop("from_step", 0)
        if not (isinstance(from_step, int) and from_step >= 0):
            raise InputError(f"augment: from_step must be an int >= 0, got {from_step!r}")
        try:
            return from_step, Augment(**options)
        except (TypeError, ValueError) as e:
            raise InputError(f"augment: {e}") from None


def along_sampler_path(x0: torch.Tensor, y: torch.Tensor, s_y: torch.Tensor, t_star: torch.Tensor,
                       schedule, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_t, t)`` on the path the sampler takes from ``y`` (noise ``s_y``) started at ``t*``.

    ``t*`` is jittered for 30% of examples (misestimated noise, ``--strength``); half the examples
    sit at the start step, the rest uniformly below it; a quarter use fresh noise (module docstring).
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


def diffusion_example(batch, model: UNetDenoiser, rng: np.random.Generator, neighbours: int) -> dict:
    """Turn clean/noisy slabs into (x_t, t, cond, x0) for the denoiser (module docstring)."""
    sched = model.schedule
    x0 = torch.from_numpy(batch.clean[:, neighbours : neighbours + 1] * 2 - 1)
    noisy = torch.from_numpy(batch.noisy * 2 - 1)
    s_y = torch.from_numpy(batch.sigma * 2).double()  # model units: data * 2 - 1
    s_cond = s_y * torch.from_numpy(rng.uniform(0.9, 1.1, len(s_y)))  # estimates are never exact
    t_star = sched.timestep_for_sigma(s_y).clamp(min=1)
    x_t, t = along_sampler_path(x0, noisy[:, neighbours : neighbours + 1], s_y, t_star, sched, rng)
    sigma_map = s_cond.view(-1, 1, 1, 1).expand(-1, 1, *x0.shape[2:])
    cond = torch.cat([noisy, sigma_map.float()], dim=1)
    return {"x_t": x_t, "t": t, "cond": cond, "x0": x0}


def _lr(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _save_checkpoint(path: Path, model, ema, opt, state: dict) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v.detach().contiguous() for k, v in ema.state_dict().items()}
    for i, s in opt.state_dict()["state"].items():
        for k, v in s.items():
            tensors[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().contiguous()
    atomic_write(path.with_suffix(".safetensors"), lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(state, indent=2)))


def _load_checkpoint(path: Path, model, ema, opt) -> dict:
    tensors = load_file(str(path.with_suffix(".safetensors")))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    opt_state = opt.state_dict()
    per_param: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            per_param.setdefault(int(i), {})[name] = v
    opt_state["state"] = per_param
    opt.load_state_dict(opt_state)
    return json.loads(path.with_suffix(".json").read_text())


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
    cfg = TrainConfig.from_yaml(Path(config_path))
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = UNetDenoiser(UNetConfig.from_dict(cfg.model))
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    ckpt = Path(cfg.checkpoint_dir) / "latest"
    state = {"step": 0, "elapsed_s": 0.0, "history": []}
    if ckpt.with_suffix(".json").is_file():
        state = _load_checkpoint(ckpt, model, ema, opt)
        print(f"resuming from step {state['step']} ({ckpt})")
    print("building training volumes ...", flush=True)
    volumes = build_training_set(list(cfg.train_sources), [list(v) for v in cfg.voxel_sizes])
    val_items = validation_set(cfg)
    print(f"{len(volumes)} training volumes: {', '.join(v.name for v in volumes)}", flush=True)
    augment_from, augment = cfg.augmentation()
    device = torch.device("cpu")
    t0, elapsed0 = time.monotonic(), state["elapsed_s"]
    bar = tqdm(range(state["step"], cfg.steps), initial=state["step"], total=cfg.steps, desc="train mri")
    loss_avg = None
    for step in bar:
        rng = np.random.default_rng([cfg.seed, step])
        batch = sample_slabs(volumes, rng, batch=cfg.batch_size, patch=cfg.patch, neighbours=cfg.neighbours,
                             sigma_range=cfg.sigma_range, gamma_range=cfg.gamma_range,
                             augment=augment if step >= augment_from else None)
        if cfg.task == "denoise":
            ex = diffusion_example(batch, model, rng, cfg.neighbours)
        else:
            ex = fill_example(batch, model, rng, cfg.neighbours, float(cfg.model["extra"]["start_sigma"]))
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, step)
        with autocast(device, cfg.bf16):
            x0_hat = model(ex["x_t"], ex["t"], ex["cond"])
        loss = torch.mean((x0_hat.float() - ex["x0"]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - cfg.ema)
        loss_value = float(loss.detach())
        loss_avg = loss_value if loss_avg is None else 0.98 * loss_avg + 0.02 * loss_value
        bar.set_postfix(loss=f"{loss_avg:.5f}")
        done = step + 1
        if done % cfg.validate_every == 0 or done == cfg.steps:
            metrics = validate(ema, val_items, cfg.task)
            state["history"].append({"step": done, **metrics})
            tqdm.write(json.dumps({"step": done, "loss": round(loss_avg, 6), **metrics}))
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            state.update(step=done, elapsed_s=elapsed0 + time.monotonic() - t0)
            _save_checkpoint(ckpt, model, ema, opt, state)
    state["elapsed_s"] = elapsed0 + time.monotonic() - t0
    card = {
        "name": Path(cfg.output).stem,
        "version": f"{__version__}+{Path(cfg.output).stem}.{state['step']}",
        "task": {"denoise": "Rician denoising of MRI magnitude volumes, 2.5D slices",
                 "fill": "filling missing MRI slices from their neighbours, 2.5D"}[cfg.task],
        "training": {
            "sources": list(cfg.train_sources),
            "voxel_sizes_mm": [list(v) for v in cfg.voxel_sizes],
            "validation_source (held out)": cfg.validation_source,
            "steps": state["step"],
            "batch_size": cfg.batch_size,
            "patch": cfg.patch,
            "wall_time_s": round(state["elapsed_s"], 1),
            "threads": cfg.threads,
            "sigma_range_of_p99": list(cfg.sigma_range),
            "augmentation": "3 orientations, flips, gamma, resampling, Rician noise"
                            + (f"; from step {augment_from}: {augment}" if augment is not None else ""),
            "config": str(config_path),
        },
        "metrics": {"validation": state["history"][-1] if state["history"] else {}},
    }
    save_model(ema, Path(cfg.output), card)
    print(f"wrote {cfg.output}")
    return Path(cfg.output)
