"""``restore mri INPUT -o OUTPUT ...``"""

from __future__ import annotations

import argparse
from pathlib import Path

from restore.outputs import sidecar_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mri", help="restore a noisy NIfTI volume or DICOM series (3D or 4D)",
                       description="Denoise a NIfTI volume or DICOM series with the 2.5D conditional diffusion model.")
    p.add_argument("input", type=Path, help="input .nii/.nii.gz, DICOM series folder or DICOM file (never modified)")
    p.add_argument("-o", "--output", required=True,
                   help="output .nii/.nii.gz, or DIR/ for a DICOM series (DICOM input); sidecar goes to OUTPUT.json")
    p.add_argument("--output-format", default="auto", choices=["auto", "nifti", "dicom"],
                   help="auto: NIfTI, or DICOM for a DICOM input and an output without .nii/.nii.gz (default)")
    p.add_argument("--reference", type=Path, help="clean reference volume: adds PSNR/SSIM/NRMSE to the sidecar")
    p.add_argument("--sigma", type=float, help="noise sigma in the input's units (default: estimated)")
    p.add_argument("--steps", type=int, help="reverse diffusion steps (default: 1)")
    p.add_argument("--samples", type=int, default=1, help="posterior samples to average; >1 also writes OUTPUT_std")
    p.add_argument("--orientations", type=int, default=1, choices=[1, 3],
                   help="3: also restore along the other two axes and average (+0.1 dB measured after refinement, ~2x the time)")
    p.add_argument("--no-refine", action="store_true",
                   help="skip the non-local stage that follows the diffusion denoiser (faster, ~2 dB lower PSNR)")
    p.add_argument("--no-guard", action="store_true",
                   help="skip giving back removed structure where the residual is not noise (lesion guard)")
    p.add_argument("--strength", type=float, default=1.0, help="scale the noise level that sets t* (default 1)")
    p.add_argument("--task", default="auto", choices=["auto", "denoise", "fill"],
                   help="auto: fill missing/corrupted slices, then denoise (default); fill: only fill")
    p.add_argument("--missing-slices", type=_index_list, help="slices to fill, e.g. 12,13,40 (added to those detected)")
    p.add_argument("--slice-axis", type=int, default=2, choices=[0, 1, 2], help="axis of the 2D slices (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", choices=["float32"], help="write float32 instead of the input's dtype")
    p.add_argument("--fp32", action="store_true", help="disable bf16 autocast on CPU")
    p.add_argument("--model", type=Path, help="weights (.safetensors with its .json card)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)


def _index_list(text: str) -> list[int]:
    try:
        return sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated slice numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from restore.mri.pipeline import restore_nifti, summary_lines

    record = restore_nifti(
        args.input, args.output, reference=args.reference, sigma=args.sigma, steps=args.steps,
        samples=args.samples, strength=args.strength, orientations=args.orientations,
        refine=not args.no_refine, guard=not args.no_guard, seed=args.seed, device=args.device,
        bf16=False if args.fp32 else None, dtype=args.dtype, slice_axis=args.slice_axis, task=args.task,
        missing_slices=args.missing_slices, output_format=args.output_format,
        overwrite=args.overwrite, progress=not args.quiet, model_path=args.model,
    )
    if not args.quiet:
        print("\n".join(summary_lines(record)))
        print(f"metrics: {sidecar_path(args.output)}")
    return 0
