"""De-click (issue 23, item 2): impulses are found from both sides of an AR model and filled;
plucks and drum hits, whose onsets are unpredictable from one side only, are left alone."""

import numpy as np
import pytest
import soundfile as sf

from restore.audio import declick, gaps
from restore.audio.degrade import add_crackle, tape_hiss
from restore.audio.metrics import si_sdr
from restore.audio.pipeline import restore_audio

SR = 16000


def plucks_and_drums(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Karplus-Strong plucks (smoothed noise excitation) every 0.37 s and pitched drum hits with a
    noisy attack every 0.5 s: sharp onsets from silence, the transients a de-clicker must not touch."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    x = np.zeros(n)
    for k, at in enumerate(np.arange(0.1, seconds - 0.5, 0.37)):
        period = int(sr / [196, 247, 294, 392, 494][k % 5])
        buf = np.convolve(rng.uniform(-1, 1, period + 8), np.ones(8) / 8, "valid")[:period]
        out = np.empty(int(0.6 * sr))
        for j in range(out.size):
            out[j] = buf[j % period]
            buf[j % period] = 0.498 * (buf[j % period] + buf[(j + 1) % period])
        i0 = int(at * sr)
        x[i0 : i0 + out.size] += 0.3 * out[: n - i0]
    for at in np.arange(0.2, seconds, 0.5):
        i0, t = int(at * sr), np.arange(int(0.15 * sr)) / sr
        hit = 0.5 * np.sin(2 * np.pi * (60 + 100 * np.exp(-30 * t)) * t) * np.exp(-25 * t)
        hit += 0.1 * rng.standard_normal(t.size) * np.exp(-60 * t)
        x[i0 : i0 + t.size] += hit[: n - i0]
    return x.astype(np.float32)


def test_crackle_is_reproducible_and_its_mask_covers_every_change():
    x = plucks_and_drums(1.0, SR)
    a = add_crackle(x, SR, np.random.default_rng(3), crackle_per_s=40, clicks_per_s=3)
    b = add_crackle(x, SR, np.random.default_rng(3), crackle_per_s=40, clicks_per_s=3)
    np.testing.assert_array_equal(a.samples, b.samples)
    changed = a.samples != x
    assert changed.any() and not (changed & ~a.mask).any()
    assert 20 <= len(gaps.runs(a.mask)) <= 70  # Poisson(43) bursts, some merged


def test_tape_hiss_is_unit_rms_tilted_up_and_drifts():
    noise = tape_hiss(10 * SR, SR, np.random.default_rng(0), drift_db=6.0)
    assert noise.std() == pytest.approx(1.0, rel=1e-3)
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    f = np.fft.rfftfreq(noise.size, 1 / SR)
    assert spectrum[f > 6000].mean() > 2 * spectrum[(f > 200) & (f < 1000)].mean()
    levels = [noise[i : i + SR].std() for i in range(0, noise.size, SR)]
    assert 20 * np.log10(max(levels) / min(levels)) > 2.0


def test_clicks_are_found_and_onsets_are_not():
    x = plucks_and_drums(4.0, SR)
    false_alarms = declick.find_clicks(x, SR)
    assert len(false_alarms) <= 6  # measured 4 in 4 s (19 plucks and drum hits)
    hit = add_crackle(x, SR, np.random.default_rng(1), crackle_per_s=0.0, clicks_per_s=6.0, level=2.0)
    found = np.zeros(x.size, bool)
    for r in declick.find_clicks(hit.samples, SR):
        found[r.start : r.stop] = True
    clicks = gaps.runs(hit.mask)
    assert np.mean([found[a:b].any() for a, b in clicks]) >= 0.8


def test_auto_removes_crackle_from_plucks_and_leaves_the_clean_file_alone(tmp_path):
    x = plucks_and_drums(3.0, SR)
    noisy = add_crackle(x, SR, np.random.default_rng(2), crackle_per_s=30.0, clicks_per_s=2.0)
    sf.write(tmp_path / "crackle.wav", noisy.samples, SR, subtype="FLOAT")
    sf.write(tmp_path / "clean.wav", x, SR, subtype="FLOAT")
    record = restore_audio(tmp_path / "crackle.wav", tmp_path / "out.wav", task="auto", progress=False)
    out, _ = sf.read(tmp_path / "out.wav")
    assert record["regions"]["counts"]["click"] > 20
    assert si_sdr(x, out) > si_sdr(x, noisy.samples) + 6.0
    restore_audio(tmp_path / "clean.wav", tmp_path / "clean_out.wav", task="auto", progress=False)
    kept, _ = sf.read(tmp_path / "clean_out.wav")
    assert si_sdr(x, kept) >= 25.0
