"""Audio denoising benchmark on held-out speech and noise: restore vs noisereduce vs a Wiener filter.

Held-out data from ``restore data prepare`` (``data/audio/val_*.npy``): the Russian Asterisk
speaker (never in training) mixed with the held-out noises (megaglest autumn + dark_forest,
lincity industry + traffic, two bubble effects) at 0/5/10/15 dB SNR. Whole utterances, 16 kHz mono.

Real-time factors are seconds of compute per second of audio in this process; restore's
``whole-process`` RTF runs ``restore audio`` as a separate process on all clips concatenated
(start-up, model load, read, restore, write, sidecar).

    .venv/bin/python bench/audio_denoise.py                    # the table
    .venv/bin/python bench/audio_denoise.py --only restore --steps 1 2 4 --fp32   # compare settings
    .venv/bin/python bench/audio_denoise.py --only restore --shifts 1 4 8         # frame offsets averaged
    .venv/bin/python bench/audio_denoise.py --calibrate   # steps x shifts x sigma_scale grid on the *training
                                                          # validation* crops (not this table's clips)

Needs the bench extra (noisereduce): ``make bench-deps``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from restore.audio import spectral
from restore.audio.degrade import add_noise_at_snr
from restore.audio.denoise import denoise_samples, load_audio_model
from restore.audio.estimate import estimate_noise_psd
from restore.audio.metrics import estoi, pesq_wb, si_sdr

ROOT = Path(__file__).resolve().parents[1]
SR = 16_000
SNRS = (0.0, 5.0, 10.0, 15.0)


def held_out_set(data_dir: Path, per_snr: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """``per_snr`` (clean, noisy, snr) triples per SNR: whole val utterances of 2-6 s + random noise crops."""
    manifest = json.loads((data_dir / "manifest.json").read_text())
    speech = np.load(data_dir / "val_speech.npy", mmap_mode="r")
    noise = np.load(data_dir / "val_noise.npy", mmap_mode="r")
    clips = [c for c in manifest["splits"]["val_speech"]["clips"] if 2 * SR <= c["length"] <= 6 * SR]
    noises = [c for c in manifest["splits"]["val_noise"]["clips"] if c["length"] >= 1 * SR]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(clips), size=per_snr * len(SNRS), replace=False)
    out = []
    for i, k in enumerate(picks):
        c = clips[k]
        clean = speech[c["start"] : c["start"] + c["length"]].astype(np.float32) / 32768
        nz = noises[rng.integers(len(noises))]
        n = np.resize(noise[nz["start"] : nz["start"] + nz["length"]].astype(np.float32) / 32768, clean.size)
        start = rng.integers(0, nz["length"])
        n = np.roll(n, -int(start))
        snr = SNRS[i % len(SNRS)]
        out.append((clean, add_noise_at_snr(clean, n, snr), snr))
    return out


def wiener(noisy: np.ndarray) -> np.ndarray:
    """STFT Wiener filter with the decision-directed a-priori SNR (Ephraim & Malah 1984, eq. 51).

    Noise PSD from the quietest 20% of frames (the same estimate restore uses).
    """
    x = torch.from_numpy(noisy)[None]
    X = spectral.stft(x)[0]  # (F, N)
    P = X.abs().pow(2).numpy()
    N = estimate_noise_psd(torch.from_numpy(P)[None])[0].numpy()[:, None] + 1e-12
    gamma = P / N
    G = np.zeros_like(P)
    prev = np.zeros(P.shape[0])
    for n in range(P.shape[1]):
        xi = 0.98 * prev + 0.02 * np.maximum(gamma[:, n] - 1, 0)
        G[:, n] = np.maximum(xi / (1 + xi), 0.1)
        prev = G[:, n] ** 2 * gamma[:, n]
    Y = X * torch.from_numpy(G).to(X.dtype)
    return spectral.istft(Y[None], noisy.size)[0].numpy()


def methods(args) -> dict:
    import noisereduce as nr

    out = {
        "noisy": lambda x: x,
        "noisereduce stationary": lambda x: nr.reduce_noise(y=x, sr=SR, stationary=True),
        "noisereduce non-stationary": lambda x: nr.reduce_noise(y=x, sr=SR, stationary=False),
        "Wiener (STFT, decision-directed)": wiener,
    }
    model = load_audio_model(args.weights, bf16=False if args.fp32 else None)
    for steps, shifts in itertools.product(args.steps, args.shifts or [model.shifts]):
        name = f"restore ({steps} step{'s' if steps > 1 else ''}, {shifts} shift{'s' if shifts > 1 else ''}" \
               f"{', fp32' if args.fp32 else ''})"

        def run(x, steps=steps, shifts=shifts):
            gen = torch.Generator().manual_seed(0)
            return denoise_samples(model, torch.from_numpy(x)[None], steps=steps, generator=gen,
                                   shifts=shifts).samples[0].numpy()

        out[name] = run
    if args.only:
        out = {k: v for k, v in out.items() if k == "noisy" or any(o in k for o in args.only)}
    return out


def whole_process_rtf(clips, steps: int, weights: Path) -> float:
    """``restore audio`` in a fresh process on all noisy clips joined into one WAV."""
    audio = np.concatenate([c[1] for c in clips])
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "noisy.wav", Path(tmp) / "out.wav"
        sf.write(src, audio, SR, subtype="PCM_16")
        code = ("import sys; from restore.device import set_threads; set_threads(); "
                "from restore.audio.pipeline import restore_audio; "
                f"restore_audio(sys.argv[1], sys.argv[2], steps={steps}, progress=False, weights=sys.argv[3])")
        tick = time.perf_counter()
        env = {**os.environ, "RESTORE_THREADS": str(torch.get_num_threads())}  # same threads as in process
        subprocess.run([sys.executable, "-c", code, str(src), str(dst), str(weights)], check=True, cwd=ROOT, env=env)
        return (time.perf_counter() - tick) / (audio.size / SR)


def calibrate(weights: Path, steps_grid=(1, 2), shifts_grid=(1, 4), scale_grid=(1.0, 1.5, 2.0)) -> None:
    """Grid over default steps, frame offsets and ``sigma_scale`` on the training run's validation crops.

    Those crops come from the same held-out speaker and noises as this benchmark but are drawn with
    the training config's own seed; the chosen pair goes into ``configs/audio_denoise.yaml``.
    """
    from dataclasses import replace

    from restore.audio.config import load_config
    from restore.audio.train import validate, validation_set

    cfg = replace(load_config(ROOT / "configs" / "audio_denoise.yaml"), val_clips=32)
    val = validation_set(cfg)
    base = load_audio_model(weights)
    print("| steps | shifts | sigma_scale | SI-SDR | PESQ-WB |\n|---|---|---|---|---|")
    for steps, shifts, scale in itertools.product(steps_grid, shifts_grid, scale_grid):
        m = validate(replace(base, sigma_scale=scale, shifts=shifts), val, steps)
        print(f"| {steps} | {shifts} | {scale} | {m['si_sdr']:.2f} (noisy {m['si_sdr_noisy']:.2f}) | "
              f"{m['pesq_wb']:.2f} (noisy {m['pesq_wb_noisy']:.2f}) |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "audio")
    parser.add_argument("--weights", type=Path, default=ROOT / "restore" / "models" / "audio_denoise.safetensors")
    parser.add_argument("--per-snr", type=int, default=6, help="utterances per SNR (default 6)")
    parser.add_argument("--steps", type=int, nargs="+", default=[None])
    parser.add_argument("--shifts", type=int, nargs="+", default=None,
                        help="frame-grid offsets averaged (default: the model card's)")
    parser.add_argument("--fp32", action="store_true", help="run restore without bf16 autocast")
    parser.add_argument("--only", nargs="*", help="substrings of method names to run (noisy always runs)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--calibrate", action="store_true", help="steps x shifts x sigma_scale grid on validation crops")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.calibrate:
        calibrate(args.weights)
        return
    card = load_audio_model(args.weights)  # the card's defaults
    if args.steps == [None]:
        args.steps = [card.default_steps]
    clips = held_out_set(args.data, args.per_snr, args.seed)
    seconds = sum(c[0].size for c in clips) / SR
    print(f"{len(clips)} held-out clips, {seconds:.1f} s, SNR {SNRS} dB, torch threads {torch.get_num_threads()}")
    rows = {}
    for name, fn in methods(args).items():
        scores = {snr: [] for snr in SNRS}
        compute = 0.0
        for clean, noisy, snr in clips:
            tick = time.perf_counter()
            est = np.asarray(fn(noisy), np.float32)[: clean.size]
            compute += time.perf_counter() - tick
            scores[snr].append((si_sdr(clean, est), pesq_wb(clean, est, SR), estoi(clean, est, SR)))
        rows[name] = {snr: np.nanmean(np.array(v), axis=0) for snr, v in scores.items()}
        rows[name]["all"] = np.nanmean(np.array([s for v in scores.values() for s in v]), axis=0)
        rows[name]["rtf"] = compute / seconds
        print(f"  {name}: SI-SDR {rows[name]['all'][0]:.2f} dB, PESQ-WB {rows[name]['all'][1]:.2f}, "
              f"ESTOI {rows[name]['all'][2]:.3f}, RTF {rows[name]['rtf']:.3f}", flush=True)
    print("\n| method | " + " | ".join(f"SI-SDR {s:g} dB" for s in SNRS)
          + " | SI-SDR avg | PESQ-WB avg | ESTOI avg | RTF (in process) |")
    print("|---" * (len(SNRS) + 5) + "|")
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[s][0]:.2f}" for s in SNRS)
              + f" | {r['all'][0]:.2f} | {r['all'][1]:.2f} | {r['all'][2]:.3f} | {r['rtf']:.3f} |")
    print("\nPESQ-WB per SNR: " + "; ".join(
        f"{name}: " + " / ".join(f"{r[s][1]:.2f}" for s in SNRS) for name, r in rows.items()))
    steps = args.steps[0]
    print(f"\nrestore whole-process RTF ({steps} steps, the card's {card.shifts} shifts, fresh process, "
          f"{seconds:.0f} s file): "
          f"{whole_process_rtf(clips, steps, args.weights):.3f}")


if __name__ == "__main__":
    main()
