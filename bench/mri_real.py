"""MRI on real single-subject scans that no model here was trained on: restore vs BM4D vs NL-means.

Training used templates (Colin27, the INIA19 macaque; MNI152 for validation): averages of many
scans, smooth and without single-scan texture. This bench uses real single scans shipped inside
Python packages, of other sources, resolutions and contrasts:

| name | source | class |
|---|---|---|
| t1-2mm-small | nibabel tests `anatomical.nii` (33x41x25, 2 mm, no background) | T1, 2 mm, small 3D |
| t2-4x4x5mm | DIPY `aniso_vox.nii.gz` (58x58x24, 4x4x5 mm, b0/T2-like) | T2-like, anisotropic |
| b0-2x2x53mm | DIPY `S0_10slices.nii.gz` (128x128x10, 2x2 mm, thick slices) | T2-like, thick slices |
| epi-2mm | nibabel tests `example4d.nii.gz`, volume 0 (128x96x24, EPI) | T2*, EPI |
| t1-slice-256 | DIPY `t1_coronal_slice.npy` (256x256, 8-bit levels) | T1, single 2D slice |
| mr-slice-64 | pydicom `MR_small.dcm` (64x64) | T1 SE, single 2D slice |

Rician noise at sigma = 3/6/9% of the 99.9th percentile is added to each scan (the scan's own noise
stays in the reference, so a method that also removes it is penalised: the own floor is printed).
Baselines get the true added sigma; restore estimates sigma itself (and, in the `true sigma` row,
is given it). PSNR/SSIM inside the reference's head mask.

    .venv/bin/python bench/mri_real.py --part quality            # the per-scan table (~10 min)
    .venv/bin/python bench/mri_real.py --part lesions            # lesion contrast kept
    .venv/bin/python bench/mri_real.py --part sigma              # noise-estimate stability
    .venv/bin/python bench/mri_real.py --part uncertainty        # is the --samples std map calibrated?
    .venv/bin/python bench/mri_real.py --part quality --scans t1-2mm-small --sigmas 6 --only restore

Needs the bench extra (``make bench-deps``: bm4d, dipy, pydicom).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from restore.metrics.image import head_mask, psnr, ssim
from restore.mri.noise import add_rician_noise, estimate_rician_sigma

SIGMAS = (3.0, 6.0, 9.0)


@dataclass(frozen=True)
class Scan:
    name: str
    klass: str
    data: np.ndarray  # (X, Y, Z) float32, Z = 1 for single slices
    zooms: tuple[float, float, float]


def _site(package: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{package} is not installed: make bench-deps")
    return Path(spec.origin).parent


def _nifti(path: Path, volume: int | None = None) -> tuple[np.ndarray, tuple[float, float, float]]:
    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4:
        data = data[..., volume or 0]
    return np.clip(data, 0, None), tuple(float(z) for z in img.header.get_zooms()[:3])


def real_scans(names: list[str] | None = None) -> list[Scan]:
    """The held-out single-subject scans (see the module docstring)."""
    nib_data, dipy_data = _site("nibabel") / "tests" / "data", _site("dipy") / "data" / "files"
    scans = []

    def add(name: str, klass: str, load) -> None:
        if names is None or name in names:
            data, zooms = load()
            scans.append(Scan(name, klass, data.astype(np.float32), zooms))

    add("t1-2mm-small", "T1 2 mm, small 3D", lambda: _nifti(nib_data / "anatomical.nii"))
    add("t2-4x4x5mm", "T2-like 4x4x5 mm", lambda: _nifti(dipy_data / "aniso_vox.nii.gz"))
    add("b0-2x2x53mm", "T2-like, 10 thick slices", lambda: _nifti(dipy_data / "S0_10slices.nii.gz"))
    add("epi-2mm", "T2* EPI 2 mm", lambda: _nifti(nib_data / "example4d.nii.gz"))
    add("t1-slice-256", "T1 2D slice, 8-bit", lambda: (np.load(dipy_data / "t1_coronal_slice.npy")[:, :, None] * 255,
                                                         (1.0, 1.0, 1.0)))

    def mr_small():
        import pydicom

        ds = pydicom.dcmread(_site("pydicom") / "data" / "test_files" / "MR_small.dcm")
        px = [float(v) for v in ds.PixelSpacing]
        return ds.pixel_array.astype(np.float32)[:, :, None], (px[0], px[1], float(ds.SliceThickness))

    add("mr-slice-64", "T1 2D slice, 64x64", mr_small)
    return scans


def noisy_copy(scan: Scan, pct: float, seed: int) -> tuple[np.ndarray, float]:
    sigma = pct / 100 * float(np.percentile(scan.data, 99.9))
    return add_rician_noise(scan.data, sigma, np.random.default_rng(seed)), sigma


def run_restore(noisy: np.ndarray, zooms, *, sigma: float | None = None, **options) -> tuple[np.ndarray, dict]:
    """``restore mri`` through the library (the model stays loaded between calls)."""
    from restore.mri.pipeline import restore_nifti

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "noisy.nii.gz", Path(tmp) / "out.nii.gz"
        nib.save(nib.Nifti1Image(noisy, np.diag([*zooms, 1.0])), src)
        record = restore_nifti(src, dst, sigma=sigma, progress=False, task="denoise", **options)
        return np.asarray(nib.load(dst).dataobj, dtype=np.float32), record


def run_bm4d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    import bm4d

    out = np.asarray(bm4d.bm4d(noisy, sigma), dtype=np.float32).reshape(noisy.shape)
    return np.sqrt(np.maximum(out**2 - sigma**2, 0))  # first-order Rician bias correction


def run_nlmeans(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from dipy.denoise.nlmeans import nlmeans

    if noisy.shape[2] < 3:  # DIPY's 3D patches need depth: repeat the slice and take the middle
        out = nlmeans(np.repeat(noisy, 3, axis=2), sigma, rician=True, method="classic", num_threads=2)
        return out[:, :, 1:2]
    return nlmeans(noisy, sigma, rician=True, method="classic", num_threads=2)


def quality(scans: list[Scan], sigmas, only) -> None:
    print("| scan | class | sigma % | method | PSNR head | SSIM head | s |")
    print("|---|---|---|---|---|---|---|")
    for scan in scans:
        mask = head_mask(scan.data)
        rng_range = float(scan.data.max())
        for pct in sigmas:
            noisy, sigma = noisy_copy(scan, pct, seed=int(pct * 100))
            rows = [("noisy", lambda y, s, z: y)]
            if "bm4d" in only:
                rows.append(("BM4D (true sigma)", lambda y, s, z: run_bm4d(y, s)))
            if "bm4d-est" in only:  # the sigma restore estimates (added + the scan's own noise)
                rows.append(("BM4D (restore's sigma)", lambda y, s, z: run_bm4d(y, estimate_rician_sigma(y).sigma)))
            if "nlmeans" in only:
                rows.append(("NL-means (true sigma)", lambda y, s, z: run_nlmeans(y, s)))
            if "restore" in only:
                rows.append(("restore", lambda y, s, z: run_restore(y, z)[0]))
                rows.append(("restore (true sigma)", lambda y, s, z: run_restore(y, z, sigma=s)[0]))
            for name, fn in rows:
                t0 = time.perf_counter()
                out = fn(noisy, sigma, scan.zooms)
                dt = time.perf_counter() - t0
                p = psnr(scan.data, out, mask=mask, data_range=rng_range)
                s = ssim(scan.data, out, mask=mask, data_range=rng_range)
                print(f"| {scan.name} | {scan.klass} | {pct:g} | {name} | {p:.2f} | {s:.4f} | {dt:.1f} |", flush=True)


def place_lesions(scan: Scan, *, count: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """``scan.data`` with ``count`` small spheres of +-20-25% contrast in tissue, and their masks.
    Radius 1.5-2 voxels in-plane (3-4 voxels across), scaled through-plane by the voxel size."""
    rng = np.random.default_rng(seed)
    data = scan.data
    tissue = data > 0.3 * np.percentile(data, 99)
    inner = ndimage.binary_erosion(tissue, structure=np.ones((7, 7, 1), bool))
    candidates = np.argwhere(inner)
    rng.shuffle(candidates)
    grid = np.indices(data.shape).astype(np.float32)
    out, masks, centres = data.copy(), [], []
    for c in candidates:
        if len(masks) == count:
            break
        if any(np.abs(c - o)[:2].max() < 8 and abs(c[2] - o[2]) <= 2 for o in centres):
            continue
        r = rng.uniform(1.5, 2.0)
        rz = max(0.5, r * scan.zooms[0] / scan.zooms[2]) if data.shape[2] > 1 else 0.5
        d2 = ((grid[0] - c[0]) / r) ** 2 + ((grid[1] - c[1]) / r) ** 2 + ((grid[2] - c[2]) / rz) ** 2
        m = d2 <= 1
        sign = 1 if len(masks) % 2 == 0 else -1
        out[m] = data[m] * (1 + sign * rng.uniform(0.2, 0.25))
        masks.append(m)
        centres.append(c)
    return out, masks


def lesions(scans: list[Scan], sigmas, only) -> None:
    """Contrast kept: each method runs on the scan with and without lesions under the *same* noise
    draw; kept = sum over the lesion of (out_with - out_without) / (clean_with - clean_without)."""
    print("| scan | sigma % | lesions | method | kept (median) | kept (min) | kept (10th pct) |")
    print("|---|---|---|---|---|---|---|")
    for scan in scans:
        with_lesions, masks = place_lesions(scan, count=14, seed=1)
        if not masks:
            continue
        for pct in sigmas:
            sigma = pct / 100 * float(np.percentile(scan.data, 99.9))
            rng = np.random.default_rng(int(pct * 100))
            n1, n2 = (rng.standard_normal(scan.data.shape).astype(np.float32) * sigma for _ in range(2))
            noisy = [np.sqrt((x + n1) ** 2 + n2**2) for x in (scan.data, with_lesions)]
            methods = [("noisy", lambda y, s, z: y)]
            if "bm4d" in only:
                methods.append(("BM4D", lambda y, s, z: run_bm4d(y, s)))
            if "restore" in only:
                methods.append(("restore", lambda y, s, z: run_restore(y, z)[0]))
            for name, fn in methods:
                base, les = (fn(y, sigma, scan.zooms) for y in noisy)
                kept = [float((les[m] - base[m]).sum() / (with_lesions[m] - scan.data[m]).sum()) for m in masks]
                print(f"| {scan.name} | {pct:g} | {len(masks)} | {name} | {np.median(kept):.2f} | {min(kept):.2f} | "
                      f"{np.percentile(kept, 10):.2f} |", flush=True)


def uncertainty(scans: list[Scan], sigmas, samples: int) -> None:
    """Is the ``--samples`` std map calibrated? Share of head voxels whose error against the
    reference is within 2 map values, and the medians of map and error."""
    print("| scan | sigma % | map | within 2 map | median map | median error |")
    print("|---|---|---|---|---|---|")
    for scan in scans:
        mask = head_mask(scan.data)
        for pct in sigmas:
            noisy, _ = noisy_copy(scan, pct, seed=int(pct * 100))
            with tempfile.TemporaryDirectory() as tmp:
                from restore.mri.pipeline import restore_nifti

                src, dst = Path(tmp) / "noisy.nii.gz", Path(tmp) / "out.nii.gz"
                nib.save(nib.Nifti1Image(noisy, np.diag([*scan.zooms, 1.0])), src)
                record = restore_nifti(src, dst, samples=samples, progress=False, task="denoise")
                out = np.asarray(nib.load(dst).dataobj, dtype=np.float32)
                std = np.asarray(nib.load(Path(tmp) / "out_std.nii.gz").dataobj, dtype=np.float32)
            err = np.abs(out - scan.data)[mask]
            within = float((err <= 2 * std[mask]).mean())
            print(f"| {scan.name} | {pct:g} | {record['metrics'].get('std_map')} | {within:.3f} | "
                  f"{np.median(std[mask]):.4g} | {np.median(err):.4g} |", flush=True)


def sigma_stability(scans: list[Scan], sigmas, draws: int) -> None:
    """Estimated / true sigma over ``draws`` noise draws, on the whole scan and on its head box
    (little background). The scan's own floor (estimate on the clean scan) is in the true sigma:
    sqrt(own^2 + added^2)."""
    print("| scan | view | own floor % | sigma % | est/true min | median | max | within 10% |")
    print("|---|---|---|---|---|---|---|---|")
    for scan in scans:
        box = tuple(slice(max(0, i.min() - 1), i.max() + 2) for i in np.nonzero(head_mask(scan.data)))
        for view, data in (("whole", scan.data), ("head box", scan.data[box])):
            own = estimate_rician_sigma(data).sigma
            p999 = float(np.percentile(scan.data, 99.9))
            for pct in sigmas:
                sigma = pct / 100 * p999
                true = float(np.hypot(sigma, own))
                ratios = [estimate_rician_sigma(add_rician_noise(data, sigma, np.random.default_rng(d))).sigma / true
                          for d in range(draws)]
                within = sum(abs(r - 1) <= 0.1 for r in ratios)
                print(f"| {scan.name} | {view} | {100 * own / p999:.2f} | {pct:g} | {min(ratios):.3f} | "
                      f"{np.median(ratios):.3f} | {max(ratios):.3f} | {within}/{draws} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["quality", "lesions", "sigma", "uncertainty"], default="quality")
    ap.add_argument("--samples", type=int, default=4, help="posterior samples (--part uncertainty)")
    ap.add_argument("--scans", nargs="+", help="scan names (default: all)")
    ap.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS), help="percent of p99.9")
    ap.add_argument("--only", nargs="+", choices=["bm4d", "bm4d-est", "nlmeans", "restore"],
                    default=["bm4d", "nlmeans", "restore"])
    ap.add_argument("--draws", type=int, default=20, help="noise draws per cell (--part sigma)")
    args = ap.parse_args()
    scans = real_scans(args.scans)
    if args.part == "quality":
        quality(scans, args.sigmas, args.only)
    elif args.part == "lesions":
        lesions(scans, args.sigmas, args.only)
    elif args.part == "uncertainty":
        uncertainty(scans, args.sigmas, args.samples)
    else:
        sigma_stability(scans, args.sigmas if args.sigmas != list(SIGMAS) else [3, 6, 9, 12, 15], args.draws)
    return 0


if __name__ == "__main__":
    sys.exit(main())
