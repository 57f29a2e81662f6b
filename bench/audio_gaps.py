"""Gap filling and declipping on held-out speech and music: restore vs zero fill vs Janssen AR.

    .venv/bin/python bench/audio_gaps.py [--n 12] [--steps K] [--fill-sigma S] [--taper-ms T] [--highpass-hz H]
                                         [--split val|train] [--weights W] [--no-declip]

Data: ``restore data prepare`` output (``data/audio``): the held-out Russian Asterisk speaker
(``val_speech``) and the held-out music tracks (``val_music``, :data:`restore.audio.data.VAL_MUSIC`),
never seen in training. For each kind and gap length (20/50/100/200 ms) ``--n`` gaps are placed in
active parts of different crops (the loudest of 6 random positions); every method fills the same
gap from the same 0.5 s of context on each side, as ``restore audio`` does:

- zero fill: the dropout left as it is;
- AR: least-squares AR interpolation (Janssen et al. 1986), order 128, 3 re-fits (:mod:`restore.audio.ar`);
- AR guess: restore's first guess (``fill_samples`` without a model: the mean of local order-1024
  and order-512 fits, :data:`restore.audio.inpaint.GAP_AR_MEMBERS`), so the table shows what the
  better predictor gives and what the network adds on top;
- restore: the shipped inpainting model (AR first guess refined by the diffusion model).

SNR is over the gap samples, LSD over the STFT frames that overlap the gap (both averaged over
the gaps). The declipping table clips 2 s crops at 0.2/0.4/0.6 of their peak and reports SDR
against the clean crop for the clipped input, consistent LSAR declipping (:func:`restore.audio.ar.declip`)
and restore. Last, the whole process: ``restore audio --task fill`` on a 10 s file with 10 gaps.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from restore.audio import ar
from restore.audio.config import InpaintConfig
from restore.audio.inpaint import (
    CARD_CHOICES,
    DEFAULT_WEIGHTS,
    fill_samples,
    load_inpaint_model,
)
from restore.audio.metrics import gap_lsd, gap_snr
from restore.audio.train_inpaint import Examples, place_gap
from restore.device import single_threaded_blas

SR = 16_000
GAPS_MS = (20, 50, 100, 200)
CLIP_LEVELS = (0.2, 0.4, 0.6)
CONTEXT = int(0.5 * SR)


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    err = reference - estimate
    return float(10 * np.log10(np.dot(reference, reference) / max(np.dot(err, err), 1e-20)))


def gap_table(examples: Examples, model, n: int, steps: int | None, seed: int) -> list[tuple]:
    rows = []
    rng = np.random.default_rng(seed)
    for music in (False, True):
        for ms in GAPS_MS:
            length = int(ms * SR / 1000)
            scores: dict[str, list] = {"zero": [], "ar": [], "guess": [], "restore": []}
            times: dict[str, float] = {"ar": 0.0, "restore": 0.0}
            for i in range(n):
                x = examples.signal(2 * CONTEXT + length + 2 * 1600, music=music).astype(np.float64)
                start = place_gap(x, length, rng, CONTEXT)
                window = x[start - CONTEXT : start + length + CONTEXT]
                known = np.ones(window.size, bool)
                known[CONTEXT : CONTEXT + length] = False
                observed = np.where(known, window, 0.0)
                tick = time.perf_counter()
                filled_ar = ar.interpolate(observed, known, order=128, iterations=3)
                times["ar"] += time.perf_counter() - tick
                tick = time.perf_counter()
                filled = fill_samples(model, observed, known, generator=torch.Generator().manual_seed(i), steps=steps)
                times["restore"] += time.perf_counter() - tick
                guess = fill_samples(None, observed, known)
                for name, est in (("zero", observed), ("ar", filled_ar), ("guess", guess), ("restore", filled)):
                    scores[name].append((gap_snr(window, est, CONTEXT, CONTEXT + length),
                                         gap_lsd(window, est, CONTEXT, CONTEXT + length, SR)))
            mean = {k: np.mean(v, axis=0) for k, v in scores.items()}
            rows.append(("music" if music else "speech", ms, mean, {k: v / n for k, v in times.items()}))
    return rows


def declip_table(examples: Examples, model, n: int, seed: int) -> list[tuple]:
    rows = []
    for music in (False, True):
        for level in CLIP_LEVELS:
            out: dict[str, list] = {"clipped": [], "ar": [], "restore": []}
            for i in range(n):
                x = examples.signal(2 * SR, music=music).astype(np.float64)
                c = level * np.abs(x).max()
                clipped = np.clip(x, -c, c)
                unknown = np.abs(x) >= c
                levels = np.where(unknown, clipped, 0.0)
                base = ar.declip(clipped, unknown)
                ours = fill_samples(model, clipped, ~unknown, levels=levels,
                                    generator=torch.Generator().manual_seed(seed + i))
                for name, est in (("clipped", clipped), ("ar", base), ("restore", ours)):
                    out[name].append(sdr(x, est))
            rows.append(("music" if music else "speech", level, {k: float(np.mean(v)) for k, v in out.items()}))
    return rows


def whole_process(examples: Examples) -> tuple[float, float]:
    """Seconds for ``restore audio --task fill`` on a 10 s file with 10 gaps (50-200 ms), and its length."""
    import soundfile as sf

    rng = np.random.default_rng(7)
    x = np.concatenate([examples.signal(SR, music=bool(i % 2)) for i in range(10)])
    for i in range(10):
        length = int(rng.uniform(0.05, 0.2) * SR)
        a = i * SR + place_gap(x[i * SR : (i + 1) * SR], length, rng, 1600)
        x[a : a + length] = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gaps.wav"
        sf.write(path, x, SR, subtype="PCM_16")
        tick = time.perf_counter()
        subprocess.run([sys.executable, "-m", "restore.cli", "audio", str(path), "-o", str(Path(tmp) / "out.wav"),
                        "--task", "fill", "--quiet"], check=True, cwd=ROOT)
        return time.perf_counter() - tick, x.size / SR


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=12, help="gaps per kind and length (default 12)")
    p.add_argument("--steps", type=int, default=None, help="reverse steps (default: the card's)")
    p.add_argument("--fill-sigma", type=float, default=None, help="start noise level (default: the card's)")
    p.add_argument("--blend", type=float, default=None, help="share of the network's correction (default: the card's)")
    p.add_argument("--eta", type=float, default=None, help="DDIM eta (default: the card's)")
    p.add_argument("--min-model-ms", type=float, default=None, help="shorter gaps keep the AR guess (default: card)")
    p.add_argument("--taper-ms", type=float, default=None, help="edge taper of the correction (default: card)")
    p.add_argument("--highpass-hz", type=float, default=None, help="keep AR below this in gaps (default: card)")
    p.add_argument("--envelope-db", type=float, default=None, help="raise quiet gap frames by <= this (default: card)")
    p.add_argument("--highband-hz", type=float, default=None,
                   help="gaps shorter than min_model_ms get the band above this re-fitted alone; 0: off (default: card)")
    p.add_argument("--shrink-ms", type=float, default=None,
                   help="gaps this long get the guess shrunk by its pseudo-gap gain; 0: off (default: card)")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--data", type=Path, default=ROOT / "data" / "audio")
    p.add_argument("--split", choices=["val", "train"], default="val",
                   help="val: the held-out speaker and tracks (the benchmark); train: crops of the training "
                        "sources, for choosing --steps and --fill-sigma without looking at held-out data")
    p.add_argument("--no-declip", action="store_true")
    p.add_argument("--no-process", action="store_true", help="skip the whole-process timing")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("RESTORE_THREADS", "2")))
    with single_threaded_blas():
        run(args)


def run(args: argparse.Namespace) -> None:
    model = load_inpaint_model(args.weights)
    model = replace(model, **{n: getattr(args, n) for n in CARD_CHOICES if getattr(args, n) is not None})
    cfg = replace(InpaintConfig(data_dir=str(args.data)), noise_prob=0.0)
    examples = Examples(args.data, args.split, np.random.default_rng(2026), cfg)
    print(f"model {args.weights.name} v{model.version}: steps {args.steps or model.default_steps}, "
          f"{', '.join(f'{n} {getattr(model, n)}' for n in CARD_CHOICES)}; "
          f"{args.n} gaps per cell; "
          f"{'held-out speech (ru) and music' if args.split == 'val' else 'TRAINING-source crops (calibration)'}\n")
    print("| kind | gap ms | zero SNR / LSD | AR SNR / LSD | AR guess SNR / LSD | restore SNR / LSD "
          "| LSD ratio | SNR diff | AR ms | restore ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind, ms, m, t in gap_table(examples, model, args.n, args.steps, seed=1):
        print(f"| {kind} | {ms} | {m['zero'][0]:.2f} / {m['zero'][1]:.2f} | {m['ar'][0]:.2f} / {m['ar'][1]:.2f} | "
              f"{m['guess'][0]:.2f} / {m['guess'][1]:.2f} | "
              f"{m['restore'][0]:.2f} / {m['restore'][1]:.2f} | {m['restore'][1] / m['ar'][1]:.2f} | "
              f"{m['restore'][0] - m['ar'][0]:+.2f} | {1000 * t['ar']:.0f} | {1000 * t['restore']:.0f} |", flush=True)
    if not args.no_declip:
        print("\n| kind | clip at peak x | clipped SDR | consistent LSAR SDR | restore SDR |")
        print("|---|---|---|---|---|")
        for kind, level, m in declip_table(examples, model, max(4, args.n // 2), seed=3):
            print(f"| {kind} | {level} | {m['clipped']:.2f} | {m['ar']:.2f} | {m['restore']:.2f} |", flush=True)
    if not args.no_process:
        seconds, length = whole_process(examples)
        print(f"\nwhole process: restore audio --task fill on a {length:.0f} s file with 10 gaps: {seconds:.1f} s")


if __name__ == "__main__":
    main()
