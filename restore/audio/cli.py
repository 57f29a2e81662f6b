"""``restore audio INPUT -o OUTPUT [--task auto|denoise|fill|declip] [--gaps A-B,...] [--reference REF]
[--strength X] [--steps K] [--seed S]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "audio",
        help="denoise, fill gaps and declip a recording (WAV/FLAC/OGG/MP3, any rate, mono or stereo)",
        description="Restore INPUT into OUTPUT (same format, rate, channels and subtype) with a JSON sidecar "
                    "next to it (out.wav -> out.json) holding the detected gaps and clipped runs, metrics, t*, "
                    "steps, model versions and seed. --task auto fills dropouts, NaN runs and --gaps, declips "
                    "clipped runs, and denoises when the recording is noisy.",
    )
    p.add_argument("input", type=Path, metavar="INPUT")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT")
    p.add_argument("--task", choices=["auto", "denoise", "fill", "declip"], default="auto",
                   help="auto (default): fill + declip what is detected, denoise if noisy; fill and declip change "
                        "only the detected samples")
    p.add_argument("--gaps", default=None, metavar="A-B,...",
                   help="gaps to fill, in seconds, e.g. 1.20-1.35,4.00-4.10 (all channels)")
    p.add_argument("--reference", type=Path, metavar="REF", help="clean reference: adds SI-SDR, PESQ-WB, ESTOI, LSD")
    p.add_argument("--strength", type=float, default=1.0, help="scales the estimated noise level, 0..4 (default 1)")
    p.add_argument("--steps", type=int, default=None, help="reverse diffusion steps (default: the model card's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the diffusion noise (default 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from restore.audio.pipeline import restore_audio

    record = restore_audio(
        args.input, args.output, reference=args.reference, task=args.task, gaps_marked=args.gaps,
        strength=args.strength, steps=args.steps,
        seed=args.seed, device=args.device, overwrite=args.overwrite, progress=not args.quiet,
    )
    if not args.quiet:
        m = record["metrics"]
        regions = record["regions"]
        parts = [f"{n} {kind}" for kind, n in regions["counts"].items() if n]
        line = f"wrote {record['output']}: "
        line += f"filled {', '.join(parts)} ({regions['filled_seconds']:.3f} s)" if parts else "no gaps or clipping"
        if regions["low_confidence"]:
            line += f", {regions['low_confidence']} low-confidence (> 300 ms)"
        if record["params"]["denoised"]:
            line += (f"; denoised, estimated SNR {m['estimated_snr_db_before']:.1f} -> "
                     f"{m['estimated_snr_db_after']:.1f} dB, t* median {record['params']['t_star']['median']:.0f}")
        line += f"; {record['timing']['seconds']:.1f} s"
        if "reference" in m:
            out = m["reference"]["output"]
            line += f"; SI-SDR {out['si_sdr_db']:.1f} dB, PESQ-WB {out['pesq_wb']:.2f}, ESTOI {out['estoi']:.2f}"
        print(line)
    return 0

