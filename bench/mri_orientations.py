"""What ``--orientations 3`` gains over one orientation, on the whole held-out volume, per axial slab.

The held-out MNI152 volume (181 x 217 x 181, as in ``bench/mri_denoise.py``) is restored whole,
once along the axial axis and once along all three axes (averaged), at Rician noise of 3/6/9% of
the 99.9th percentile (own noise seeds, not the benchmark's), with the estimated sigma and the
shipped model, in this process. PSNR in the head mask is then reported for the lower, central
(the benchmark's 64 slices) and upper slabs and the whole volume.

Restoring the whole volume matters: a cropped slab cuts every sagittal and coronal slice at the
crop, so sagittal/coronal passes on a crop see a false edge that a real scan does not have.

    .venv/bin/python bench/mri_orientations.py     # ~4 minutes on 2 cores
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from mri_denoise import held_out_volume

from restore.device import set_threads
from restore.metrics.image import head_mask, psnr
from restore.mri.denoise import denoise_orientations
from restore.mri.noise import add_rician_noise, estimate_rician_sigma
from restore.mri.pipeline import DEFAULT_MODEL, cached_model

SLABS = {"z 0-57 (lower)": slice(0, 58), "z 58-121 (bench slices)": slice(58, 122),
         "z 122-180 (upper)": slice(122, 181), "whole volume": slice(0, 181)}


def main() -> int:
    set_threads()
    vol = held_out_volume(None)
    model = cached_model(str(DEFAULT_MODEL), "cpu").model
    p999 = float(np.percentile(vol, 99.9))
    print(f"held-out MNI152 T1, {vol.shape}, torch threads {torch.get_num_threads()}")
    print("| sigma (% p99.9) | slab | 1 orientation (dB) | 3 orientations (dB) | gain (dB) |")
    print("|---|---|---|---|---|")
    timings = []
    for pct in (3, 6, 9):
        noisy = add_rician_noise(vol, pct / 100 * p999, np.random.default_rng(7 + pct)).astype(np.float32)
        sigma = estimate_rician_sigma(noisy).sigma
        outs = []
        for axes in ([2], [2, 0, 1]):
            tick = time.perf_counter()
            outs.append(np.maximum(denoise_orientations(noisy, sigma, model, axes=axes, steps=1).data, 0))
            timings.append((pct, len(axes), time.perf_counter() - tick))
        for name, sl in SLABS.items():
            clean = vol[:, :, sl]
            mask = head_mask(clean)
            one, three = (psnr(clean, o[:, :, sl], mask=mask, data_range=float(vol.max())) for o in outs)
            print(f"| {pct} | {name} | {one:.2f} | {three:.2f} | {three - one:+.2f} |", flush=True)
    for pct, n, seconds in timings:
        print(f"sigma {pct}%: {n} orientation(s) {seconds:.1f} s (denoising only, in process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
