"""Rebuild sample_data/speech_{clean,noisy}.wav from installed Debian packages (see LICENSES.md).

Clean: the Russian Asterisk prompt ``agent-incorrect`` (held out of training), G.722 decoded by
ffmpeg at 16 kHz. Noise: megaglest ``autumn/sounds/rain.ogg`` (held out), resampled to 16 kHz and
mixed at 5 dB SNR. Run: ``.venv/bin/python sample_data/make_audio_sample.py``.
"""

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from restore.audio.degrade import add_noise_at_snr

SPEECH = "/usr/share/asterisk/sounds/ru/agent-incorrect.g722"
NOISE = "/usr/share/games/megaglest/tilesets/autumn/sounds/rain.ogg"
SNR_DB = 5.0
HERE = Path(__file__).resolve().parent

with tempfile.TemporaryDirectory() as tmp:
    wav = Path(tmp) / "speech.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "g722", "-i", SPEECH, str(wav)], check=True)
    clean, sr = sf.read(wav, dtype="float32")
noise, noise_sr = sf.read(NOISE, dtype="float32", always_2d=True)
noise = soxr.resample(noise.mean(axis=1), noise_sr, sr)[2 * sr : 2 * sr + clean.size].astype(np.float32)
noisy = add_noise_at_snr(clean, noise, SNR_DB)
peak = max(np.abs(noisy).max(), np.abs(clean).max())
if peak > 0.99:
    clean, noisy = clean * 0.99 / peak, noisy * 0.99 / peak
sf.write(HERE / "speech_clean.wav", clean, sr, subtype="PCM_16")
sf.write(HERE / "speech_noisy.wav", noisy, sr, subtype="PCM_16")
print(f"wrote speech_clean.wav and speech_noisy.wav: {clean.size / sr:.2f} s at {sr} Hz, SNR {SNR_DB} dB")
