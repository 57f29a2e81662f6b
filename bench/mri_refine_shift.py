"""Choosing the refinement's flat-top shift (``restore.mri.refine.PILOT_SHIFT``) on training volumes.

The shift was chosen here, on the Debian ``mricron-data`` volumes (Colin27 and the INIA19 macaque),
not on the held-out MNI152 of ``bench/mri_denoise.py``: each volume gets Rician noise at 3/6/9% of
its 99.9th percentile (seed pct * 100 + 1), is denoised once by the shipped model (one orientation,
as ``restore mri`` does by default), and is refined with each shift (the per-class ``h`` chosen by
the usual recorrupted score). PSNR/SSIM are in the head mask, against the clean volume.

    .venv/bin/python bench/mri_refine_shift.py                          # ~15 minutes on 2 cores
    .venv/bin/python bench/mri_refine_shift.py --volumes inia19-t1-brain.nii.gz --sigmas 3 --shifts 0 0.05

Colin27 and the macaque are in the diffusion model's training data; the shift is a choice of the
refinement stage, which did not see them.
"""

from __future__ import annotations

import argparse
import functools
import sys

import numpy as np

from restore.device import set_threads
from restore.metrics.image import head_mask, psnr, ssim
from restore.mri.data import load_source
from restore.mri.denoise import denoise_orientations
from restore.mri.noise import add_rician_noise, estimate_rician_sigma
from restore.mri.pipeline import DEFAULT_MODEL, DEFAULT_STEPS, _pilot_fn, cached_model
from restore.mri.refine import nonlocal_refine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--volumes", nargs="+", default=["ch2.nii.gz", "inia19-t1-brain.nii.gz"],
                    help="files under /usr/share/mricron/templates")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[3, 6, 9], help="percent of p99.9")
    ap.add_argument("--shifts", type=float, nargs="+", default=[0, 0.025, 0.05, 0.1], help="x sigma^2")
    args = ap.parse_args()
    set_threads()
    model = cached_model(str(DEFAULT_MODEL), "cpu").model
    denoise = functools.partial(denoise_orientations, model=model, axes=[2], steps=DEFAULT_STEPS, seed=0, bf16=True,
                                strength=1.0)
    pilot_fn = _pilot_fn(denoise, True)  # as restore mri builds it: one orientation, magnitudes kept >= 0
    print("| volume | sigma % | shift (x sigma^2) | h per class | PSNR head | SSIM head |")
    print("|---|---|---|---|---|---|")
    for name in args.volumes:
        clean = load_source(f"mricron:{name}")[0] * 1000
        mask, data_range = head_mask(clean), float(clean.max())
        for pct in args.sigmas:
            sigma = pct / 100 * float(np.percentile(clean, 99.9))
            noisy = add_rician_noise(clean, sigma, np.random.default_rng(int(pct * 100) + 1)).astype(np.float32)
            s = estimate_rician_sigma(noisy).sigma
            pilot = pilot_fn(noisy, s)
            print(f"| {name} | {pct:g} | pilot | - | {psnr(clean, pilot, mask=mask, data_range=data_range):.3f} | "
                  f"{ssim(clean, pilot, mask=mask, data_range=data_range):.5f} |", flush=True)
            for shift in args.shifts:
                out = nonlocal_refine(noisy, pilot, s, pilot_fn=pilot_fn, shift=shift)
                print(f"| {name} | {pct:g} | {shift:g} | {', '.join(f'{h:g}' for h in out.h)} | "
                      f"{psnr(clean, out.data, mask=mask, data_range=data_range):.3f} | "
                      f"{ssim(clean, out.data, mask=mask, data_range=data_range):.5f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
