"""MRI denoising benchmark on a held-out volume: restore vs BM4D vs DIPY NL-means.

Held-out data: the MNI152 2009 T1 template inside nilearn (never used in training), cropped to
181 x 217 x 181 (the size of the issue's timing bar). Rician noise at sigma = 3/6/9% of the
99.9th percentile. Baselines get the true sigma; restore estimates it itself and runs as a whole
separate process (``restore mri``), so its time includes start-up, loading and writing.

    .venv/bin/python bench/mri_denoise.py                  # full table (slow: BM4D takes minutes)
    .venv/bin/python bench/mri_denoise.py --slices 48      # quicker: 48 axial slices
    .venv/bin/python bench/mri_denoise.py --only restore --steps 1 2 4 --fp32   # choose defaults

Needs the bench extra: ``make bench-deps`` (bm4d, dipy).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from restore.metrics.image import head_mask, psnr, ssim
from restore.mri.data import load_source
from restore.mri.noise import add_rician_noise

ROOT = Path(__file__).resolve().parents[1]


def held_out_volume(slices: int | None) -> np.ndarray:
    data, _ = load_source("nilearn:mni152")  # 197 x 233 x 189, scaled to p99 = 1
    x0, y0, z0 = [(n - m) // 2 for n, m in zip(data.shape, (181, 217, 181))]
    vol = data[x0 : x0 + 181, y0 : y0 + 217, z0 : z0 + 181] * 1000
    if slices:
        mid = vol.shape[2] // 2
        vol = vol[:, :, mid - slices // 2 : mid - slices // 2 + slices]
    return vol.astype(np.float32)


def run_bm4d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    import bm4d

    out = bm4d.bm4d(noisy, sigma)
    return np.sqrt(np.maximum(out**2 - sigma**2, 0))  # first-order Rician bias correction


def run_nlmeans(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from dipy.denoise.nlmeans import nlmeans

    return nlmeans(noisy, sigma, rician=True, method="classic", num_threads=2)


def run_restore(noisy: np.ndarray, steps: int, fp32: bool, model: Path | None = None, orientations: int = 1,
                refine: bool = True) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "noisy.nii.gz", Path(tmp) / "out.nii.gz"
        nib.save(nib.Nifti1Image(noisy, np.eye(4)), src)
        cmd = [str(ROOT / ".venv/bin/restore"), "mri", str(src), "-o", str(dst), "--quiet", "--steps", str(steps),
               "--orientations", str(orientations)] + (["--fp32"] if fp32 else []) + ([] if refine else ["--no-refine"]) + (["--model", str(model)] if model else [])
        subprocess.run(cmd, check=True)
        return np.asarray(nib.load(dst).dataobj, dtype=np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, help="use only this many central axial slices")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[3, 6, 9], help="percent of p99.9")
    ap.add_argument("--only", nargs="+", choices=["bm4d", "nlmeans", "restore"])
    ap.add_argument("--steps", type=int, nargs="+", default=[2], help="restore reverse steps to try")
    ap.add_argument("--fp32", action="store_true", help="also run restore without bf16")
    ap.add_argument("--model", type=Path, help="restore weights to test (default: the shipped model)")
    ap.add_argument("--orientations", type=int, default=1, choices=[1, 3], help="restore's --orientations")
    ap.add_argument("--no-refine", action="store_true", help="restore's --no-refine (diffusion stage only)")
    args = ap.parse_args()
    clean = held_out_volume(args.slices)
    mask = head_mask(clean)
    data_range = float(clean.max())
    methods = args.only or ["bm4d", "nlmeans", "restore"]
    print(f"held-out MNI152 T1, {clean.shape}, head mask {mask.mean():.0%} of voxels", flush=True)
    print("| sigma (% p99.9) | method | PSNR head (dB) | SSIM head | time (s) |")
    print("|---|---|---|---|---|")
    for pct in args.sigmas:
        sigma = pct / 100 * float(np.percentile(clean, 99.9))
        noisy = add_rician_noise(clean, sigma, np.random.default_rng(int(pct * 100)))
        rows = [("noisy input", lambda noisy=noisy: noisy)]
        if "bm4d" in methods:
            rows.append(("BM4D (true sigma, bias-corrected)", lambda noisy=noisy, sigma=sigma: run_bm4d(noisy, sigma)))
        if "nlmeans" in methods:
            rows.append(("DIPY NL-means classic (true sigma, rician)", lambda noisy=noisy, sigma=sigma: run_nlmeans(noisy, sigma)))
        if "restore" in methods:
            for k in args.steps:
                for fp32 in ([False, True] if args.fp32 else [False]):
                    label = (f"restore K={k}{' fp32' if fp32 else ''}{' x3 orientations' if args.orientations == 3 else ''}"
                             f"{' no refine' if args.no_refine else ''} (estimates sigma; whole process)")
                    rows.append((label, lambda k=k, fp32=fp32, noisy=noisy: run_restore(
                        noisy, k, fp32, args.model, args.orientations, not args.no_refine)))
        for name, fn in rows:
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
            p = psnr(clean, out, mask=mask, data_range=data_range)
            s = ssim(clean, out, mask=mask, data_range=data_range)
            print(f"| {pct:g} | {name} | {p:.2f} | {s:.4f} | {dt:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
