"""Find clicks and crackle: short bursts (0.05-3 ms) that an AR model of their surroundings cannot
predict from either side (Godsill & Rayner 1998, "Digital Audio Restoration", ch. 5).

    per block of ~46 ms: AR fit (Yule-Walker, order :data:`ORDER`) on the block and its neighbours
        -> forward residual e_f[n] = sum_k a_k x[n - k], backward residual e_b[n] = sum_k a_k x[n + k]
        -> local robust scale of each (1.4826 x a median of 2.5 ms medians of |e| over 12.5 ms)
        -> a sample is impulsive where both |e_f| and |e_b| exceed :data:`THRESHOLD` x their scale
    -> flagged samples closer than :data:`JOIN_SECONDS` are joined into one run, widened by
       :data:`PAD_SECONDS` on each side; runs of :data:`MIN_SECONDS`-:data:`MAX_SECONDS` are clicks

A click is unpredictable from the past *and* from the future. A note's onset (a pluck, a drum hit,
a piano attack) is unpredictable from the silence before it but predictable from the note after
it, and the samples before it are the ones the future cannot predict: the two residuals peak on
different samples and rarely agree. The clicks become regions of kind ``"click"`` that
:mod:`restore.audio.repair` fills by LSAR interpolation (:func:`fill_clicks`).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from restore.audio import ar, gaps

ORDER = 32  # AR order of the detector (whitens the local spectrum; Godsill & Rayner use 20-40)
BLOCK_SECONDS = 0.046
PIECE_SECONDS = 0.0025
SCALE_SPAN = 5  # pieces: the residual's local scale is their median of medians (12.5 ms)
THRESHOLD = 8.0  # x the local robust residual scale, on both sides: 7.5 false alarms a minute on held-out
# music and synthetic plucks and drums (6: 12.8, 10: 4.5), 92% of synthetic crackle on music found
JOIN_SECONDS = 0.0005
PAD_SECONDS = 0.0001
MIN_SECONDS = 0.0
STEADY_SECONDS = 0.01  # the stretch on each side of a click whose level must match the other side's
STEADY_RATIO = 3.0  # a click leaves the level as it was: median |x| after / before within 1/3..3
MAX_SECONDS = 0.004  # longer unpredictable stretches are not clicks (a burst of noise, a transient)
FILL_ORDER = 64  # LSAR order of the fill
FILL_WINDOW_SECONDS = 0.01  # context each side of a click that the fill's AR model is fitted on


def residuals(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward AR prediction residuals of ``x: (L,)`` in units of their local robust
    scale, and that scale: two float64 ``(2, L)`` arrays (residual, scale). The model is fitted per
    block of :data:`BLOCK_SECONDS` (on it and one more on either side); the scale is 1.4826 x the
    median over :data:`SCALE_SPAN` pieces of :data:`PIECE_SECONDS` around each sample of the pieces'
    median ``|e|``, so a click (<= 2 pieces) does not raise it and a note's onset does, at once."""
    from scipy.signal import lfilter  # here, not at import: scipy.signal costs ~0.7 s to load

    x = np.nan_to_num(np.asarray(x, np.float64))
    n = x.size
    block = max(4 * ORDER, int(BLOCK_SECONDS * sr))
    res = np.zeros((2, n))
    for start in range(0, n, block):
        stop = min(n, start + block)
        lo, hi = max(0, start - block), min(n, stop + block)
        a = ar.fit_ar(x[lo:hi], np.ones(hi - lo, bool), min(ORDER, max(1, (hi - lo) // 4)))
        p = a.size - 1
        seg = x[max(0, start - p) : min(n, stop + p)]
        head = start - max(0, start - p)
        res[0, start:stop] = lfilter(a, [1.0], seg)[head : head + stop - start]
        res[1, start:stop] = lfilter(a, [1.0], seg[::-1])[::-1][head : head + stop - start]
    piece = max(8, round(PIECE_SECONDS * sr))
    count = -(-n // piece)
    padded = np.pad(np.abs(res), ((0, 0), (0, count * piece - n)), mode="edge")
    medians = np.median(padded.reshape(2, count, piece), axis=2)
    local = median_filter(medians, size=(1, SCALE_SPAN), mode="nearest")
    scales = np.repeat(1.4826 * local + 1e-12, piece, axis=1)[:, :n]
    return res / scales, scales


def find_clicks(x: np.ndarray, sr: int, channel: int = 0, offset: int = 0, *,
                lsb: float = gaps.SILENCE) -> list[gaps.Region]:
    """Clicks in one channel ``x: (L,)`` at rate ``sr`` as regions of kind ``"click"``; residuals
    smaller than 4 grid steps (``lsb``) never count (an 8-bit file's rounding, near-silence)."""
    res, scales = residuals(x, sr)
    big = (np.abs(res) > THRESHOLD) & (np.abs(res) * scales > 4 * lsb)
    flagged = np.flatnonzero(big[0] & big[1])
    if flagged.size == 0:
        return []
    join, pad = max(1, round(JOIN_SECONDS * sr)), max(1, round(PAD_SECONDS * sr))
    out = []
    for group in np.split(flagged, np.flatnonzero(np.diff(flagged) > join) + 1):
        a, b = max(0, int(group[0]) - pad), min(x.size, int(group[-1]) + 1 + pad)
        if MIN_SECONDS * sr <= b - a <= MAX_SECONDS * sr and _steady(x, a, b, round(STEADY_SECONDS * sr), 4 * lsb):
            out.append(gaps.Region(channel, offset + a, offset + b, "click"))
    return out


def _steady(x: np.ndarray, a: int, b: int, w: int, floor: float) -> bool:
    """Whether the median level of ``x`` over ``w`` samples before ``a`` and after ``b`` agree within
    :data:`STEADY_RATIO`, levels below ``floor`` counting as ``floor`` (an onset starts a louder note;
    a click leaves the level as it found it)."""
    before, after = np.abs(x[max(0, a - w) : a]), np.abs(x[b : b + w])
    if before.size < w // 4 or after.size < w // 4:
        return True  # at the very edge of the block: no evidence either way
    lo, hi = sorted((max(floor, float(np.median(before))), max(floor, float(np.median(after)))))
    return hi <= STEADY_RATIO * lo


def fill_clicks(x: np.ndarray, known: np.ndarray, sr: int) -> np.ndarray:
    """``x: (L,)`` with its unknown samples (clicks) LSAR-interpolated from a local AR model of order
    :data:`FILL_ORDER` fitted on :data:`FILL_WINDOW_SECONDS` on each side of each click; float64."""
    window = max(4 * FILL_ORDER, round(FILL_WINDOW_SECONDS * sr))
    return ar.interpolate_around(np.where(known, x, 0.0), known, order=FILL_ORDER, window=window, iterations=2)
