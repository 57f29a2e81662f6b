"""Missing-slice filling on the held-out volume: restore vs linear and cubic interpolation.

Held-out MNI152 T1 (nilearn; never trained on), 181 x 217 x 181, with every 7th axial slice
missing plus some pairs and a triple; optional Rician noise on the known slices. PSNR is computed
over the filled slices inside the head mask. restore runs as a whole process (``restore mri
--task fill``), so its time includes start-up, loading and writing.

    .venv/bin/python bench/mri_fill.py [--sigma 0 3] [--slices 64]
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
from scipy.interpolate import CubicSpline

from restore.metrics.image import head_mask, psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mri_denoise import ROOT, held_out_volume

from restore.mri.fill import interpolate_missing
from restore.mri.noise import add_rician_noise


def missing_pattern(n: int) -> list[int]:
    every7 = set(range(6, n, 7))
    pairs = {k for start in range(20, n - 2, 45) for k in (start, start + 1)}
    triple = {n // 2 + 3, n // 2 + 4, n // 2 + 5}
    return sorted(k for k in every7 | pairs | triple if 0 < k < n - 1)


def cubic(vol: np.ndarray, known: np.ndarray) -> np.ndarray:
    z = np.flatnonzero(known)
    spline = CubicSpline(z, vol[:, :, z], axis=2)
    out = vol.copy()
    out[:, :, ~known] = spline(np.flatnonzero(~known))
    return out


def run_restore(gappy: np.ndarray, missing: list[int]) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "gappy.nii.gz", Path(tmp) / "out.nii.gz"
        nib.save(nib.Nifti1Image(gappy, np.eye(4)), src)
        cmd = [str(ROOT / ".venv/bin/restore"), "mri", str(src), "-o", str(dst), "--quiet", "--task", "fill",
               "--missing-slices", ",".join(map(str, missing))]
        subprocess.run(cmd, check=True)
        return np.asarray(nib.load(dst).dataobj, dtype=np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sigma", type=float, nargs="+", default=[0, 3], help="Rician noise, percent of p99.9")
    ap.add_argument("--slices", type=int, help="use only this many central axial slices")
    args = ap.parse_args()
    clean = held_out_volume(args.slices)
    n = clean.shape[2]
    missing = missing_pattern(n)
    known = np.ones(n, bool)
    known[missing] = False
    sel = head_mask(clean) & ~known[None, None, :]
    data_range = float(clean.max())
    print(f"held-out MNI152, {clean.shape}, {len(missing)} missing slices (every 7th, pairs, a triple)")
    print("| noise (% p99.9) | method | PSNR filled slices (dB) | time (s) |")
    print("|---|---|---|---|")
    for pct in args.sigma:
        sigma = pct / 100 * float(np.percentile(clean, 99.9))
        vol = add_rician_noise(clean, sigma, np.random.default_rng(7)) if sigma > 0 else clean.copy()
        gappy = vol.copy()
        gappy[:, :, missing] = 0
        rows = [
            ("linear interpolation", lambda vol=vol: np.moveaxis(interpolate_missing(np.moveaxis(vol, 2, 0), known), 0, 2)),
            ("cubic interpolation", lambda vol=vol: cubic(vol, known)),
            ("restore --task fill (whole process)", lambda gappy=gappy: run_restore(gappy, missing)),
        ]
        outputs = {}
        for name, fn in rows:
            t0 = time.perf_counter()
            out = outputs[name] = fn()
            dt = time.perf_counter() - t0
            print(f"| {pct:g} | {name} | {psnr(clean, out, mask=sel, data_range=data_range):.2f} | {dt:.1f} |",
                  flush=True)
        same = np.array_equal(outputs[rows[-1][0]][:, :, known], gappy[:, :, known])
        print(f"| {pct:g} | restore: known slices bit-identical to the input | {'yes' if same else 'NO'} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
