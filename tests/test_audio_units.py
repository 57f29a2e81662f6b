"""Audio building blocks against known truth: metrics, SNR/sigma estimate, chunking, STFT round trip."""

import itertools

import numpy as np
import pytest
import torch

from restore.audio import spectral
from restore.audio.degrade import add_noise_at_snr, augment_noise, coloured_noise, resample_linear
from restore.audio.denoise import AudioModel, denoise_samples, start_step
from restore.audio.estimate import estimate_degradation
from restore.audio.metrics import estoi, lsd, pesq_wb, si_sdr
from restore.audio.stream import crossfade, plan_chunks, stream_chunks
from restore.diffusion import Schedule

SR = 16_000


def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Voiced bursts (harmonics of a gliding f0 under a syllable envelope) separated by true pauses."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 2 * (np.sin(2 * np.pi * 0.31 * t) > -0.3)
    return (0.2 * voiced * envelope * (1 + 0.1 * rng.standard_normal(t.size))).astype(np.float32)


def test_si_sdr_identical_is_infinite_and_scale_invariant():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(SR).astype(np.float32)
    est = ref + 0.1 * rng.standard_normal(SR).astype(np.float32)
    assert si_sdr(ref, ref) == float("inf")
    assert si_sdr(ref, 3.7 * ref) > 100  # float32 rounding of the scaled copy only
    assert si_sdr(ref, 0.25 * est) == pytest.approx(si_sdr(ref, est), abs=1e-6)


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_si_sdr_of_independent_noise_equals_snr(snr):
    rng = np.random.default_rng(1)
    clean = speech_like(4.0, rng)
    noisy = add_noise_at_snr(clean, rng.standard_normal(clean.size).astype(np.float32), snr)
    assert si_sdr(clean, noisy) == pytest.approx(snr, abs=0.3)


def test_perceptual_metrics_of_identical_signals():
    clean = speech_like(3.0, np.random.default_rng(2))
    assert pesq_wb(clean, clean, SR) == pytest.approx(4.64, abs=0.01)
    assert estoi(clean, clean, SR) == pytest.approx(1.0, abs=1e-6)
    assert lsd(clean, clean, SR) == pytest.approx(0.0, abs=1e-9)
    noisy = add_noise_at_snr(clean, np.random.default_rng(3).standard_normal(clean.size).astype(np.float32), 0.0)
    assert pesq_wb(clean, noisy, SR) < 2.0 and estoi(clean, noisy, SR) < 0.9 and lsd(clean, noisy, SR) > 1.0
    for value in (pesq_wb(clean, noisy, SR), estoi(clean, noisy, SR), lsd(clean, noisy, SR)):
        assert type(value) is float


@pytest.mark.parametrize("snr", [5.0, 10.0, 20.0])
@pytest.mark.parametrize("exponent,tolerance_db", [(0.0, 1.5), (1.0, 1.5)])  # white and pink noise
def test_snr_estimate_recovers_known_snr(snr, exponent, tolerance_db):
    rng = np.random.default_rng(int(snr) + 10 * int(exponent))
    clean = speech_like(8.0, rng)
    noisy = add_noise_at_snr(clean, coloured_noise(clean.size, exponent, rng), snr)
    est = float(estimate_degradation(torch.from_numpy(noisy)[None]).snr_db[0])
    assert est == pytest.approx(snr, abs=tolerance_db)


def test_sigma_estimate_tracks_true_model_domain_noise():
    """The estimated sigma is within 25% of the measured std of (noisy - clean) in the model domain."""
    rng = np.random.default_rng(5)
    clean = speech_like(8.0, rng)
    for snr in (0.0, 10.0, 20.0):
        noisy = add_noise_at_snr(clean, rng.standard_normal(clean.size).astype(np.float32), snr)
        x = torch.from_numpy(noisy)[None]
        scale = spectral.level_of(x)
        true = (spectral.to_spec(x, scale=scale).values - spectral.to_spec(torch.from_numpy(clean)[None], scale=scale).values)
        sigma_true = float(true.pow(2).mean().sqrt())
        sigma_est = float(estimate_degradation(x, scale).sigma[0])
        assert sigma_est == pytest.approx(sigma_true, rel=0.25), (snr, sigma_est, sigma_true)


def test_clean_input_starts_at_step_zero_and_noisier_starts_later():
    schedule = Schedule.create("linear", 1000)
    clean = speech_like(6.0, np.random.default_rng(6))
    rng = np.random.default_rng(7)
    t = [int(start_step(schedule, estimate_degradation(torch.from_numpy(clean)[None]).sigma)[0])]
    for snr in (30.0, 15.0, 0.0):
        noisy = add_noise_at_snr(clean, rng.standard_normal(clean.size).astype(np.float32), snr)
        t.append(int(start_step(schedule, estimate_degradation(torch.from_numpy(noisy)[None]).sigma)[0]))
    assert t[0] == 0
    assert t == sorted(t) and t[-1] > t[1]


def test_stft_round_trip_is_exact():
    x = torch.from_numpy(speech_like(2.0, np.random.default_rng(8)))[None]
    spec = spectral.to_spec(x)
    assert torch.allclose(spectral.from_spec(spec.values, spec.scale, spec.length), x, atol=1e-5)


class _CondNet:
    """A "denoiser" that predicts the observation itself: restoring must then give the input back."""

    schedule = Schedule.create("linear", 1000)

    def __call__(self, x_t, t, cond):
        return cond


@pytest.mark.parametrize("shifts", [1, 3, 4])
def test_frame_offsets_are_realigned_before_averaging(shifts):
    x = speech_like(1.3, np.random.default_rng(9))
    noisy = torch.from_numpy(x + 0.05 * np.random.default_rng(10).standard_normal(x.size).astype(np.float32))[None]
    model = AudioModel(net=_CondNet(), version="test", default_steps=1, bf16=False, shifts=shifts)
    out = denoise_samples(model, noisy, generator=torch.Generator().manual_seed(0))
    assert int(out.t_star[0]) > 0
    assert out.samples.shape == noisy.shape
    assert torch.allclose(out.samples, noisy, atol=1e-3 * float(noisy.abs().max()))
    with pytest.raises(ValueError, match="shifts"):
        denoise_samples(model, noisy, shifts=0)


@pytest.mark.parametrize("frames,chunk,overlap", [(10, 4, 1), (1000, 300, 50), (299, 300, 50), (301, 300, 50)])
def test_chunks_cover_and_identity_stream_is_exact(frames, chunk, overlap):
    chunks = plan_chunks(frames, chunk, overlap)
    assert chunks[0].start == 0 and chunks[-1].stop == frames
    for a, b in itertools.pairwise(chunks):
        assert a.stop - b.start == overlap
    x = np.random.default_rng(9).standard_normal((frames, 2)).astype(np.float32)
    out = np.concatenate(list(stream_chunks(chunks, lambda c: x[c.start : c.stop].copy(), lambda c, b: b)))
    np.testing.assert_allclose(out, x, atol=1e-6)
    fade = crossfade(overlap)
    np.testing.assert_allclose(fade + fade[::-1], 1.0, atol=1e-6)


def _band_db(x: np.ndarray, lo: float, hi: float, sr: int = 16_000) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / sr)
    return float(10 * np.log10(power[(freqs >= lo) & (freqs < hi)].mean()))


def test_augmented_noise_is_new_colour_at_unit_rms_and_seeded():
    white = coloured_noise(16_000, 0.0, np.random.default_rng(0))
    tilts = []
    for seed in range(8):
        out = augment_noise(white, np.random.default_rng(seed))
        assert out.shape == white.shape and out.dtype == np.float32 and np.isfinite(out).all()
        assert abs(float(out.std()) - 1.0) < 1e-3
        tilts.append(_band_db(out, 4000, 8000) - _band_db(out, 100, 500))
    # white noise has no tilt; the random EQ gives each draw its own (+-12 dB control points)
    assert np.ptp(tilts) > 6.0
    again = augment_noise(white, np.random.default_rng(3))
    assert np.array_equal(again, augment_noise(white, np.random.default_rng(3)))


def test_augmented_noise_mixes_in_a_second_noise():
    rng = np.random.default_rng(1)
    low = coloured_noise(16_000, 2.0, rng)  # brown: almost nothing above 4 kHz
    high = np.diff(coloured_noise(16_001, 0.0, rng)).astype(np.float32)  # bright
    alone = augment_noise(low, np.random.default_rng(5))
    mixed = augment_noise(low, np.random.default_rng(5), other=high)
    assert _band_db(mixed, 4000, 8000) - _band_db(alone, 4000, 8000) > 10.0


def test_resample_linear_keeps_the_ends_and_changes_the_length():
    x = np.sin(np.linspace(0, 20, 1000)).astype(np.float32)
    for n in (700, 1400):
        y = resample_linear(x, n)
        assert y.shape == (n,) and y[0] == x[0] and abs(y[-1] - x[-1]) < 1e-6


def test_noise_augment_schedule_by_step_and_validation():
    from restore.audio.config import TrainConfig

    cfg = TrainConfig(noise_augment=((0, 0.0), (4016, 0.8)))
    assert [cfg.noise_augment_share(s) for s in (0, 4015, 4016, 9000)] == [0.0, 0.0, 0.8, 0.8]
    for bad in (((10, 0.5),), ((0, 0.0), (0, 0.5)), ((0, 1.5),), ()):
        with pytest.raises(ValueError, match="noise_augment"):
            TrainConfig(noise_augment=bad)
