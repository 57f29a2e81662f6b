"""Fill gaps and clipped runs with a conditional STFT diffusion model that refines an AR first guess.

    samples, known mask -> LSAR interpolation (Janssen; for gaps the mean of local order-1024 and order-512
                           fits, GAP_AR_MEMBERS; constrained for clipping) = y
        -> cond = [spec(y) real, imag, missing share per frame]
        -> x_t* = start_from_observation(spec(y)) at the card's fill sigma
        -> DDIM steps conditioned on cond -> refined samples
        -> output = w * y + blend * taper * (refined - y) inside the unknown runs, the input everywhere else
           (in gaps: the correction above highpass_hz only, then match_envelope above it; w < 1 deep
           inside gaps of at least shrink_ms whose context is hard to predict, shrink_weight; in gaps
           shorter than min_model_ms, y's band above highband_hz re-fitted alone, refit_high_band)

The AR guess is exact on the known samples and continuous at the gap edges; its order-1024 fill spans
pitch periods and carries most of what can be predicted across a gap. The network adds what AR
cannot extrapolate (energy and harmonics deep inside longer gaps). The correction fades in over
``taper_ms`` from each gap edge (:data:`TAPER_SECONDS` in clipped runs) so the joins stay smooth,
and every known sample is copied from the input bit for bit. ``blend``, ``min_model_ms``,
``highpass_hz``, ``envelope_db``, ``shrink_ms`` and ``highband_hz`` (the card's ``inference`` block) are chosen on
training-source crops to trade gap SNR (which a generated fill lowers) against spectral distance.
For clipped runs the result is projected on ``|x| >= level``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch
from scipy.ndimage import distance_transform_edt

from restore.audio import ar, gaps, spectral
from restore.device import autocast
from restore.diffusion import sample_ddim, start_from_observation
from restore.nets.unet import UNetDenoiser
from restore.weights import load_model, read_settings, shipped_weights

DEFAULT_WEIGHTS = shipped_weights("audio_inpaint")
MODEL_NAME = "audio_inpaint"
TAPER_SECONDS = 0.002
# shrink_weight: the guess keeps its full level at a gap's edges, where AR predicts well, and falls
# to the pseudo-gap gain over this distance. 20 ms scored best of 5-50 ms on training-source crops
# (small gains for speech, about -0.07 dB for music; measurements in bench/results/model_history/).
SHRINK_TAU_SECONDS = 0.02
SHRINK_ITERATIONS = 1  # fits per member for the pseudo-gap guesses (3 for the real fill): beta is a rough gain
# refit_high_band (gaps shorter than min_model_ms): the band above the card's highband_hz gets its own
# LSAR fit, of this order on this much context each side: a full-band fit follows the loud low band
# and predicts the quiet high band poorly. Chosen on training-source crops (bench/audio_gaps.py
# --split train) among cutoffs of 1/2/3 kHz and 0.1/0.2/0.5 s of context.
HIGHBAND_AR_ORDER = 1024
HIGHBAND_SECONDS = 0.1
# Gaps: order 1024 (64 ms at 16 kHz, longer than any pitch period, so the fill carries harmonics
# across the gap) instead of the baseline's 128: on training-source crops (bench/audio_gaps.py
# --split train) +2.5 to +5.6 dB gap SNR for music and +0.2 to +0.5 dB for speech at 20-100 ms;
# higher orders lose on short gaps. A lone gap is a Toeplitz solve, O(gap^2): ~30 ms for 200 ms
# (ar.lsar_fill); gaps coupled by the order are a banded one, O(gap * order^2): ~0.2 s for 200 ms.
GAP_AR_ORDER = 1024
# The gap guess averages two LSAR fills, each fitted on the input around the gap only: (order,
# seconds of context on each side). The long one carries pitch and stationary tones across the gap;
# the short one models the phoneme at the gap. Chosen on training-source crops (a grid of orders
# and windows) against one order-1024 fit on the whole 0.5 s: speech +1.8 / +0.8 / +0.1 / -0.0 dB
# gap SNR at 20/50/100/200 ms, music -0.2 to -0.0 dB.
GAP_AR_MEMBERS = ((GAP_AR_ORDER, 0.5), (512, 0.1))
GAP_AR_FULL_ORDER_SAMPLES = 4800  # beyond this many unknown samples (300 ms at 16 kHz) the order
# shrinks as 1/sqrt(unknown) so a region's solve costs no more than a 300 ms gap's (2 s: order 396)
GAP_AR_ITERATIONS = 3  # the AR baseline's own setting: below highpass_hz the fill *is* this guess
TRAIN_GAP_AR_ITERATIONS = 2  # training guesses use 2 fits (faster steps); their order: InpaintConfig.gap_ar_orders
# the declipping first guess: the consistent LSAR baseline itself (order 128, 4 passes of 3 fits).
# Training used order 32 and 3 passes (TRAIN_DECLIP_*) to keep steps fast; at inference the
# stronger guess measured +1 to +6 dB SDR, and the network's correction on top of it +0.2 dB at
# 0.2 of the peak and +-0.2 dB elsewhere (bench/audio_gaps.py --split train).
DECLIP_AR_ORDER = 128
DECLIP_PASSES = 4
DECLIP_AR_ITERATIONS = 3
TRAIN_DECLIP_AR_ORDER = 32
TRAIN_DECLIP_PASSES = 3


# inference choices an InpaintModel takes from its card's inference block (calibrated; see the model card)
CARD_CHOICES = ("fill_sigma", "blend", "min_model_ms", "eta", "taper_ms", "highpass_hz", "envelope_db", "shrink_ms",
                "highband_hz")


@dataclass(frozen=True)
class InpaintModel:
    net: UNetDenoiser
    version: str
    default_steps: int
    bf16: bool
    fill_sigma: float = 0.3  # noise level (model units) the reverse process starts from, from the card
    blend: float = 1.0  # share of the network's correction added to the AR guess, from the card
    min_model_ms: float = 0.0  # unknown runs shorter than this keep the AR guess alone, from the card
    eta: float = 0.0  # DDIM stochasticity (0: deterministic, 1: ancestral-like), from the card
    taper_ms: float = TAPER_SECONDS * 1000  # the correction rises from 0 to full over this much of each edge, card
    highpass_hz: float = 0.0  # >0: in gaps, the correction's content below this is dropped (AR kept there), card
    envelope_db: float = 0.0  # >0: gap frames above highpass_hz are raised towards the neighbours' level, by <= this
    shrink_ms: float = 0.0  # >0: gaps at least this long get their AR guess shrunk by its gain on pseudo-gaps, card
    highband_hz: float = 0.0  # >0: gaps shorter than min_model_ms get the band above this re-fitted alone, card


@dataclass(frozen=True, kw_only=True)
class InpaintSettings(spectral.FrontEnd):
    """The gap filler card's ``inference`` block: :data:`CARD_CHOICES` plus steps and bf16."""

    inference_steps: int = 1
    bf16: bool = False
    fill_sigma: float = 0.3
    blend: float = 1.0
    min_model_ms: float = 0.0
    eta: float = 0.0
    taper_ms: float = TAPER_SECONDS * 1000
    highpass_hz: float = 0.0
    envelope_db: float = 0.0
    shrink_ms: float = 0.0
    highband_hz: float = 0.0


def load_inpaint_model(weights: Path = DEFAULT_WEIGHTS, *, device: torch.device | str = "cpu",
                       bf16: bool | None = None) -> InpaintModel:
    loaded = load_model(Path(weights), device=device)
    settings = read_settings(InpaintSettings, loaded.inference, str(weights))
    settings.check(str(weights))
    return InpaintModel(
        net=loaded.model,
        version=loaded.version,
        default_steps=settings.inference_steps,
        bf16=settings.bf16 if bf16 is None else bf16,
        **{name: getattr(settings, name) for name in CARD_CHOICES},
    )


def first_guess(samples: np.ndarray, known: np.ndarray, clipped: bool, *, sr: int = spectral.MODEL_SR,
                train_order: int | None = None, iterations: int = GAP_AR_ITERATIONS) -> np.ndarray:
    """The AR guess of one row at rate ``sr``: for gaps the mean of the :data:`GAP_AR_MEMBERS` local
    Janssen LSAR fills, for clipped runs constrained LSAR (float64).

    ``iterations``: fits per member (gaps; :func:`shrink_weight` uses fewer for its rough gains).
    ``train_order`` (training only) is the gap AR order of the current step: training guesses are
    one fit on the whole row, and cheaper (fewer fits, a lower declipping order)."""
    training = train_order is not None
    if clipped:
        order, passes = (TRAIN_DECLIP_AR_ORDER, TRAIN_DECLIP_PASSES) if training else (DECLIP_AR_ORDER, DECLIP_PASSES)
        return ar.declip(samples, ~known, order=order, passes=passes, iterations=DECLIP_AR_ITERATIONS)
    if training:
        return ar.interpolate(samples, known, order=train_order, iterations=TRAIN_GAP_AR_ITERATIONS)
    fills = [ar.interpolate_around(samples, known, order=order, window=round(seconds * sr),
                                   iterations=iterations, order_for=gap_ar_order)
             for order, seconds in GAP_AR_MEMBERS]
    return np.mean(fills, axis=0)


def gap_ar_order(unknown: int) -> int:
    """The first guess's AR order for ``unknown`` missing samples: :data:`GAP_AR_ORDER`, lowered for
    long regions so their solve (banded, ``O(unknown * order^2)``) stays within a 300 ms gap's cost."""
    if unknown <= GAP_AR_FULL_ORDER_SAMPLES:
        return GAP_AR_ORDER
    return max(ar.DEFAULT_ORDER, int(GAP_AR_ORDER * (GAP_AR_FULL_ORDER_SAMPLES / unknown) ** 0.5))


def frame_mask(known: torch.Tensor) -> torch.Tensor:
    """Share of each STFT frame's window energy that is unknown: ``known (B, L)`` -> ``(B, 1, 1, N)``."""
    missing = (~known).float()[:, None]
    window = torch.hann_window(spectral.N_FFT, device=known.device).pow(2)
    padded = torch.nn.functional.pad(missing, (spectral.N_FFT // 2, spectral.N_FFT // 2))
    share = torch.nn.functional.conv1d(padded, (window / window.sum())[None, None], stride=spectral.HOP)
    return share[:, :, None, :]


def condition(guess: torch.Tensor, known: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``(B, 3, F, N)``: the compressed STFT of the AR guess and the per-frame missing share."""
    spec = spectral.to_spec(guess, scale=scale).values
    share = frame_mask(known)[..., : spec.shape[-1]]
    return torch.cat([spec, share.expand(-1, 1, spec.shape[2], -1)], dim=1)


def correction_weight(model: InpaintModel, known: np.ndarray, sr: int, clipped: np.ndarray | None = None) -> np.ndarray:
    """Per-sample weight of the network's correction: ``blend`` times the edge taper inside unknown
    runs (``taper_ms`` in gaps, :data:`TAPER_SECONDS` in clipped runs), 0 elsewhere; gap runs
    shorter than ``min_model_ms`` keep the AR guess (clipped runs, which are all short, always get
    the correction)."""
    taper = edge_taper(known, int(model.taper_ms * sr / 1000))
    if clipped is not None and clipped.any():  # clipped runs are a few ms: they keep the short taper
        taper = np.where(clipped, edge_taper(known, int(TAPER_SECONDS * sr)), taper)
    weight = model.blend * taper
    shortest = model.min_model_ms * sr / 1000
    if shortest > 0:
        for a, b in gaps.runs(~known):
            if b - a < shortest and (clipped is None or not clipped[a:b].any()):
                weight[a:b] = 0.0
    return weight


def edge_taper(known: np.ndarray, width: int) -> np.ndarray:
    """0 on known samples, rising as a raised cosine to 1 at ``width`` samples inside each unknown run."""
    if width <= 0:
        return (~known).astype(np.float64)
    distance = distance_transform_edt(~known)
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(distance / (width + 1), 0, 1))


def refine(model: InpaintModel, guess: torch.Tensor, known: torch.Tensor, *, steps: int | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """The network's estimate ``(B, L)`` given AR guesses ``(B, L)`` and masks (model rate)."""
    steps = model.default_steps if steps is None else steps
    net, schedule = model.net, model.net.schedule
    guess = guess.float()
    scale = spectral.level_of(guess)
    cond = condition(guess, known, scale)
    y = cond[:, :2]
    t_star = max(1, int(schedule.timestep_for_sigma(model.fill_sigma)))
    x = start_from_observation(y, 0.0, t_star, schedule, generator=generator)

    def denoiser(x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        with autocast(x_t.device, model.bf16):
            return net(x_t, t, c).float()

    x0 = sample_ddim(denoiser, x, schedule.inference_timesteps(steps, start=t_star), schedule, cond=cond,
                     eta=model.eta, generator=generator)
    return spectral.from_spec(x0, scale, guess.shape[-1])


def _resample(x: np.ndarray, sr_in: int, sr_out: int, n_out: int) -> np.ndarray:
    y = soxr.resample(x, sr_in, sr_out, quality="HQ") if sr_in != sr_out else x
    return np.pad(y, (0, max(0, n_out - y.size)))[:n_out]


def known_at_model_rate(known: np.ndarray, sr: int) -> np.ndarray:
    """A model-rate sample is known when every input sample within one input period of it is known."""
    if sr == spectral.MODEL_SR:
        return known
    n = round(known.size * spectral.MODEL_SR / sr)
    pos = np.arange(n) * sr / spectral.MODEL_SR
    lo = np.clip(np.floor(pos).astype(int) - 1, 0, known.size - 1)
    hi = np.clip(np.ceil(pos).astype(int) + 1, 0, known.size - 1)
    bad = np.concatenate([[0], np.cumsum(~known)])
    return (bad[hi + 1] - bad[lo]) == 0


def fill_samples(model: InpaintModel | None, samples: np.ndarray, known: np.ndarray, *, sr: int = spectral.MODEL_SR,
                 levels: np.ndarray | None = None, steps: int | None = None,
                 generator: torch.Generator | None = None,
                 on_gain: Callable[[int, int, float], None] | None = None) -> np.ndarray:
    """Fill the unknown samples of one channel ``samples: (L,)`` at rate ``sr``; known ones come back as is.

    ``levels: (L,)``, if given, holds the signed clip level of each clipped unknown sample (0 for
    gap samples): those keep ``|x| >= |level|``. ``model=None`` gives the AR guess alone (the
    classical baseline). Away from the model rate the AR guess is made at ``sr`` and the network's
    correction, computed at 16 kHz, is added on top (so content above 8 kHz comes from AR).
    ``on_gain(start, stop, beta)`` is called for each gap run that :func:`shrink_weight` scales.
    """
    samples = np.asarray(samples)
    known = np.asarray(known, bool)
    if known.all():
        return samples.copy()
    x = np.where(known, np.nan_to_num(samples.astype(np.float64)), 0.0)
    clipped = levels is not None and bool(np.any(levels[~known] != 0))
    if clipped:
        x = np.where(known, x, levels)
    guess = first_guess(x, known, clipped, sr=sr)
    out = guess
    if model is not None:
        gap = ~known if levels is None else (~known) & (levels == 0)  # unknown and not clipped
        weight = correction_weight(model, known, sr, None if levels is None else levels != 0)
        correction = np.zeros(samples.size)
        if weight.any():  # else every run is a gap shorter than min_model_ms: the network is not run
            correction = network_correction(model, guess, known, gap, sr, steps=steps, generator=generator)
        if model.highband_hz > 0 and model.min_model_ms > 0:
            short = np.zeros(x.size, bool)
            for a, b in gaps.runs(gap).tolist():
                short[a:b] = b - a < model.min_model_ms * sr / 1000
            if short.any():
                guess = refit_high_band(guess, short, sr, model.highband_hz)  # the guess is x on known samples
        if model.shrink_ms > 0:
            guess = guess * shrink_weight(guess, known, gap, sr, model.shrink_ms, on_gain=on_gain)
        out = guess + weight * correction
        if model.envelope_db > 0 and gap.any():
            # only frames touching gaps are raised (clipped runs are not): ~gap, not known
            raised = match_envelope(out, ~gap, sr, model.highpass_hz, model.envelope_db)
            out = np.where(gap, out + edge_taper(known, int(model.taper_ms * sr / 1000)) * (raised - out), out)
    if clipped:
        out = ar.project_clipped(out, ~known, np.where(known, 0.0, levels))
    result = samples.copy()
    result[~known] = out[~known].astype(samples.dtype)
    return result


def network_correction(model: InpaintModel, guess: np.ndarray, known: np.ndarray, gap: np.ndarray, sr: int, *,
                       steps: int | None, generator: torch.Generator | None) -> np.ndarray:
    """``refined - guess`` at rate ``sr`` (the network runs at 16 kHz); in ``gap`` samples only its
    content above the card's ``highpass_hz``."""
    low = _resample(guess, sr, spectral.MODEL_SR, round(guess.size * spectral.MODEL_SR / sr))
    known16 = known_at_model_rate(known, sr)
    refined = refine(model, torch.from_numpy(low)[None].float(), torch.from_numpy(known16)[None],
                     steps=steps, generator=generator)[0].double().numpy()
    correction = _resample(refined - low, spectral.MODEL_SR, sr, guess.size)
    if model.highpass_hz > 0:
        from scipy.signal import butter, sosfiltfilt

        high = sosfiltfilt(butter(4, model.highpass_hz, "highpass", fs=sr, output="sos"), correction)
        correction = np.where(gap, high, correction)  # clipped samples keep the whole correction
    return correction


def refit_high_band(x: np.ndarray, unknown: np.ndarray, sr: int, cutoff_hz: float) -> np.ndarray:
    """``x (L,)`` with its ``unknown`` samples' band above ``cutoff_hz`` re-interpolated by LSAR fitted
    on that band alone (order :data:`HIGHBAND_AR_ORDER`, :data:`HIGHBAND_SECONDS` of context each side).

    A full-band fit's residual is dominated by the loud low band, so its prediction of the quiet
    high band (where most STFT bins, and most of the log-spectral distance of a short gap, lie) is
    poor; a model of the high band alone predicts it better. The rest of ``x`` is returned as is and
    serves as data for the fit (other gaps' first guesses included: they are rarely within 0.1 s).
    """
    from scipy.signal import butter, sosfiltfilt

    high = sosfiltfilt(butter(6, cutoff_hz, "highpass", fs=sr, output="sos"), x)
    refit = ar.interpolate_around(np.where(unknown, 0.0, high), ~unknown, order=HIGHBAND_AR_ORDER,
                                  window=round(HIGHBAND_SECONDS * sr), iterations=GAP_AR_ITERATIONS,
                                  order_for=gap_ar_order)
    return np.where(unknown, x - high + refit, x)


def shrink_weight(x: np.ndarray, known: np.ndarray, gap: np.ndarray, sr: int, min_ms: float, *,
                  on_gain: Callable[[int, int, float], None] | None = None) -> np.ndarray:
    """Per-sample factor for the AR guess ``(L,)``: in each ``gap`` run of at least ``min_ms``,
    ``beta + (1 - beta) exp(-d / SHRINK_TAU_SECONDS)`` at ``d`` samples from the nearest known one; 1 elsewhere.

    ``beta`` is the least-squares gain ``<guess, x> / <guess, guess>`` (clipped to [0, 1]) of the
    first guess (one fit per member, :data:`SHRINK_ITERATIONS`) on two pseudo-gaps of the run's length
    cut from the known context on each side (half a run plus 10 ms away). ``x`` holds the input with
    the unknown samples already filled, which the pseudo-gap fits treat as known. Deep inside a long
    gap in speech the guess is barely correlated with the signal, and its energy only adds error:
    there beta is ~0.4-0.5, for music ~0.9. ``on_gain(a, b, beta)`` hears each run's ``beta`` (runs
    without room for a pseudo-gap keep weight 1 and are not reported).
    """
    weight = np.ones(x.size)
    runs = [(a, b) for a, b in gaps.runs(gap).tolist() if b - a >= min_ms * sr / 1000]
    if not runs:
        return weight
    probe = known.copy()  # where pseudo-gaps may go
    spots: list[list[tuple[int, int]]] = []
    for a, b in runs:
        length, away = b - a, (b - a) // 2 + round(0.01 * sr)
        mine = [(p, q) for p, q in ((a - away - length, a - away), (b + away, b + away + length))
                if p >= 0 and q <= x.size and probe[p:q].all()]
        for p, q in mine:
            probe[p:q] = False
        spots.append(mine)
    if not any(spots):
        return weight
    pseudo = np.zeros(x.size, bool)
    for p, q in (spot for mine in spots for spot in mine):
        pseudo[p:q] = True
    filled = first_guess(np.where(pseudo, 0.0, x), ~pseudo, False, sr=sr, iterations=SHRINK_ITERATIONS)
    distance = distance_transform_edt(~known)
    for (a, b), mine in zip(runs, spots):
        den = sum(float(filled[p:q] @ filled[p:q]) for p, q in mine)
        if den <= 0:  # no room for a pseudo-gap (or a silent one): the guess stays as it is
            continue
        num = sum(float(filled[p:q] @ x[p:q]) for p, q in mine)
        beta = float(np.clip(num / den, 0.0, 1.0))
        weight[a:b] = beta + (1 - beta) * np.exp(-distance[a:b] / (SHRINK_TAU_SECONDS * sr))
        if on_gain is not None:
            on_gain(a, b, beta)
    return weight


def match_envelope(x: np.ndarray, known: np.ndarray, sr: int, low_hz: float, max_db: float,
                   context_frames: int = 3) -> np.ndarray:
    """``x: (L,)`` at rate ``sr``, with the bins above ``low_hz`` of the frames that touch unknown
    samples raised (never lowered, by at most ``max_db``) to the level of the nearest fully known
    frames on each side, interpolated in log magnitude across the gap (32 ms Hann, hop 1/4).

    A least-squares fill is too quiet in the high band, where nothing predicts the waveform; the
    log-spectral distance punishes that hole, while the waveform error of a quiet high band is small.
    """
    n_fft = 2 ** int(np.ceil(np.log2(0.032 * sr)))
    hop = n_fft // 4
    window = torch.hann_window(n_fft, dtype=torch.float64)
    spec = torch.stft(torch.from_numpy(x.astype(np.float64)), n_fft, hop, window=window, return_complex=True)
    mag = spec.abs().numpy()
    centres = np.arange(mag.shape[1]) * hop
    # frames are centred: frame k covers x[k hop - n_fft/2, k hop + n_fft/2), i.e. pad[k hop : k hop + n_fft]
    unknown_per_window = np.convolve(np.pad(~known, n_fft // 2).astype(np.int64), np.ones(n_fft, np.int64), "valid")
    touched = unknown_per_window[centres] > 0
    full = ~touched
    bins = np.fft.rfftfreq(n_fft, 1 / sr) >= low_hz
    log_mag = np.log(mag + 1e-12)
    gain = np.ones_like(mag)
    idx = np.flatnonzero(full)
    for k in np.flatnonzero(touched):
        left, right = idx[idx < k][-context_frames:], idx[idx > k][:context_frames]
        if not left.size or not right.size:
            continue
        a, b = left[-1], right[0]
        w = (k - a) / (b - a)
        target = (1 - w) * log_mag[:, left].mean(axis=1) + w * log_mag[:, right].mean(axis=1)
        raise_by = np.clip(target - log_mag[:, k], 0.0, max_db * np.log(10) / 20)
        gain[bins, k] = np.exp(raise_by[bins])
    out = torch.istft(spec * torch.from_numpy(gain), n_fft, hop, window=window, length=x.size)
    return out.numpy()

