"""Do no harm (issue 23, item 3): clean tones, chords and their 8-bit copies come out of
``--task auto`` unchanged or within 25 dB SI-SDR of the input."""

import numpy as np
import pytest
import soundfile as sf

from restore.audio.metrics import si_sdr
from restore.audio.pipeline import restore_audio


def chord(seconds: float, sr: int, freqs: tuple[float, ...], seed: int = 0) -> np.ndarray:
    """Steady flute-like notes: a few harmonics, slight vibrato, a soft attack; peak ~0.6."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t)
    for f in freqs:
        phase = 2 * np.pi * f * t + 0.002 * f / 5.5 * np.sin(2 * np.pi * 5.5 * t) + rng.uniform(0, 2 * np.pi)
        x += np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase)
    x *= np.minimum(1.0, t / 0.05)
    return (0.6 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("name,freqs,sr,subtype", [
    ("flute 8-bit", (523.25,), 44100, "PCM_U8"),
    ("chord 8-bit", (261.63, 329.63, 392.0), 22050, "PCM_U8"),
    ("flute 16-bit", (523.25,), 44100, "PCM_16"),
    ("chord 16-bit", (261.63, 329.63, 392.0), 16000, "PCM_16"),
])
def test_clean_tones_come_out_unchanged_or_above_25_db(tmp_path, name, freqs, sr, subtype):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, chord(2.0, sr, freqs), sr, subtype=subtype)
    record = restore_audio(src, dst, progress=False)
    x, _ = sf.read(src)
    y, _ = sf.read(dst)
    assert np.array_equal(x, y) or si_sdr(x, y) >= 25.0, (name, si_sdr(x, y), record["regions"]["counts"])
    assert record["regions"]["counts"]["clipped"] == 0, name  # the 8-bit grid's repeated peaks are no clipping


def test_a_denoised_result_that_took_signal_is_rejected():
    from restore.audio.pipeline import _rejected

    rng = np.random.default_rng(0)
    tone = chord(1.0, 16000, (440.0,))[:, None].astype(np.float64)
    noise = 0.01 * rng.standard_normal(tone.shape)  # ~33 dB SNR
    block = tone + noise
    snr = [10 * np.log10(np.mean(tone**2) / np.mean(noise**2))]
    assert not _rejected(block, tone, snr)[0]  # removed the noise only
    assert _rejected(block, 0.5 * tone, snr)[0]  # removed half the note: far more than the noise
    assert _rejected(block, block - 0.02 * tone, [25.0])[0]  # nearly clean, and what went is the note


def test_hissy_music_is_not_denoised_by_the_speech_model(tmp_path):
    """Sustained notes in white hiss at 15 dB: the floor minimum statistics sees still holds the
    notes (rough across frequency), so ``auto`` leaves them to the input instead of letting the speech
    model take them."""
    sr = 22050
    notes = np.concatenate([chord(1.5, sr, f, seed=k) for k, f in
                            enumerate([(261.63, 329.63, 392.0), (293.66, 369.99, 440.0), (246.94, 311.13, 392.0)])])
    hiss = np.random.default_rng(3).standard_normal(notes.size)
    hiss *= np.sqrt(np.mean(notes**2) / np.mean(hiss**2) / 10 ** 1.5)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, (notes + hiss).astype(np.float32), sr, subtype="FLOAT")
    record = restore_audio(src, dst, progress=False)
    x, _ = sf.read(src)
    y, _ = sf.read(dst)
    assert record["metrics"]["auto_probe"]["noise_floor_roughness_db"] >= 1.25, record["metrics"]["auto_probe"]
    assert si_sdr(x, y) >= 25.0
