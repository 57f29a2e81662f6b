"""Mains hum: detect a stable 50 or 60 Hz comb of narrow peaks and remove it with narrow notches.

    probe blocks spread over the file (mono mix) -> power spectrum, 0.125 Hz bins (zero-padded)
        -> per block, candidate f0 near 50 / 60 Hz and harmonic k: the power at k * f0 over the
           median of the 4-15 Hz ring around it (prominence)
        -> the f0 whose comb scores best over all blocks is a hum if in *every* block >= MIN_HARMONICS
           of its first four harmonics are prominent (> PROMINENCE_DB) and each block agrees on f0
    remove: zero-phase IIR notches (scipy iirnotch, filtfilt) at k * f0 for every harmonic that was
            prominent in most blocks; each notch :data:`NOTCH_SHARE` of its frequency wide (>= 1 Hz),
            wide enough for the drift a mains frequency has.

A note that happens to sit on a multiple of 50/60 Hz is not stable over the whole file, and one note
is one peak, not a comb: music is left alone unless the peaks hold in every probe block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BASES = (50.0, 60.0)
MAX_HARMONIC = 20
MAX_HUM_HZ = 2000.0
PROMINENCE_DB = 12.0
KEEP_DB = 6.0  # once a hum is found, every harmonic this prominent in >= 3/4 of the blocks is notched
MIN_HARMONICS = 2  # of the first four
SEARCH_SHARE = 0.006  # fundamentals within +-0.6% of 50 / 60 Hz are searched (0.02% steps)
STABLE_SHARE = 0.003  # each block's own best fundamental within 0.3% of the common one (2 s blocks: 0.5 Hz lobes)
NOTCH_SHARE = 0.006  # notch width as a share of its centre frequency
MIN_NOTCH_HZ = 1.0
RESOLUTION_HZ = 0.125


@dataclass(frozen=True)
class Hum:
    """A detected hum: fundamental ``f0_hz``, the ``harmonics`` (multiples of f0) to notch, and the
    median over probe blocks of each harmonic's prominence in dB."""

    f0_hz: float
    harmonics: tuple[int, ...]
    prominence_db: tuple[float, ...]
    level_dbfs: float | None = None  # power the notches remove, when measured

    def record(self) -> dict:
        return {"frequency_hz": round(self.f0_hz, 3), "harmonics": list(self.harmonics),
                "prominence_db": [round(p, 1) for p in self.prominence_db],
                "level_dbfs": None if self.level_dbfs is None else round(self.level_dbfs, 1)}


def _prominence(x: np.ndarray, sr: int, base: float, f0s: np.ndarray) -> np.ndarray:
    """``(len(f0s), K)``: for each candidate fundamental and harmonic ``k = 1..K`` of ``base``, the
    power at ``k * f0`` (the largest of the 3 nearest bins) over the median of the 4-15 Hz ring
    around ``k * base``, in dB, in the Hann-windowed power spectrum of ``x: (L,)``."""
    size = max(x.size, 1 << int(np.ceil(np.log2(sr / RESOLUTION_HZ))))
    power = np.abs(np.fft.rfft(x * np.hanning(x.size), size)) ** 2
    df = sr / size
    k = np.arange(1, int(min(MAX_HARMONIC, MAX_HUM_HZ / base, (sr / 2 - 20) / base)) + 1)
    floors = []
    for centre in k * base:
        ring = np.r_[power[max(0, int((centre - 15) / df)) : int((centre - 4) / df)],
                     power[int((centre + 4) / df) : int((centre + 15) / df)]]
        floors.append(np.median(ring) + 1e-30)
    at = np.rint(np.outer(f0s, k) / df).astype(int)
    peak = np.maximum(np.maximum(power[at - 1], power[at]), power[at + 1])
    return 10 * np.log10(peak / np.array(floors) + 1e-30)


def estimate_hum(blocks: list[np.ndarray], sr: int) -> Hum | None:
    """The hum common to every block of ``blocks`` (each ``(L,)`` mono, >= 1 s), or None.

    For 50 and 60 Hz, fundamentals within :data:`SEARCH_SHARE` are scored by the summed
    prominences (>= 0 dB) of their harmonics, each harmonic's the lowest over the blocks (a hum's comb holds
    in every block; a note or a voice's harmonics in a few); the best one is a hum if in every block >= :data:`MIN_HARMONICS` of its
    first four harmonics stand > :data:`PROMINENCE_DB` out and each block's own best fundamental is
    within :data:`STABLE_SHARE` of it."""
    if not blocks or min(b.size for b in blocks) < sr:
        return None
    for base in BASES:
        f0s = base * (1 + np.arange(-SEARCH_SHARE, SEARCH_SHARE + 1e-9, 0.0002))
        prom = np.stack([_prominence(b.astype(np.float64), sr, base, f0s) for b in blocks])  # (B, F, K)
        score = prom.clip(min=0.0).sum(axis=2)  # (B, F)
        best = int(np.argmax(prom.min(axis=0).clip(min=0.0).sum(axis=1)))  # peaks that hold in every block
        f0 = float(f0s[best])
        at_best = prom[:, best, :]  # (B, K)
        if not ((at_best[:, :4] > PROMINENCE_DB).sum(axis=1) >= MIN_HARMONICS).all():
            continue
        own = f0s[np.argmax(score, axis=1)]
        if np.max(np.abs(own - f0)) > STABLE_SHARE * f0:
            continue
        k = np.arange(1, at_best.shape[1] + 1)
        steady = (at_best > PROMINENCE_DB).all(axis=0)  # above the 8th harmonic only peaks that always stand out
        keep = np.flatnonzero(((at_best > KEEP_DB).mean(axis=0) >= 0.75) & ((k <= 8) | steady))
        median = np.median(at_best, axis=0)
        return Hum(f0, tuple(int(k) + 1 for k in keep), tuple(float(median[k]) for k in keep))
    return None


def remove_hum(samples: np.ndarray, sr: int, hum: Hum) -> np.ndarray:
    """``samples: (n, C)`` float32 with a zero-phase notch at each of ``hum``'s harmonics (float32).

    Each notch rings for about ``1 / (pi * width)`` (0.3 s at 1 Hz): callers pass a block with a
    second or more of context on each side and crop it."""
    from scipy.signal import filtfilt, iirnotch  # here, not at import: scipy.signal costs ~0.7 s to load

    out = samples.astype(np.float64)
    for k in hum.harmonics:
        centre = k * hum.f0_hz
        if centre >= sr / 2 - 1:
            continue
        width = max(MIN_NOTCH_HZ, NOTCH_SHARE * centre)
        b, a = iirnotch(centre, centre / width, fs=sr)
        out = filtfilt(b, a, out, axis=0, padtype="even", padlen=min(out.shape[0] - 1, 3 * int(sr / width)))
    return out.astype(np.float32)


def hum_level_db(before: np.ndarray, after: np.ndarray) -> float:
    """Power of what the notches removed, dB re. full scale (``before``, ``after``: same shape)."""
    removed = np.mean(np.square(before.astype(np.float64) - after, dtype=np.float64))
    return float(10 * np.log10(removed + 1e-30))
