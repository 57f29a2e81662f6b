"""Least-squares autoregressive interpolation of missing samples (Janssen, Veldhuis & Vries 1986).

An AR model of order ``p`` predicts each sample from the ``p`` before it; the missing samples are
the ones that minimise the total squared prediction error over every equation that touches them.
With ``a = [1, a_1 .. a_p]`` that error is ``|A_u x_u + A_k x_k|^2``, whose normal matrix
``A_u^T A_u`` has entries ``r_a(|i - j|)`` (the autocorrelation of ``a``) for ``|i - j| <= p``. In
the order of the missing samples it is banded with half-width ``<= p`` for any mask, so a banded
Cholesky solve (``O(m p^2)`` for ``m`` missing samples) fills every gap at once; a lone contiguous
gap makes it Toeplitz, and Levinson's ``O(m^2)`` solve is then much faster at high orders. Janssen's
method alternates this with re-fitting the AR coefficients on the filled signal.

It is the classical baseline of ``bench/audio_gaps.py`` and the first guess the diffusion
inpainter refines (:mod:`restore.audio.inpaint`). :func:`declip` adds the clipping constraint
``|x| >= clip level`` (samples that violate it are pinned to the level and the rest re-solved).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_toeplitz, solveh_banded

from restore.audio import gaps

DEFAULT_ORDER = 128
LEVINSON_FACTOR = 40  # a lone run is solved as Toeplitz when its length * this < order^2 (timed: _toeplitz_pays)
TOEPLITZ_MIN_SAMPLES = 256  # shorter runs cost little either way and share one banded solve
RIDGE = 1e-9  # relative to r_a(0): keeps the normal equations of a (near-)silent context solvable


def fit_ar(x: np.ndarray, known: np.ndarray, order: int) -> np.ndarray:
    """AR coefficients ``[1, a_1 .. a_p]`` from the autocorrelation of the known samples of ``x``.

    Lag ``k`` averages ``x[n] x[n + k]`` over the pairs where both samples are known, so a gap is
    never treated as signal and short known runs between clipped samples still count. A small
    ridge keeps the Yule-Walker system well posed (silence, or too few pairs at long lags).
    """
    xk = np.where(known, x, 0.0).astype(np.float64)
    m = known.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(2 * x.size)))
    num = np.fft.irfft(np.abs(np.fft.rfft(xk, size)) ** 2, size)[: order + 1]
    pairs = np.fft.irfft(np.abs(np.fft.rfft(m, size)) ** 2, size)[: order + 1]
    r = np.where(pairs > 0.5, num / np.maximum(pairs, 1.0), 0.0)
    r *= pairs / max(pairs[0], 1.0)  # as the biased estimator: weight lag k by its share of pairs
    if r[0] <= 0:
        return np.concatenate([[1.0], np.zeros(order)])
    r[0] *= 1 + 1e-6
    a = solve_toeplitz(r[:order], -r[1 : order + 1])
    return np.concatenate([[1.0], a])


def lsar_fill(x: np.ndarray, known: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``x`` with its unknown samples set to the least-squares AR interpolation for coefficients ``a``."""
    x = np.asarray(x, np.float64)
    missing = np.flatnonzero(~known)
    if missing.size == 0:
        return x.copy()
    p = a.size - 1
    r_a = np.correlate(a, a, mode="full")[p:]  # r_a[d] = sum_k a_k a_{k+d}, d = 0..p
    x_k = np.where(known, x, 0.0)
    e = np.convolve(x_k, a)  # prediction errors of the known part, e[n] = sum_k a_k x_k[n - k]
    # b_i = -sum_n a_{n - i} e[n] for each missing index i
    corr = np.correlate(e, a, mode="valid")  # corr[i] = sum_k a_k e[i + k]
    out = x_k.copy()
    # missing samples more than p apart share no equation: a long lone run is its own (Toeplitz) system
    rest = []
    for group in np.split(missing, np.flatnonzero(np.diff(missing) > p) + 1):
        u = _solve_toeplitz(-corr[group], r_a) if _toeplitz_pays(group, p) else None
        if u is None:
            rest.append(group)
        else:
            out[group] = u
    if rest:  # everything else (short runs, clipped samples, runs coupled by the order): one banded solve
        group = np.concatenate(rest)
        out[group] = _solve_banded(group, -corr[group], r_a)
    return out


def _toeplitz_pays(group: np.ndarray, p: int) -> bool:
    """Whether ``group`` (sorted missing indices) is one contiguous run that Levinson solves faster than
    the banded Cholesky: ``O(m^2)`` against ``O(m p^2)``, e.g. 27 vs 179 ms for a 200 ms gap at order
    1024 (16 kHz). Short runs (clicks, clipped peaks) stay in the shared banded solve."""
    m = group.size
    return m >= TOEPLITZ_MIN_SAMPLES and group[-1] - group[0] + 1 == m and m * LEVINSON_FACTOR < p * p


def _solve_toeplitz(b: np.ndarray, r_a: np.ndarray) -> np.ndarray | None:
    """Solve the normal equations of one contiguous run (Toeplitz: ``R[i, j] = r_a(|i - j|)``, 0 beyond
    lag ``p``, plus the ridge) by Levinson. It is only weakly stable, so the residual is checked:
    ``None`` if it is off (the caller falls back to the banded solve)."""
    m, p = b.size, r_a.size - 1
    column = np.zeros(m)
    column[: min(p + 1, m)] = r_a[: min(p + 1, m)]
    column[0] += RIDGE * r_a[0]
    u = solve_toeplitz(column, b, check_finite=False)
    size = 1 << int(np.ceil(np.log2(2 * m)))  # T u by FFT: the symmetric Toeplitz matrix as a circulant
    kernel = np.concatenate([column, np.zeros(size - 2 * m + 1), column[:0:-1]])
    residual = np.fft.irfft(np.fft.rfft(kernel) * np.fft.rfft(u, size), size)[:m] - b
    return u if np.linalg.norm(residual) <= 1e-8 * np.linalg.norm(b) else None


def _solve_banded(missing: np.ndarray, b: np.ndarray, r_a: np.ndarray) -> np.ndarray:
    """Solve ``R u = b`` with ``R[i, j] = r_a(|missing_i - missing_j|)`` (0 beyond lag ``p``) plus the
    ridge: banded with half-width ``<= p`` in the order of ``missing``, for any mask."""
    p, m = r_a.size - 1, missing.size
    band = np.zeros((p + 1, m))
    for d in range(min(p + 1, m)):
        dist = missing[d:] - missing[: m - d]
        band[p - d, d:] = np.where(dist <= p, r_a[np.minimum(dist, p)], 0.0)
    band[p] += RIDGE * r_a[0]
    return solveh_banded(band, b, lower=False, check_finite=False)


def interpolate(x: np.ndarray, known: np.ndarray, *, order: int = DEFAULT_ORDER, iterations: int = 3) -> np.ndarray:
    """Janssen's iterative LSAR interpolation of ``x: (L,)`` where ``known`` is False; float64 ``(L,)``.

    The first fit uses the known samples only; later ones re-fit on the filled signal.
    """
    x = np.asarray(x, np.float64)
    known = np.asarray(known, bool)
    if known.all():
        return x.copy()
    order = max(1, min(order, int(known.sum()) // 4))
    a = fit_ar(x, known, order)
    filled = lsar_fill(x, known, a)
    everywhere = np.ones_like(known)
    for _ in range(iterations - 1):
        a = fit_ar(filled, everywhere, order)
        filled = lsar_fill(x, known, a)
    return filled


def interpolate_around(x: np.ndarray, known: np.ndarray, *, order: int, window: int, iterations: int = 3,
                       order_for=None) -> np.ndarray:
    """Janssen interpolation with a local AR model per gap: float64 ``(L,)``.

    Each unknown run is filled from an AR model fitted on the ``window`` samples on each side of it
    only (runs whose windows overlap share one fit), not on the whole signal: speech changes sound
    every few tens of ms, and a model of the phoneme around the gap predicts it better than one of
    the whole second. ``order_for(unknown)``, if given, sets each fit's order from its number of
    unknown samples (a cost cap); else ``order`` is used.
    """
    x = np.asarray(x, np.float64)
    known = np.asarray(known, bool)
    out = np.where(known, x, 0.0)
    clusters: list[list[int]] = []
    for a, b in gaps.runs(~known).tolist():
        if clusters and a - window <= clusters[-1][1] + window:
            clusters[-1][1] = b
        else:
            clusters.append([a, b])
    for a, b in clusters:
        lo, hi = max(0, a - window), min(x.size, b + window)
        k = known[lo:hi]
        p = order if order_for is None else min(order, order_for(int((~k).sum())))
        out[lo:hi] = np.where(k, out[lo:hi], interpolate(out[lo:hi], k, order=p, iterations=iterations))
    return out


def project_clipped(x: np.ndarray, clipped: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Enforce the clipping constraint: where ``clipped``, ``|x| >= level`` with the sign of ``level``.

    ``level: (L,)`` holds the signed clip level of each clipped sample (+c at a positive plateau,
    -c at a negative one); elsewhere it is ignored.
    """
    pos = clipped & (level > 0)
    neg = clipped & (level < 0)
    out = np.array(x, np.float64, copy=True)
    out[pos] = np.maximum(out[pos], level[pos])
    out[neg] = np.minimum(out[neg], level[neg])
    return out


def declip(x: np.ndarray, clipped: np.ndarray, *, order: int = DEFAULT_ORDER, iterations: int = 3,
           passes: int = 4) -> np.ndarray:
    """Consistent LSAR declipping: interpolate the clipped samples, pin violators to the level, repeat.

    ``x`` holds the clipped signal (its clipped samples sit at the signed level), so the level of
    each clipped sample is read from ``x`` itself.
    """
    x = np.asarray(x, np.float64)
    clipped = np.asarray(clipped, bool)
    level = np.where(clipped, x, 0.0)
    free = clipped.copy()
    out = x.copy()
    for _ in range(passes):
        out = interpolate(np.where(free, 0.0, out), ~free, order=order, iterations=iterations)
        violating = free & (np.sign(level) * (out - level) < 0)
        if not violating.any():
            break
        out[violating] = level[violating]
        free &= ~violating
    return project_clipped(out, clipped, level)
