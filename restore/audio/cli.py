"""``restore audio INPUT -o OUTPUT [--reference REF] [--strength X] [--steps K] [--seed S]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "audio",
        help="denoise a speech recording (WAV/FLAC/OGG/MP3, any rate, mono or stereo)",
        description="Denoise INPUT into OUTPUT (same format, rate, channels and subtype) with a JSON sidecar "
                    "next to it (out.wav -> out.json) holding metrics, t*, steps, model version and seed.",
    )
    p.add_argument("input", type=Path, metavar="INPUT")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT")
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
        args.input, args.output, reference=args.reference, strength=args.strength, steps=args.steps,
        seed=args.seed, device=args.device, overwrite=args.overwrite, progress=not args.quiet,
    )
    if not args.quiet:
        m = record["metrics"]
        line = (f"wrote {record['output']}: estimated SNR {m['estimated_snr_db_before']:.1f} -> "
                f"{m['estimated_snr_db_after']:.1f} dB, t* median {record['params']['t_star']['median']:.0f}, "
                f"{record['timing']['seconds']:.1f} s")
        if "reference" in m:
            out = m["reference"]["output"]
            line += f"; SI-SDR {out['si_sdr_db']:.1f} dB, PESQ-WB {out['pesq_wb']:.2f}, ESTOI {out['estoi']:.2f}"
        print(line)
    return 0

