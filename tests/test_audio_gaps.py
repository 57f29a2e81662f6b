"""Gap filling and declipping: AR interpolation, detection, the fill pipeline's guarantees, the CLI."""

import json

import numpy as np
import pytest
import soundfile as sf

from restore.audio import ar, gaps, repair
from restore.audio.inpaint import (
    GAP_AR_ORDER,
    edge_taper,
    fill_samples,
    known_at_model_rate,
    load_inpaint_model,
)
from restore.audio.metrics import gap_lsd, gap_snr
from restore.audio.pipeline import restore_audio
from restore.cli import main
from restore.errors import InputError


def harmonic(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Two harmonics with a slow vibrato and a little noise: AR-predictable, not trivially periodic."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * 220 * t + 0.5 * np.sin(2 * np.pi * 2 * t)
    noise = 0.003 * np.random.default_rng(seed).standard_normal(t.size)
    return 0.4 * np.sin(phase) + 0.15 * np.sin(3 * phase + 1) + noise


def write(path, x, sr, subtype="PCM_16"):
    sf.write(path, np.asarray(x, np.float32), sr, subtype=subtype)
    return path


# ---- AR interpolation and declipping ---------------------------------------------------------

def test_lsar_fills_a_20ms_gap_of_a_harmonic_signal_and_keeps_known_samples():
    x = harmonic(1.0, 16000)
    known = np.ones(x.size, bool)
    known[8000:8320] = False
    filled = ar.interpolate(np.where(known, x, 0.0), known)
    assert np.array_equal(filled[known], x[known])
    assert gap_snr(x, filled, 8000, 8320) > 20.0
    assert gap_snr(x, np.where(known, x, 0.0), 8000, 8320) == pytest.approx(0.0)


def test_lsar_handles_several_gaps_at_once():
    x = harmonic(1.0, 16000, seed=1)
    known = np.ones(x.size, bool)
    for a in (3000, 3400, 9000):
        known[a : a + 200] = False
    filled = ar.interpolate(np.where(known, x, 0.0), known)
    for a in (3000, 3400, 9000):
        assert gap_snr(x, filled, a, a + 200) > 15.0


def test_lsar_levinson_path_matches_the_banded_solve(monkeypatch):
    """A lone contiguous gap at a high order is solved as a Toeplitz system; the result equals the
    banded Cholesky solve that every other mask uses (and that a lower LEVINSON_FACTOR disables)."""
    x = harmonic(1.0, 16000, seed=2)
    known = np.ones(x.size, bool)
    known[6000:8400] = False  # 150 ms
    known[12000:12100] = known[12300:12400] = False  # two runs less than p apart: one banded system
    a = ar.fit_ar(x, known, 1024)
    fast = ar.lsar_fill(x, known, a)
    monkeypatch.setattr(ar, "LEVINSON_FACTOR", float("inf"))
    banded = ar.lsar_fill(x, known, a)
    assert np.array_equal(fast[known], x[known])
    np.testing.assert_allclose(fast, banded, rtol=0, atol=1e-9)
    monkeypatch.setattr(ar, "LEVINSON_FACTOR", 40)
    calls = []
    real = ar.solveh_banded
    monkeypatch.setattr(ar, "solveh_banded", lambda band, b, **kw: calls.append(b.size) or real(band, b, **kw))
    ar.lsar_fill(x, known, a)
    assert calls == [200]  # the 150 ms gap took the Toeplitz path; the coupled pair (2 x 100 samples) did not


def test_consistent_declipping_keeps_the_constraint_and_improves_sdr():
    x = harmonic(0.5, 16000)
    level = 0.6 * np.abs(x).max()  # a third of the samples clipped (at 0.4 of the peak it is 83%)
    clipped = np.clip(x, -level, level)
    mask = np.abs(x) >= level
    out = ar.declip(clipped, mask)
    assert np.array_equal(out[~mask], clipped[~mask])
    assert np.all(np.abs(out[mask]) >= level - 1e-12)
    assert np.all(np.sign(out[mask]) == np.sign(clipped[mask]))

    def sdr(est):
        return 10 * np.log10(np.sum(x**2) / np.sum((x - est) ** 2))

    assert sdr(out) > sdr(clipped) + 10.0  # measured 11.9 -> 27.9 dB


def test_gap_lsd_is_zero_for_a_perfect_fill_and_large_for_silence():
    x = harmonic(0.5, 16000)
    assert gap_lsd(x, x, 4000, 4800, 16000) == pytest.approx(0.0, abs=1e-9)
    zeroed = x.copy()
    zeroed[4000:4800] = 0
    assert gap_lsd(x, zeroed, 4000, 4800, 16000) > 20.0


# ---- detection -------------------------------------------------------------------------------

def test_dropout_inside_active_audio_is_found_with_its_exact_extent():
    sr = 16000
    x = harmonic(2.0, sr)
    x[12000:12800] = 0.0  # 50 ms
    x[20000:20020] = 0.0  # 1.25 ms: below the 2 ms minimum
    found = gaps.find_dropouts(x, sr)
    assert [(r.start, r.stop, r.kind) for r in found] == [(12000, 12800, "dropout")]


def test_pause_between_phrases_is_not_a_gap():
    sr = 16000
    t = np.arange(sr) / sr
    fade = np.sin(np.pi * t) ** 2  # fades in and out to digital silence
    phrase = (0.4 * np.sin(2 * np.pi * 200 * t) * fade).astype(np.float32)
    phrase[np.abs(phrase) < 1 / 32768] = 0.0
    x = np.concatenate([phrase, np.zeros(int(0.3 * sr), np.float32), phrase])
    assert gaps.find_dropouts(x, sr) == []


def test_nan_runs_and_clipping_are_found():
    x = harmonic(1.0, 16000)
    x[5000:5100] = np.nan
    assert [(r.start, r.stop, r.kind) for r in gaps.find_nan(x)] == [(5000, 5100, "nan")]
    y = harmonic(1.0, 16000)
    level = 0.3
    clipped = np.clip(y, -level, level)
    pos, neg = gaps.clip_levels(clipped)
    assert pos == pytest.approx(level) and neg == pytest.approx(-level)
    runs = gaps.find_clipped(clipped, (pos, neg))
    mask = np.zeros(y.size, bool)
    for r in runs:
        mask[r.start : r.stop] = True
    assert np.array_equal(mask, np.abs(y) >= level)
    assert gaps.clip_levels(harmonic(1.0, 16000, seed=3)) == (None, None)


def test_parse_gaps():
    assert gaps.parse_gaps("1.20-1.35, 4-4.1") == [(1.2, 1.35), (4.0, 4.1)]
    for bad in ("1.2", "2-1", "a-b", ",", "1.0-1.0"):
        with pytest.raises(InputError):
            gaps.parse_gaps(bad)


def test_detection_streams_blocks_without_losing_or_doubling_regions(tmp_path, monkeypatch):
    sr = 16000
    x = harmonic(3.0, sr)
    for a in (15900, 31990, 40000):  # two straddle a 1 s block boundary
        x[a : a + 400] = 0.0
    path = write(tmp_path / "x.wav", x, sr)
    monkeypatch.setattr(repair, "BLOCK_SECONDS", 1.0)
    from restore.audio import io

    info = io.load_info(path)
    regions = repair.detect(info, repair.scan(info), task="fill")
    assert [(r.start, r.stop) for r in regions] == [(15900, 16300), (31990, 32390), (40000, 40400)]


def test_known_at_model_rate_is_conservative():
    known = np.ones(44100, bool)
    known[10000:10441] = False
    k16 = known_at_model_rate(known, 44100)
    assert k16.size == 16000
    pos = np.flatnonzero(~k16) * 44100 / 16000
    assert pos.min() <= 10000 and pos.max() >= 10440
    taper = edge_taper(known, 10)
    assert taper[known].max() == 0 and taper[10220] == 1.0


# ---- the fill pipeline -----------------------------------------------------------------------

def test_fill_keeps_every_sample_outside_the_regions_bit_identical(tmp_path, tiny_inpaint_model):
    sr = 16000
    x = harmonic(3.0, sr) + 0.01 * np.random.default_rng(5).standard_normal(3 * sr)
    x[8000:8800] = 0.0
    x[30000:31600] = 0.0
    src = write(tmp_path / "in.wav", x, sr)
    before = src.read_bytes()
    record = restore_audio(src, tmp_path / "out.wav", task="fill", gaps_marked="2.5-2.52", progress=False,
                           inpaint_weights=tiny_inpaint_model)
    a, _ = sf.read(src, dtype="int16")
    b, _ = sf.read(tmp_path / "out.wav", dtype="int16")
    unknown = np.zeros(a.size, bool)
    for r in record["regions"]["listed"]:
        unknown[r["start"] : r["stop"]] = True
    assert np.array_equal(a[~unknown], b[~unknown])
    assert np.count_nonzero(b[8000:8800]) > 700 and np.count_nonzero(b[30000:31600]) > 1500
    assert record["regions"]["counts"] == {"dropout": 2, "nan": 0, "marked": 1, "clipped": 0, "click": 0}
    assert not record["params"]["denoised"] and record["inpaint_model"]["version"] == "test"
    assert src.read_bytes() == before
    assert json.loads((tmp_path / "out.json").read_text())["regions"]["filled_seconds"] == pytest.approx(
        (800 + 1600 + 320) / sr)


def test_stereo_44k_fill_per_channel_and_low_confidence_for_long_gaps(tmp_path, tiny_inpaint_model):
    sr = 44100
    x = np.stack([harmonic(2.0, sr), 0.8 * harmonic(2.0, sr, seed=4)], axis=1)
    x[30000:31000, 0] = 0.0  # left only, 23 ms
    x[50000:66000, 1] = 0.0  # right only, 363 ms: filled but flagged
    src = write(tmp_path / "in.flac", x, sr, subtype="PCM_24")
    record = restore_audio(src, tmp_path / "out.flac", task="fill", progress=False,
                           inpaint_weights=tiny_inpaint_model)
    assert [(r["channel"], r["start"], r["stop"], r["confidence"]) for r in record["regions"]["listed"]] == [
        (0, 30000, 31000, "normal"), (1, 50000, 66000, "low")]
    a, _ = sf.read(src)
    b, _ = sf.read(tmp_path / "out.flac")
    assert sf.info(tmp_path / "out.flac").subtype == "PCM_24" and b.shape == a.shape
    assert np.array_equal(np.delete(a[:, 0], np.s_[30000:31000]), np.delete(b[:, 0], np.s_[30000:31000]))
    assert np.array_equal(np.delete(a[:, 1], np.s_[50000:66000]), np.delete(b[:, 1], np.s_[50000:66000]))
    assert gap_snr(harmonic(2.0, sr), b[:, 0], 30000, 31000) > 3.0  # AR first guess is good on a 23 ms gap


def test_nan_run_is_filled_in_auto_and_refused_in_denoise(tmp_path, tiny_inpaint_model):
    sr = 16000
    x = harmonic(1.0, sr).astype(np.float32)
    x[4000:4100] = np.nan
    src = write(tmp_path / "nan.wav", x, sr, subtype="FLOAT")
    record = restore_audio(src, tmp_path / "out.wav", progress=False, inpaint_weights=tiny_inpaint_model)
    out, _ = sf.read(tmp_path / "out.wav")
    assert np.isfinite(out).all() and record["regions"]["counts"]["nan"] == 1
    with pytest.raises(InputError, match="NaN"):
        restore_audio(src, tmp_path / "out2.wav", task="denoise", progress=False)
    assert not (tmp_path / "out2.wav").exists()


def test_declip_full_scale_int16_scales_the_output_and_restores_peaks(tmp_path, tiny_inpaint_model):
    sr = 16000
    y = 2.2 * harmonic(1.0, sr)  # peak ~1.2: clipped at full scale
    src = write(tmp_path / "clip.wav", np.clip(y, -1, 1), sr)
    record = restore_audio(src, tmp_path / "out.wav", task="declip", progress=False,
                           inpaint_weights=tiny_inpaint_model)
    assert record["regions"]["counts"]["clipped"] > 10
    gain = record["params"]["output_gain"]
    assert 0.4 < gain < 1.0
    out, _ = sf.read(tmp_path / "out.wav")
    clipped_in, _ = sf.read(src)
    assert np.abs(out).max() <= 1.0 and record["metrics"]["clipped_samples"] == 0
    mask = np.abs(clipped_in) >= gaps.FULL_SCALE
    assert np.all(np.abs(out[mask]) >= gain * 0.99997 - 1e-4)  # the constraint |x| >= level, after the gain

    def sdr(est):
        return 10 * np.log10(np.sum(y**2) / np.sum((y - est) ** 2))

    assert sdr(out / gain) > sdr(clipped_in) + 1.0


def test_cli_fill_prints_a_summary_and_bad_gaps_are_one_line_errors(tmp_path, capsys, tiny_inpaint_model,
                                                                   monkeypatch):
    from restore.audio import inpaint

    monkeypatch.setattr(inpaint, "DEFAULT_WEIGHTS", tiny_inpaint_model)
    from restore.audio import pipeline

    monkeypatch.setattr(pipeline, "INPAINT_WEIGHTS", tiny_inpaint_model)
    sr = 16000
    x = harmonic(1.0, sr)
    x[6000:6400] = 0
    src = write(tmp_path / "in.wav", x, sr)
    assert main(["audio", str(src), "-o", str(tmp_path / "out.wav"), "--task", "fill"]) == 0
    assert "filled 1 dropout" in capsys.readouterr().out
    for gaps_arg, task in (("3-2", "fill"), ("0.1-0.2", "declip"), ("9-9.5", "fill")):
        code = main(["audio", str(src), "-o", str(tmp_path / "o2.wav"), "--gaps", gaps_arg, "--task", task, "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("restore: error:") and "\n" not in err, err
        assert not (tmp_path / "o2.wav").exists()


def test_fill_samples_without_model_is_the_mean_of_the_local_ar_fills():
    x = harmonic(1.2, 16000)
    known = np.ones(x.size, bool)
    known[9000:9400] = False
    observed = np.where(known, x, 0)
    base = fill_samples(None, observed, known)
    members = [ar.interpolate(observed[9000 - w : 9400 + w], known[9000 - w : 9400 + w], order=order, iterations=3)
               for order, w in ((GAP_AR_ORDER, 8000), (512, 1600))]
    assert np.allclose(base[9000:9400], np.mean([m[w : w + 400] for m, w in zip(members, (8000, 1600))], axis=0))
    assert np.array_equal(base[known], observed[known])
    assert not np.allclose(base, ar.interpolate(observed, known, order=GAP_AR_ORDER, iterations=3))


def test_local_ar_fit_follows_a_change_of_sound_that_a_whole_signal_fit_averages_away():
    """Two voiced sounds: 0.5 s at 100 Hz pitch with a 700 Hz formant, then 0.5 s at 142 Hz with an
    1800 Hz one, and a 20 ms gap 60 ms after the change. A fit on the gap's 100 ms surroundings models
    the second sound; one on the whole second mixes both."""
    from scipy.signal import lfilter

    n = np.arange(16000)

    def voice(period: int, formant: float) -> np.ndarray:
        pulses = (n % period == 0).astype(float)
        return lfilter([1], [1, -1.8 * np.cos(2 * np.pi * formant / 16000), 0.81], pulses)

    x = np.where(n < 8000, voice(160, 700), voice(113, 1800))
    x = x / np.abs(x).max() + 0.01 * np.random.default_rng(0).standard_normal(n.size)
    known = np.ones(n.size, bool)
    known[8960:9280] = False
    observed = np.where(known, x, 0)
    local = ar.interpolate_around(observed, known, order=128, window=1600)
    whole = ar.interpolate(observed, known, order=128)
    assert np.array_equal(local[known], observed[known])
    assert gap_snr(x, local, 8960, 9280) > gap_snr(x, whole, 8960, 9280) + 1.0


def test_interpolate_around_shares_one_fit_between_close_gaps_and_fills_far_ones_separately():
    x = harmonic(1.0, 16000)
    known = np.ones(x.size, bool)
    for a in (3000, 3500, 12000):  # the first two are within 2 windows of each other
        known[a : a + 160] = False
    observed = np.where(known, x, 0)
    out = ar.interpolate_around(observed, known, order=128, window=800)
    near = ar.interpolate(observed[2200:4460], known[2200:4460], order=128)
    far = ar.interpolate(observed[11200:12960], known[11200:12960], order=128)
    assert np.allclose(out[2200:4460], near) and np.allclose(out[11200:12960], far)
    assert gaps.runs(~known).tolist() == [[3000, 3160], [3500, 3660], [12000, 12160]]


def test_long_ar_guess_spans_a_pitch_period_the_baseline_order_cannot():
    """A 100 Hz voice-like pulse train (period 160 samples > order 128): order 128 cannot carry the
    periods across a 50 ms gap, the first guess's order does."""
    from scipy.signal import lfilter

    n = np.arange(16000)
    pulses = (n % 160 == 0).astype(float)
    x = lfilter([1], [1, -1.6 * np.cos(2 * np.pi * 700 / 16000), 0.64], pulses)
    x += 0.001 * np.random.default_rng(0).standard_normal(n.size)
    known = np.ones(n.size, bool)
    known[8000:8800] = False
    observed = np.where(known, x, 0)
    ours = gap_snr(x, fill_samples(None, observed, known), 8000, 8800)
    baseline = gap_snr(x, ar.interpolate(observed, known, order=128, iterations=3), 8000, 8800)
    assert baseline < 3 and ours > 30, (baseline, ours)


def test_highpass_keeps_the_ar_guess_below_its_cutoff_in_gaps(tiny_inpaint_model):
    from dataclasses import replace

    sr = 16000
    x = harmonic(1.0, sr)
    known = np.ones(x.size, bool)
    known[6000:9200] = False  # 200 ms
    observed = np.where(known, x, 0)
    model = load_inpaint_model(tiny_inpaint_model)
    base = fill_samples(None, observed, known)
    full = fill_samples(model, observed, known) - base
    high = fill_samples(replace(model, highpass_hz=1000.0, taper_ms=20.0), observed, known) - base
    assert np.array_equal(high[known], np.zeros(known.sum()))  # known samples untouched either way

    def low_share(d: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(d[~known])) ** 2
        freqs = np.fft.rfftfreq(int((~known).sum()), 1 / sr)
        return float(power[freqs < 500].sum() / power.sum())

    assert low_share(full) > 0.2  # the random network's correction has plenty below 500 Hz
    assert low_share(high) < 0.05  # after the high-pass the fill keeps AR's low band


def test_clipped_runs_keep_the_short_taper_when_gaps_get_a_long_one():
    from restore.audio.inpaint import InpaintModel, correction_weight

    sr = 16000
    known = np.ones(sr, bool)
    known[1000:1064] = False  # a 4 ms clipped run
    known[5000:8200] = False  # a 200 ms gap
    clipped = np.zeros(sr, bool)
    clipped[1000:1064] = True
    model = InpaintModel(net=None, version="test", default_steps=1, bf16=False, fill_sigma=0.3, taper_ms=20.0)
    weight = correction_weight(model, known, sr, clipped)
    assert weight[1032] == pytest.approx(1.0, abs=0.01)  # 2 ms into the clipped run: full correction
    assert weight[5032] < 0.05 and weight[5000 + 320] == pytest.approx(1.0, abs=0.01)  # gap: 20 ms ramp
    assert not weight[known].any()


def test_refit_high_band_predicts_a_quiet_high_partial_the_full_band_fit_misses():
    from scipy.signal import butter, sosfiltfilt

    from restore.audio.inpaint import refit_high_band

    sr = 16000
    t = np.arange(sr) / sr
    low = 0.5 * np.sin(2 * np.pi * 200 * t) + 0.3 * np.sin(2 * np.pi * 430 * t + 1)
    high = 0.003 * np.sin(2 * np.pi * 3700 * t + 0.5)  # 40 dB below the low band
    x = low + high + 1e-4 * np.random.default_rng(0).standard_normal(sr)
    unknown = np.zeros(sr, bool)
    unknown[8000:8320] = True  # 20 ms
    guess = ar.interpolate(np.where(unknown, 0.0, x), ~unknown, order=16)  # a low order misses the quiet partial
    refit = refit_high_band(np.where(unknown, guess, x), unknown, sr, 2000.0)
    assert np.array_equal(refit[~unknown], x[~unknown])
    hp = butter(6, 2000, "highpass", fs=sr, output="sos")

    def high_error(y):
        return np.sqrt(np.mean((sosfiltfilt(hp, y) - sosfiltfilt(hp, x))[8000:8320] ** 2))
    assert high_error(refit) < 0.3 * high_error(guess)


def test_shrink_weight_keeps_a_predictable_gap_and_shrinks_an_unpredictable_one_deep_inside():
    from restore.audio.inpaint import shrink_weight

    sr = 16000
    tone = harmonic(1.0, sr)
    noise = 0.3 * np.random.default_rng(1).standard_normal(sr)
    known = np.ones(sr, bool)
    known[7000:8600] = False  # 100 ms
    known[12000:12320] = False  # 20 ms: shorter than min_ms, left alone
    for x, deep in ((tone, (0.9, 1.0)), (noise, (0.0, 0.3))):
        observed = np.where(known, x, 0.0)
        heard: list[tuple] = []
        weight = shrink_weight(observed, known, ~known, sr, 40.0, on_gain=lambda *run, h=heard: h.append(run))
        assert np.all(weight[known] == 1.0) and np.all(weight[12000:12320] == 1.0)
        assert deep[0] <= weight[7800] <= deep[1]  # 50 ms from the edges
        (a, b, beta), = heard  # the 100 ms run only
        assert (a, b) == (7000, 8600)
        assert weight[7800] == pytest.approx(beta + (1 - beta) * np.exp(-800 / 320))  # 800 samples in, tau 20 ms
        assert weight[7000] > 0.95 and weight[8599] > 0.95  # the guess keeps its level at the edges


def test_match_envelope_raises_a_dull_gap_to_its_neighbours_high_band_and_never_lowers():
    from scipy.signal import butter, sosfiltfilt

    from restore.audio.inpaint import match_envelope

    sr = 16000
    rng = np.random.default_rng(4)
    hiss = sosfiltfilt(butter(4, 3000, "highpass", fs=sr, output="sos"), 0.05 * rng.standard_normal(sr))
    x = harmonic(1.0, sr) + hiss
    known = np.ones(sr, bool)
    known[7000:8600] = False  # 100 ms
    dull = np.where(known, x, harmonic(1.0, sr) + 0.2 * hiss)  # the gap has the tone, its hiss 14 dB too quiet

    def high_db(a: np.ndarray) -> float:
        band = sosfiltfilt(butter(4, 3000, "highpass", fs=sr, output="sos"), a)[7400:8200]
        return 10 * np.log10(np.mean(band**2))

    raised = match_envelope(dull, known, sr, 1500.0, 20.0)
    assert high_db(dull) < high_db(x) - 10  # the dull fill lacks most of the hiss
    assert abs(high_db(raised) - high_db(x)) < 3  # raised to the neighbours' level
    assert np.allclose(raised[:5000], dull[:5000], atol=1e-9)  # far from the gap nothing changes
    loud = np.where(known, x, x + 10 * hiss)
    assert high_db(match_envelope(loud, known, sr, 1500.0, 20.0)) == pytest.approx(high_db(loud), abs=0.1)


def test_shipped_inpaint_model_loads_with_its_card():
    model = load_inpaint_model()
    assert model.net.config.cond_channels == 3 and 0 < model.fill_sigma <= 2 and model.default_steps >= 1


def test_short_gaps_keep_the_ar_guess_and_blend_scales_the_correction(tiny_inpaint_model):
    from dataclasses import replace

    model = load_inpaint_model(tiny_inpaint_model)
    x = harmonic(1.0, 16000)
    known = np.ones(x.size, bool)
    known[3000:3320] = False  # 20 ms
    known[9000:10600] = False  # 100 ms
    observed = np.where(known, x, 0.0)
    ar_only = fill_samples(None, observed, known)
    gen = __import__("torch").Generator
    full = fill_samples(replace(model, min_model_ms=30.0), observed, known, generator=gen().manual_seed(0))
    half = fill_samples(replace(model, min_model_ms=30.0, blend=0.5), observed, known, generator=gen().manual_seed(0))
    assert np.array_equal(full[3000:3320], ar_only[3000:3320])  # shorter than 30 ms: AR alone
    assert not np.allclose(full[9000:10600], ar_only[9000:10600])
    np.testing.assert_allclose(half[9000:10600] - ar_only[9000:10600],
                               0.5 * (full[9000:10600] - ar_only[9000:10600]), atol=1e-9)


def test_a_channel_with_only_short_gaps_does_not_run_the_network_and_fills_the_same(tiny_inpaint_model):
    from dataclasses import replace

    class Unused:
        schedule = None

        def __call__(self, *args, **kwargs):
            raise AssertionError("the network ran although every gap is shorter than min_model_ms")

    model = replace(load_inpaint_model(tiny_inpaint_model), min_model_ms=30.0, highband_hz=2000.0, envelope_db=20.0)
    x = harmonic(1.0, 16000)
    known = np.ones(x.size, bool)
    known[3000:3320] = known[9000:9160] = False  # 20 and 10 ms
    observed = np.where(known, x, 0.0)
    with_net = fill_samples(model, observed, known)
    assert np.array_equal(fill_samples(replace(model, net=Unused()), observed, known), with_net)
    assert not np.array_equal(with_net, fill_samples(None, observed, known))  # refit and raise still apply



def test_the_envelope_raise_looks_only_at_frames_that_touch_gaps(tiny_inpaint_model, monkeypatch):
    """Clipped runs are many and everywhere in a clipped recording: the raise (for gaps only) must not
    walk their frames, and is skipped when there is no gap."""
    from dataclasses import replace

    from restore.audio import inpaint

    seen = []
    real = inpaint.match_envelope
    monkeypatch.setattr(inpaint, "match_envelope",
                        lambda x, known, *a, **k: seen.append(known.copy()) or real(x, known, *a, **k))
    model = replace(load_inpaint_model(tiny_inpaint_model), envelope_db=20.0)
    x = harmonic(1.0, 16000)
    c = 0.5 * np.abs(x).max()
    clipped = np.abs(x) >= c
    levels = np.where(clipped, np.sign(x) * c, 0.0)
    fill_samples(model, np.clip(x, -c, c), ~clipped, levels=levels)
    assert seen == []  # clipping only
    known = ~clipped
    known[9000:9800] = False  # a 50 ms gap as well
    levels[9000:9800] = 0.0
    fill_samples(model, np.where(known, np.clip(x, -c, c), 0.0), known, levels=levels)
    gap = np.zeros(x.size, bool)
    gap[9000:9800] = True
    assert len(seen) == 1 and np.array_equal(~seen[0], gap)  # the gap's samples only, not the clipped ones

def test_auto_fills_the_music_sample_and_does_not_denoise_music(tmp_path):
    """The held-out music clip with three dropouts: auto fills them (shipped model), sees a tonal
    noise floor and leaves the rest bit-identical instead of running the speech denoiser over it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "sample_data"
    record = restore_audio(root / "music_gaps_noisy.wav", tmp_path / "out.wav", reference=root / "music_gaps_clean.wav",
                           progress=False)
    assert not record["params"]["denoised"]
    assert record["metrics"]["auto_probe"]["noise_floor_roughness_db"] > 1.5
    assert record["regions"]["counts"]["dropout"] == 5  # 40 ms and 250 ms on both channels, 120 ms on the left
    for r in record["regions"]["listed"]:  # gaps >= shrink_ms (80) report their pseudo-gap gain
        assert ("predictability" in r) == (r["stop_s"] - r["start_s"] >= 0.08)
        assert 0.0 <= r.get("predictability", 0.0) <= 1.0
    ref = record["metrics"]["reference"]
    assert ref["output"]["si_sdr_db"] > ref["input"]["si_sdr_db"] + 1.0  # measured 12.0 -> 13.7 dB
    assert ref["output"]["lsd_db"] < 0.6 * ref["input"]["lsd_db"]  # measured 3.5 -> 1.4 dB
    a, _ = sf.read(root / "music_gaps_noisy.wav", dtype="int16")
    b, _ = sf.read(tmp_path / "out.wav", dtype="int16")
    unknown = np.zeros(a.shape, bool)
    for r in record["regions"]["listed"]:
        unknown[r["start"] : r["stop"], r["channel"]] = True
    assert np.array_equal(a[~unknown], b[~unknown])


def test_long_regions_get_a_lower_ar_order_so_their_cost_stays_bounded():
    from restore.audio.inpaint import GAP_AR_FULL_ORDER_SAMPLES, gap_ar_order

    assert gap_ar_order(800) == gap_ar_order(GAP_AR_FULL_ORDER_SAMPLES) == GAP_AR_ORDER
    full_cost = GAP_AR_FULL_ORDER_SAMPLES * GAP_AR_ORDER**2
    for unknown in (6000, 32000, 96000):
        order = gap_ar_order(unknown)
        assert ar.DEFAULT_ORDER <= order < GAP_AR_ORDER
        assert unknown * order**2 <= full_cost or order == ar.DEFAULT_ORDER


def steady_tone(seconds: float, sr: int, freq: float = 523.25, amp: float = 0.4) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t))).astype(np.float32)


def on_grid(x: np.ndarray, bits: int) -> np.ndarray:
    step = 2.0 ** (1 - bits)
    return (np.round(x / step) * step).astype(np.float32)


def test_plateaus_of_a_coarse_grid_are_not_clipping_but_clipping_on_it_is():
    x = on_grid(steady_tone(1.0, 44100), 8)  # the top value repeats for ~5 samples at every peak
    lsb = 1 / 128
    assert gaps.clip_levels(x, lsb=lsb) == (None, None)
    assert gaps.clip_levels(x) != (None, None)  # judged on a 16-bit grid, the repeats look like plateaus
    clipped = on_grid(np.clip(steady_tone(1.0, 44100), -0.35, 0.35), 8)
    pos, neg = gaps.clip_levels(clipped, lsb=lsb)
    assert pos == pytest.approx(0.35, abs=lsb) and neg == pytest.approx(-0.35, abs=lsb)


def test_an_8_bit_pause_is_not_a_dropout_but_a_cut_is():
    sr = 16000
    t = np.arange(sr) / sr
    phrase = 0.4 * np.sin(2 * np.pi * 200 * t) * np.sin(np.pi * t) ** 2 + 0.01 * np.sin(2 * np.pi * 3100 * t)
    x = on_grid(np.concatenate([phrase, np.zeros(int(0.3 * sr)), phrase]), 8)
    assert gaps.find_dropouts(x, sr, lsb=1 / 128) == []
    cut = x.copy()
    cut[8000:8800] = 0.0  # 50 ms out of the loud middle of the first phrase
    (found,) = gaps.find_dropouts(cut, sr, lsb=1 / 128)
    assert found.start == 8000 and 8800 <= found.stop <= 8802  # a neighbouring sample may round to 0 too


@pytest.mark.parametrize("subtype,bits,lsb", [("PCM_U8", 8, 1 / 128), ("PCM_16", 16, 1 / 32768),
                                               ("PCM_16", 8, 1 / 128), ("FLOAT", 24, 1 / 32768)])
def test_scan_finds_the_grid_of_the_samples(tmp_path, subtype, bits, lsb):
    import soundfile as sf

    from restore.audio import io, repair

    x = steady_tone(0.5, 16000) + 0.01 * np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    sf.write(tmp_path / "x.wav", on_grid(x, bits), 16000, subtype=subtype)
    assert repair.scan(io.load_info(tmp_path / "x.wav")).lsb == pytest.approx(lsb)
