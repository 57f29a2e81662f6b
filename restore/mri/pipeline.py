"""Restore one NIfTI file: the whole data flow, top to bottom.

    load -> estimate sigma -> t* -> start from the observation -> reverse steps -> metrics -> write
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from restore.device import resolve_device, set_threads
from restore.errors import InputError
from restore.mri.denoise import denoise_volume
from restore.mri.io import Volume, load_nifti, save_nifti
from restore.mri.noise import estimate_rician_sigma
from restore.mri.quality import foreground_mask, reference_metrics, residual_structure, snr
from restore.outputs import check_output_path, sidecar_path, write_sidecar
from restore.weights import LoadedModel, load_model

MODEL_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_MODEL = MODEL_DIR / "mri_denoise.safetensors"
DEFAULT_STEPS = 2  # chosen by bench/mri_denoise.py --steps-sweep (see the model card)


@functools.lru_cache(maxsize=4)
def cached_model(path: str, device: str) -> LoadedModel:
    return load_model(Path(path), device=device)


def std_map_path(output: Path) -> Path:
    """``out.nii.gz`` -> ``out_std.nii.gz``."""
    name = output.name
    ext = ".nii.gz" if name.endswith(".nii.gz") else ".nii"
    return output.with_name(name[: -len(ext)] + "_std" + ext)


def _volumes(data: np.ndarray) -> list[np.ndarray]:
    return [data] if data.ndim == 3 else [data[..., v] for v in range(data.shape[3])]


def _stack(parts: list[np.ndarray], like: np.ndarray) -> np.ndarray:
    return parts[0] if like.ndim == 3 else np.stack(parts, axis=-1)


def _load_reference(path: Path, volume: Volume) -> np.ndarray:
    ref = load_nifti(path)
    if ref.data.shape != volume.data.shape:
        raise InputError(f"reference shape {ref.data.shape} differs from the input's {volume.data.shape}")
    return ref.data


def restore_nifti(
    input_path: Path | str,
    output_path: Path | str,
    *,
    reference: Path | str | None = None,
    sigma: float | None = None,
    steps: int | None = None,
    samples: int = 1,
    strength: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    bf16: bool | None = None,
    dtype: Literal["float32"] | None = None,
    slice_axis: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    model_path: Path | str | None = None,
) -> dict:
    """Denoise a 3D/4D NIfTI volume; writes the output, its sidecar and (``samples > 1``) an
    uncertainty map, all atomically, and returns the sidecar record (see :mod:`restore.api`)."""
    started = time.monotonic()
    input_path, output_path = Path(input_path), Path(output_path)
    steps = DEFAULT_STEPS if steps is None else steps
    if not 1 <= steps <= 50:
        raise InputError(f"--steps must be 1..50, got {steps}")
    if not 1 <= samples <= 64:
        raise InputError(f"--samples must be 1..64, got {samples}")
    if sigma is not None and sigma < 0:
        raise InputError(f"--sigma must be >= 0, got {sigma}")
    if not 0 < strength <= 4:
        raise InputError(f"--strength must be in (0, 4], got {strength}")
    if slice_axis not in (0, 1, 2):
        raise InputError(f"--slice-axis must be 0, 1 or 2, got {slice_axis}")
    check_output_path(input_path, output_path, overwrite=overwrite)
    volume = load_nifti(input_path)
    ref = _load_reference(Path(reference), volume) if reference is not None else None
    dev = resolve_device(device)
    set_threads()
    loaded = cached_model(str(model_path or DEFAULT_MODEL), str(dev))
    use_bf16 = (dev.type == "cpu") if bf16 is None else bf16

    parts, stds, per_volume = [], [], []
    vols = _volumes(volume.data)
    bar = tqdm(total=len(vols) * volume.data.shape[slice_axis], desc=f"restore {input_path.name}",
               unit="slice", disable=not progress, leave=False)
    for v, data in enumerate(vols):
        est = estimate_rician_sigma(data)
        s = est.sigma if sigma is None else float(sigma)
        res = denoise_volume(data, s, loaded.model, steps=steps, samples=samples, seed=seed + v,
                             axis=slice_axis, bf16=use_bf16, strength=strength, on_batch=bar.update)
        out = np.maximum(res.data, 0) if data.min() >= 0 else res.data  # magnitudes are >= 0
        parts.append(out)
        stds.append(res.std)
        per_volume.append(_volume_metrics(data, out, est.sigma, s, res, None if ref is None else _volumes(ref)[v]))
    bar.close()
    restored = _stack(parts, volume.data)

    save_nifti(output_path, restored, volume, dtype=dtype)
    written = [str(output_path)]
    if samples > 1:
        save_nifti(std_map_path(output_path), _stack(stds, volume.data), volume, dtype="float32")
        written.append(str(std_map_path(output_path)))
    from restore.api import sha256_of

    record = {
        "kind": "mri",
        "task": "denoise",
        "input": {"path": str(input_path), "sha256": sha256_of(input_path), "shape": list(volume.data.shape),
                  "dtype": str(volume.on_disk_dtype), "voxel_mm": [float(z) for z in volume.header.get_zooms()[:3]]},
        "output": str(output_path),
        "files": written,
        "model": {"name": loaded.card.get("name", "mri_denoise"), "version": loaded.version},
        "params": {"sigma": sigma, "steps": steps, "samples": samples, "strength": strength, "seed": seed,
                   "slice_axis": slice_axis, "bf16": use_bf16, "dtype": dtype or str(volume.on_disk_dtype)},
        "metrics": per_volume[0] if len(per_volume) == 1 else {"volumes": per_volume},
        "timing": {"seconds": round(time.monotonic() - started, 2), "device": str(dev)},
    }
    write_sidecar(sidecar_path(output_path), record)
    return record


def _volume_metrics(noisy: np.ndarray, restored: np.ndarray, sigma_est: float, sigma_used: float, res,
                    reference: np.ndarray | None) -> dict:
    p99 = float(np.percentile(noisy, 99))
    mask = foreground_mask(noisy, sigma_est)
    after = estimate_rician_sigma(restored).sigma
    m = {
        "sigma_before": sigma_est,
        "sigma_before_pct_p99": 100 * sigma_est / p99,
        "sigma_used": sigma_used,
        "sigma_after": after,
        "snr_before": snr(noisy, sigma_est, mask),
        "snr_after": snr(restored, after, mask),
        "residual_structure": residual_structure(noisy, restored, mask),
        "t_star": res.t_star,
        "steps_run": res.steps,
    }
    if reference is not None:
        m["reference"] = {"input": reference_metrics(reference, noisy), "output": reference_metrics(reference, restored)}
    return m


def summary_lines(record: dict) -> list[str]:
    """Human-readable summary for the command line."""
    m = record["metrics"] if "volumes" not in record["metrics"] else record["metrics"]["volumes"][0]
    lines = [
        f"wrote {record['output']} ({record['timing']['seconds']:.1f} s, model {record['model']['version']})",
        f"noise sigma {m['sigma_before']:.4g} ({m['sigma_before_pct_p99']:.2f}% of p99) -> {m['sigma_after']:.4g};"
        f" t* = {m['t_star']}, {m['steps_run']} reverse steps",
        f"SNR {m['snr_before']:.1f} -> {m['snr_after']:.1f}; structure left in the residual {m['residual_structure']:.3f}",
    ]
    if "reference" in m:
        i, o = m["reference"]["input"], m["reference"]["output"]
        lines.append(f"head PSNR {i['psnr_head']:.2f} -> {o['psnr_head']:.2f} dB, SSIM {i['ssim_head']:.3f} -> {o['ssim_head']:.3f}")
    return lines
