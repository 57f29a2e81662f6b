"""Mains hum (issue 23, item D): found only when a 50/60 Hz comb holds over the whole file, removed
with narrow notches; the sidecar's ``findings`` says what was found and done."""

import numpy as np
import soundfile as sf

from restore.audio.degrade import add_crackle, add_noise_at_snr
from restore.audio.hum import estimate_hum, remove_hum
from restore.audio.metrics import si_sdr
from restore.audio.pipeline import restore_audio

SR = 16000


def melody(seconds: float, sr: int, notes: list[float]) -> np.ndarray:
    """One note after another (equal lengths), 3 harmonics each, soft attacks; peak ~0.5."""
    per = int(seconds * sr) // len(notes)
    t = np.arange(per) / sr
    parts = [np.minimum(1.0, t / 0.03) * sum(np.sin(2 * np.pi * h * f * t) / h for h in (1, 2, 3)) for f in notes]
    x = np.concatenate(parts)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def mains(n: int, sr: int, f0: float) -> np.ndarray:
    t = np.arange(n) / sr
    return sum(np.sin(2 * np.pi * k * f0 * t + k) / k for k in (1, 2, 3, 5)).astype(np.float32)


def blocks(x: np.ndarray, sr: int) -> list[np.ndarray]:
    return [x[i : i + 2 * sr] for i in range(0, x.size - 2 * sr + 1, 2 * sr)]


NOTES = [262.0, 294.0, 330.0, 349.0, 392.0, 440.0, 494.0, 523.0]


def test_hum_is_found_and_notched_out():
    x = melody(8.0, SR, NOTES)
    noisy = add_noise_at_snr(x, mains(x.size, SR, 50.03), 15.0)
    hum = estimate_hum(blocks(noisy, SR), SR)
    assert hum is not None and abs(hum.f0_hz - 50.03) < 0.1 and {1, 2, 3, 5} <= set(hum.harmonics)
    out = remove_hum(noisy[:, None], SR, hum)[:, 0]
    assert si_sdr(x, out) > si_sdr(x, noisy) + 10.0


def test_notes_on_mains_harmonics_are_not_hum():
    # 150, 200 and 300 Hz notes (multiples of 50) among others, none held over the whole file
    x = melody(8.0, SR, [150.0, 262.0, 200.0, 330.0, 300.0, 392.0, 150.0, 440.0])
    assert estimate_hum(blocks(x, SR), SR) is None
    assert estimate_hum(blocks(melody(8.0, SR, NOTES), SR), SR) is None


def test_auto_removes_hum_and_clicks_and_says_so(tmp_path):
    x = melody(8.0, SR, NOTES)
    noisy = add_noise_at_snr(x, mains(x.size, SR, 59.97), 20.0)
    noisy = add_crackle(noisy, SR, np.random.default_rng(0), crackle_per_s=10.0, clicks_per_s=1.0).samples
    sf.write(tmp_path / "in.wav", noisy, SR, subtype="FLOAT")
    record = restore_audio(tmp_path / "in.wav", tmp_path / "out.wav", progress=False)
    out, _ = sf.read(tmp_path / "out.wav")
    found = record["findings"]
    assert abs(found["hum"]["frequency_hz"] - 59.97) < 0.15 and found["hum"]["level_dbfs"] < -20
    assert found["clicks"]["count"] >= 20 and "action" in found["noise"]
    assert si_sdr(x, out) > si_sdr(x, noisy) + 8.0
    restore_audio(tmp_path / "out.wav", tmp_path / "again.wav", progress=False)
    assert json_hum(tmp_path / "again.json") is None  # the output has no hum left to find


def json_hum(path):
    import json

    return json.loads(path.read_text())["findings"]["hum"].get("frequency_hz")
