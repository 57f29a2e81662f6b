"""Restore one NIfTI file: the whole data flow, top to bottom.

    load -> estimate sigma -> t* -> start from the observation -> reverse steps
         -> pilot-guided non-local refinement -> metrics -> write
"""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from restore.device import resolve_device, set_threads
from restore.errors import InputError
from restore.mri.denoise import denoise_orientations
from restore.mri.fill import MAX_GAP, SliceReport, detect_bad_slices, fill_slices
from restore.mri.guard import GuardResult, residual_feedback
from restore.mri.io import OutputFormat, Volume, load_volume, save_nifti, save_volume
from restore.mri.io import output_format as choose_output_format
from restore.mri.noise import estimate_rician_sigma
from restore.mri.quality import foreground_mask, reference_metrics, residual_structure, snr
from restore.mri.refine import PILOT_SHIFT, nonlocal_refine
from restore.mri.uncertainty import error_std_map
from restore.outputs import check_output_path, sidecar_path, write_sidecar
from restore.provenance import input_digest
from restore.weights import LoadedModel, load_model, shipped_weights

DEFAULT_MODEL = shipped_weights("mri_denoise")
DEFAULT_FILL_MODEL = shipped_weights("mri_fill")
DEFAULT_STEPS = 1  # bench/mri_denoise.py --steps 1 2 4 on held-out MNI152: K=1 is best (36.99/36.91/36.81 dB at 3%) and fastest
FILL_STEPS = 1  # measured on the held-out volume: K=1 27.2 dB, 2: 26.7, 4: 26.1, 8: 25.7 (linear 25.8)
FILL_ENSEMBLE = 4  # fills averaged per slice (start noise x in-plane flip); measured: see fill_slices
Task = Literal["auto", "denoise", "fill"]


@functools.lru_cache(maxsize=4)
def cached_model(path: str, device: str) -> LoadedModel:
    loaded = load_model(Path(path), device=device)
    # NHWC weights: oneDNN's bf16 convolutions on whole slices run ~20% faster (181x217 slices in
    # batches of 8: 129 -> 101 ms each); the audio nets' narrow STFT tiles run ~5% slower, so not there
    loaded.model.to(memory_format=torch.channels_last)
    return loaded


def companion_path(output: Path, tag: str) -> Path:
    """``out.nii.gz`` -> ``out_<tag>.nii.gz`` (``std``, ``filled-mask``)."""
    name = output.name
    ext = ".nii.gz" if name.endswith(".nii.gz") else ".nii"
    return output.with_name(f"{name[: -len(ext)]}_{tag}{ext}")


def _volumes(data: np.ndarray) -> list[np.ndarray]:
    return [data] if data.ndim == 3 else [data[..., v] for v in range(data.shape[3])]


def _stack(parts: list[np.ndarray], like: np.ndarray) -> np.ndarray:
    return parts[0] if like.ndim == 3 else np.stack(parts, axis=-1)


def _load_reference(path: Path, volume: Volume) -> np.ndarray:
    ref = load_volume(path)
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
    orientations: Literal[1, 3] = 1,
    refine: bool = True,
    guard: bool = True,
    seed: int = 0,
    device: str = "auto",
    bf16: bool | None = None,
    dtype: Literal["float32"] | None = None,
    slice_axis: int = 2,
    task: Task = "auto",
    missing_slices: list[int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    model_path: Path | str | None = None,
    fill_model_path: Path | str | None = None,
    output_format: OutputFormat = "auto",
    series_uid: str | None = None,
) -> dict:
    """Denoise a 3D/4D NIfTI volume and fill its missing or corrupted slices.

    ``task``: ``denoise``; ``fill`` (only the detected or given slices change; every other voxel
    stays bit-identical); ``auto`` (fill what is missing, then denoise). ``refine``: follow the
    diffusion denoiser with the pilot-guided non-local stage (:mod:`restore.mri.refine`). ``guard``:
    give back removed structure where the residual is not noise (:mod:`restore.mri.guard`). Writes the
    output, its sidecar, an uncertainty map (``samples > 1``) and a mask of filled voxels (when any),
    all atomically, and returns the sidecar record (see :mod:`restore.api`).

    The input may be a DICOM series folder or file (``series_uid`` picks one series of a mixed
    folder); ``output_format`` ``dicom`` (or ``auto`` with a DICOM input and an output that is not
    ``.nii``/``.nii.gz``) writes a derived DICOM series folder, its sidecar and companions beside it."""
    started = time.monotonic()
    output_text = str(output_path)  # a trailing "/" (a folder: DICOM output) is lost in Path
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
    if orientations not in (1, 3):
        raise InputError(f"--orientations must be 1 or 3, got {orientations}")
    if task not in ("auto", "denoise", "fill"):
        raise InputError(f"--task must be auto, denoise or fill, got {task!r}")
    check_output_path(input_path, output_path, overwrite=overwrite)
    volume = load_volume(input_path, series_uid=series_uid,
                         nonfinite_slices_axis=slice_axis if task != "denoise" else None)
    fmt = choose_output_format(output_text, output_format, volume)
    n_slices = volume.data.shape[slice_axis]
    bad = [k for k in (missing_slices or []) if not 0 <= k < n_slices]
    if bad:
        raise InputError(f"--missing-slices {bad} outside 0..{n_slices - 1} along axis {slice_axis}")
    ref = _load_reference(Path(reference), volume) if reference is not None else None
    dev = resolve_device(device)
    set_threads()
    loaded = cached_model(str(model_path or DEFAULT_MODEL), str(dev))
    use_bf16 = (dev.type == "cpu") if bf16 is None else bf16

    zooms = tuple(float(z) for z in volume.header.get_zooms()[:3])
    refine_shift = PILOT_SHIFT if orientations == 1 else 0.0  # measured: see restore.mri.refine.PILOT_SHIFT
    parts, stds, fills, per_volume = [], [], [], []
    vols = _volumes(volume.data)
    refs = _volumes(ref) if ref is not None else [None] * len(vols)
    per_volume_slices = n_slices if orientations == 1 or task == "fill" else sum(volume.data.shape[:3])
    bar = tqdm(total=len(vols) * per_volume_slices, desc=f"restore {input_path.name}", unit="slice",
               disable=not progress, leave=False)
    for v, data in enumerate(vols):
        report = SliceReport(axis=slice_axis)
        if task != "denoise":
            report = detect_bad_slices(data, axis=slice_axis)
            report = replace(report, given=sorted(set(missing_slices or [])))
        known = np.ones(n_slices, bool)
        known[report.to_fill] = False
        if not known.any():
            raise InputError(f"{input_path.name}: no usable slice along axis {slice_axis}")
        data = np.where(np.isfinite(data), data, 0).astype(np.float32)
        est = estimate_rician_sigma(np.compress(known, data, axis=slice_axis))
        s = est.sigma if sigma is None else float(sigma)
        filled = np.zeros(data.shape, bool)
        if report.to_fill:
            fill_model = cached_model(str(fill_model_path or DEFAULT_FILL_MODEL), str(dev)).model
            fr = fill_slices(data, report.to_fill, s, fill_model, axis=slice_axis, steps=FILL_STEPS, seed=seed + v,
                             bf16=use_bf16, ensemble=FILL_ENSEMBLE)
            data, filled = fr.data, fr.filled
        res = refined = guarded = None
        std_kind = None
        out = data
        if task != "fill":
            axes = [slice_axis] + ([a for a in range(3) if a != slice_axis] if orientations == 3 else [])
            denoise = functools.partial(denoise_orientations, model=loaded.model, axes=axes, steps=steps,
                                        seed=seed + 10 * v, bf16=use_bf16, strength=strength)
            res = denoise(data, s, samples=samples, on_batch=bar.update)
            non_negative = np.compress(known, vols[v], axis=slice_axis).min() >= 0
            out = np.maximum(res.data, 0) if non_negative else res.data  # magnitudes stay >= 0
            pilot = out
            if refine:
                refined = nonlocal_refine(data, out, s, pilot_fn=_pilot_fn(denoise, non_negative), rician=non_negative,
                                          shift=refine_shift, seed=seed + v, device=dev)
                out = refined.data
            if samples > 1:
                calibrated = None if refined is None else error_std_map(pilot, refined, s, res.std)
                std_kind = "calibrated" if calibrated is not None else "posterior samples only"
                res = replace(res, std=res.std if calibrated is None else calibrated)
            if guard:
                guarded = residual_feedback(data, out, s, foreground_mask(data, s), zooms=zooms, rician=non_negative)
                out = guarded.data
        else:
            bar.update(n_slices)
        parts.append(out)
        stds.append(None if res is None else res.std)
        fills.append(filled)
        metrics = _volume_metrics(vols[v], out, est.sigma, s, res, refs[v], known, slice_axis)
        if refined is not None:
            metrics["refine"] = {"h_over_sigma": list(refined.h), "class_edges_std_over_sigma": list(refined.edges),
                                 "search_window": 2 * refined.search + 1, "pilot_shift_sigma2": refine_shift,
                                 "estimated_mse": {str(k): list(e) for k, e in refined.scores.items()}}
        metrics["qc"] = _qc(guarded)
        if std_kind is not None:
            metrics["std_map"] = std_kind
        metrics["slices"] = _slice_summary(report)
        per_volume.append(metrics)
    bar.close()
    restored = _stack(parts, volume.data)
    filled_mask = _stack(fills, volume.data)

    keep = None if task != "fill" else ~filled_mask  # fill only: every other voxel bit-identical
    save_volume(output_path, restored, volume, fmt=fmt, dtype=dtype, keep_from_input=keep)
    written = [str(output_path)]
    nifti_base = output_path if fmt == "nifti" else output_path.with_name(output_path.name + ".nii.gz")
    if samples > 1 and task != "fill":
        save_nifti(companion_path(nifti_base, "std"), _stack(stds, volume.data), volume, dtype="float32")
        written.append(str(companion_path(nifti_base, "std")))
    if filled_mask.any():
        save_nifti(companion_path(nifti_base, "filled-mask"), filled_mask.astype(np.float32), volume,
                   dtype="uint8")
        written.append(str(companion_path(nifti_base, "filled-mask")))
    record = {
        "kind": "mri",
        "task": {"denoise": "denoise", "fill": "fill", "auto": "fill+denoise" if filled_mask.any() else "denoise"}[task],
        "input": {"path": str(input_path), "sha256": input_digest(input_path, series_uid), "shape": list(volume.data.shape),
                  "dtype": str(volume.on_disk_dtype), "voxel_mm": list(zooms),
                  **_input_format(volume)},
        "output": str(output_path),
        "output_format": fmt,
        "files": written,
        "model": {"name": loaded.card.get("name", "mri_denoise"), "version": loaded.version,
                  **({"fill_version": cached_model(str(fill_model_path or DEFAULT_FILL_MODEL), str(dev)).version}
                     if filled_mask.any() else {})},
        "params": {"sigma": sigma, "steps": steps, "samples": samples, "strength": strength,
                   "orientations": orientations, "refine": refine and task != "fill",
                   "guard": guard and task != "fill", "seed": seed,
                   "slice_axis": slice_axis, "task": task, "missing_slices": missing_slices, "bf16": use_bf16, "dtype": dtype or str(volume.on_disk_dtype)},
        "metrics": per_volume[0] if len(per_volume) == 1 else {"volumes": per_volume},
        "timing": {"seconds": round(time.monotonic() - started, 2), "device": str(dev)},
    }
    write_sidecar(sidecar_path(output_path), record)
    return record


def _input_format(volume: Volume) -> dict:
    if volume.dicom is not None:
        return {"format": "dicom", "series_uid": volume.dicom.series_uid,
                "series_description": volume.dicom.description}
    return {"format": "nifti", **({"complex_taken_as_magnitude": True} if volume.complex_taken_as_magnitude else {})}


def _pilot_fn(denoise, non_negative: bool):
    """The ``(noisy, sigma) -> pilot`` that refinement reruns on its scoring slab: ``denoise`` (one
    sample), clamped like the restored volume."""
    def run(noisy: np.ndarray, sigma: float) -> np.ndarray:
        data = denoise(noisy, sigma).data
        return np.maximum(data, 0) if non_negative else data
    return run


OVER_SMOOTHING_SHARE = 0.02  # QC: more of the foreground than this with structure in the residual


def _qc(guarded: GuardResult | None) -> dict:
    """What the residual says about the restoration (see :mod:`restore.mri.guard`)."""
    if guarded is None:
        return {"checked": False}
    return {"checked": True, "residual_structured_share": guarded.share_structured,
            "over_smoothing": guarded.share_structured > OVER_SMOOTHING_SHARE,
            "given_back_share": guarded.share_given_back}


def _slice_summary(report: SliceReport) -> dict:
    return {"axis": report.axis, "missing": report.missing, "corrupted": report.corrupted,
            "suspect_not_filled": report.suspect, "given": report.given,
            "filled": report.to_fill, "longest_gap": report.longest_gap(),
            "low_confidence": report.longest_gap() > MAX_GAP}


def _volume_metrics(noisy: np.ndarray, restored: np.ndarray, sigma_est: float, sigma_used: float, res,
                    reference: np.ndarray | None, known: np.ndarray, axis: int) -> dict:
    clean_in = np.compress(known, noisy, axis=axis)  # statistics of the input skip its missing slices
    clean_out = np.compress(known, restored, axis=axis)
    p99 = float(np.percentile(clean_in, 99))
    mask = foreground_mask(clean_in, sigma_est)
    after = estimate_rician_sigma(clean_out).sigma
    m = {
        "sigma_before": sigma_est,
        "sigma_before_pct_p99": 100 * sigma_est / p99,
        "sigma_used": sigma_used,
        "sigma_after": after,
        "snr_before": snr(clean_in, sigma_est, mask),
        "snr_after": snr(clean_out, after, mask),
        "residual_structure": residual_structure(clean_in, clean_out, mask),
        "t_star": 0 if res is None else res.t_star,
        "steps_run": 0 if res is None else res.steps,
    }
    if reference is not None:
        m["reference"] = {"input": reference_metrics(reference, np.where(np.isfinite(noisy), noisy, 0)),
                          "output": reference_metrics(reference, restored)}
        if not known.all():
            sel = np.zeros(noisy.shape, bool)
            np.moveaxis(sel, axis, 0)[~known] = True
            from restore.metrics.image import psnr

            m["reference"]["psnr_filled_slices"] = psnr(reference, restored, mask=sel,
                                                        data_range=float(reference.max() - reference.min()))
    return m


def summary_lines(record: dict) -> list[str]:
    """Human-readable summary for the command line."""
    m = record["metrics"] if "volumes" not in record["metrics"] else record["metrics"]["volumes"][0]
    lines = [
        f"wrote {record['output']} ({record['timing']['seconds']:.1f} s, model {record['model']['version']})",
        (f"noise sigma {m['sigma_before']:.4g} ({m['sigma_before_pct_p99']:.2f}% of p99) -> {m['sigma_after']:.4g};"
         f" t* = {m['t_star']}, {m['steps_run']} reverse steps"),
        f"SNR {m['snr_before']:.1f} -> {m['snr_after']:.1f}; structure left in the residual {m['residual_structure']:.3f}",
    ]
    qc = m.get("qc", {})
    if qc.get("over_smoothing"):
        lines.append(f"warning: {100 * qc['residual_structured_share']:.1f}% of the head has structure in the residual"
                     " (over-smoothing?); check the output, or lower --strength")
    if "reference" in m:
        i, o = m["reference"]["input"], m["reference"]["output"]
        lines.append(f"head PSNR {i['psnr_head']:.2f} -> {o['psnr_head']:.2f} dB, SSIM {i['ssim_head']:.3f} -> {o['ssim_head']:.3f}")
    return lines
